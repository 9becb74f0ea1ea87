"""Batches without shortcuts: no shared source_id, random fill, groups by language or task, per-row prompts."""

from __future__ import annotations

import pytest
import torch

from retrofit.train.batching import (
    DisjointBatchSampler,
    DisjointSamplers,
    batch_group,
    prompt_pair,
    row_keys,
    to_columns,
)
from tests.train.samples import rows


def test_to_columns_fills_missing_negatives_from_other_rows():
    cols = to_columns(rows()[10:16], num_negatives=1, seed=0)  # synthetic rows: no mined negatives
    assert set(cols) == {"anchor", "positive", "negative_1"}
    for pos, neg in zip(cols["positive"], cols["negative_1"]):
        assert neg != pos and neg.startswith("p ")


def translated_rows() -> list[dict]:
    """Six passages, each with a question in de, es and zh (translations share the passage's source_id)."""
    return [{"id": f"syn-{lang}-{p}", "source": "synthetic", "lang": lang, "task_type": "short_query",
             "source_id": f"xquad-{p}", "query": f"q {lang} {p}", "positive": f"p {lang} {p}", "negatives": []}
            for p in range(6) for lang in ("de", "es", "zh")]


def test_random_fill_never_uses_a_translation_of_the_rows_own_passage():
    data = translated_rows()
    cols = to_columns(data, num_negatives=3, seed=0)
    for row, *negs in zip(data, cols["negative_1"], cols["negative_2"], cols["negative_3"], strict=True):
        assert all(not n.endswith(f" {row['source_id'].split('-')[1]}") for n in negs)


def test_a_row_without_another_source_anywhere_is_an_error():
    with pytest.raises(ValueError, match="no row has another source"):
        to_columns(translated_rows()[:3], num_negatives=1, seed=0)


def test_a_row_alone_in_its_group_borrows_a_negative_from_the_mixture():
    data = translated_rows()
    everything = list(zip((r["positive"] for r in data), row_keys(data), strict=True))
    alone = data[:1]  # one German row: its group offers no other passage
    cols = to_columns(alone, num_negatives=2, seed=0, fallback=everything)
    assert len(cols["negative_1"]) == 1
    for neg in (cols["negative_1"][0], cols["negative_2"][0]):
        assert neg in {r["positive"] for r in data[3:]}  # another passage, never a translation of its own


def test_batches_hold_no_two_rows_of_one_source_id():
    data = translated_rows()
    cols = to_columns(data, num_negatives=1, seed=0)
    from datasets import Dataset

    keys = dict(zip(zip(*cols.values(), strict=True), row_keys(data), strict=True))
    sampler = DisjointSamplers(keys)(Dataset.from_dict(cols), batch_size=8, drop_last=False,
                                             generator=torch.Generator(), seed=0)
    assert isinstance(sampler, DisjointBatchSampler)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(data)))  # every row once per epoch
        for batch in batches:
            sources = [data[i]["source_id"] for i in batch]
            assert len(sources) == len(set(sources)) and len(batch) <= 8
    assert max(len(b) for b in batches) == 6  # six passages: a batch can hold at most one row of each


def test_a_mined_negative_counts_as_its_owners_source():
    data = translated_rows()[:6]  # passages 0 and 1
    data[0]["negatives"] = [{"text": data[3]["positive"], "score": 0.5}]  # p de 1, owned by passage 1
    assert "source:xquad-1" in row_keys(data)[0]


def test_batch_groups():
    syn = {"source": "synthetic", "lang": "de", "task_type": "title"}
    assert [batch_group(syn, by) for by in ("language", "task", "mixed")] == ["synthetic_de", "synthetic_title", "all"]
    assert batch_group({"source": "qed_nq", "lang": "en", "task_type": "qa"}, "language") == "qed_nq"
    cross = {"source": "cross", "lang": "de", "task_type": "title"}  # English positives: one group for every language
    assert [batch_group(cross, by) for by in ("language", "task", "mixed")] == ["cross", "cross", "all"]


def test_symmetric_tasks_take_the_query_prompt_on_both_sides():
    assert prompt_pair({"task_type": "nli"}, "query: ", "passage: ") == ("query: ", "query: ")
    assert prompt_pair({"task_type": "qa"}, "query: ", "passage: ") == ("query: ", "passage: ")
    cols = to_columns([{"id": "a", "task_type": "sts", "query": "x", "positive": "y",
                        "negatives": [{"text": "z", "score": 0.1}]}], 1, 0, ("query: ", "passage: "))
    assert cols == {"anchor": ["query: x"], "positive": ["query: y"], "negative_1": ["query: z"]}
