"""The training mixture: nested and filtered selection, shortfalls, the oracle's and the cross-lingual twins."""

from __future__ import annotations

import pytest
from conftest import params_group

from retrofit.config import ParamsError
from retrofit.train.batching import batch_group
from retrofit.train.mixture import select_mixture
from retrofit.train.trainer import (
    mixture_counts,
)
from tests.train.samples import rows


def test_a_short_group_fails_or_trains_on_what_it_has(caplog):
    mix = {"english": ["qed_nq"], "english_per_source": 2, "per_language": 9, "languages": ["de", "zh"],
           "task_types": ["short_query", "title"]}
    with pytest.raises(ParamsError, match="asks for 9 rows, but data/mined/train.jsonl has only 6"):
        select_mixture(rows(), params_group("train", mix={**mix, "allow_shortfall": False}), 0)
    got = select_mixture(rows(), params_group("train", mix={**mix, "allow_shortfall": True}), 0)
    assert mixture_counts(got)["synthetic_by_lang"] == {"de": 6, "zh": 6}
    assert "6 of the 9 rows asked for" in caplog.text


def test_mixture_is_nested_and_filtered():
    data = rows()
    small = params_group("train", mix={"english": ["qed_nq"], "english_per_source": 2, "per_language": 2,
                                       "languages": ["de", "zh"], "task_types": ["short_query", "title"]})
    big = small.model_copy(update={"mix": small.mix.model_copy(update={"per_language": 4})})
    a, b = select_mixture(data, small, 0), select_mixture(data, big, 0)
    assert {r["id"] for r in a} < {r["id"] for r in b}
    assert mixture_counts(a)["synthetic_by_lang"] == {"de": 2, "zh": 2}
    by = mixture_counts(a)["by_source_lang"]  # every row, English ones included, by source and language
    assert sum(n for langs in by.values() for n in langs.values()) == len(a)
    assert by["synthetic"] == {"de": 2, "zh": 2} and set(by) == {r["source"] for r in a}
    assert all(r["source"] in ("qed_nq", "synthetic") for r in b)
    only_short = small.model_copy(update={"mix": small.mix.model_copy(update={"task_types": ["short_query"]})})
    assert {r["task_type"] for r in select_mixture(data, only_short, 0) if r["source"] == "synthetic"} == {
        "short_query"}


def test_the_oracle_mixture_takes_the_twins_of_the_synthetic_selection():
    data = rows()
    data += [{**r, "id": f"oracle-{r['id']}", "source": "oracle", "task_type": "short_query",
              "provenance": {"oracle_of": r["id"], "twin_task_type": r["task_type"]}}
             for r in data if r["source"] == "synthetic"]
    mix = {"english": [], "per_language": 2, "languages": ["de", "zh"], "task_types": ["title"]}
    generated = select_mixture(data, params_group("train", mix=mix), 0)
    oracle = select_mixture(data, params_group("train", mix={**mix, "synthetic_source": "oracle"}), 0)
    assert [f"oracle-{r['id']}" for r in generated] == [r["id"] for r in oracle]
    assert {r["task_type"] for r in generated} == {"title"} and len(oracle) == 4
    assert mixture_counts(oracle)["synthetic_by_lang"] == {"de": 2, "zh": 2}


def test_cross_lingual_swaps_a_nested_share_of_the_non_english_rows_for_their_twins():
    data = rows()
    data += [{**r, "id": f"cross-{r['id']}", "source": "cross", "positive": f"English {r['id']}",
              "provenance": {"cross_of": r["id"]}} for r in data if r["source"] == "synthetic" and r["lang"] == "de"]
    mix = {"english": ["qed_nq"], "english_per_source": 2, "per_language": 4, "languages": ["de", "zh"],
           "task_types": ["short_query", "title"]}
    plain = select_mixture(data, params_group("train", mix=mix), 0)
    half = select_mixture(data, params_group("train", mix={**mix, "cross_lingual": 0.5}), 0)
    every = select_mixture(data, params_group("train", mix={**mix, "cross_lingual": 1.0}), 0)
    assert len(plain) == len(half) == len(every)  # swapped in place: the counts stay the compared run's
    swapped = {r["provenance"]["cross_of"] for r in half if r["source"] == "cross"}
    assert len(swapped) == 2 and swapped < {r["provenance"]["cross_of"] for r in every if r["source"] == "cross"}
    assert {r["id"] for r in every if r["source"] == "synthetic"} == {r["id"] for r in plain if r["lang"] == "zh"
                                                                        and r["source"] == "synthetic"}  # no twin
    assert mixture_counts(half)["synthetic_by_lang"] == {"de": 4, "zh": 4}


def test_the_human_mixture_takes_a_nested_sample_per_language_and_batches_by_language():
    data = [r for r in rows() if r["source"] != "synthetic"]
    with pytest.raises(ParamsError, match="set dedupe.human: true"):
        select_mixture(data, params_group("train", mix={"english": [], "per_language": 2, "languages": ["de"],
                                                        "synthetic_source": "human"}), 0)
    data += [{"id": f"human-{lang}-q{i}", "source": "human", "lang": lang, "task_type": "short_query", "query": "q",
              "positive": "p", "negative": None, "source_id": f"xquad:p{i % 3}"} for lang in ("de", "zh")
             for i in range(10)]
    mix = {"english": [], "languages": ["de", "zh"], "task_types": ["short_query"], "synthetic_source": "human"}
    small, big = (select_mixture(data, params_group("train", mix={**mix, "per_language": n}), 0) for n in (3, 7))
    assert {r["id"] for r in small} < {r["id"] for r in big}
    assert mixture_counts(big)["synthetic_by_lang"] == {"de": 7, "zh": 7}
    assert {batch_group(r) for r in big} == {"human_de", "human_zh"}  # one language per batch, as generated rows
