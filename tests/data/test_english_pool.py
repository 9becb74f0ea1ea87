"""Tests for retrofit.data.english_pool: the English datasets' extra hard-negative candidates, on a tiny prepared corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import params_group

from retrofit.data.english_pool import english_pool
from retrofit.data.heldout import xquad_heldout
from retrofit.data.sampling import nested_sample_by
from retrofit.errors import InputError

SEED = 42
TEST_PARAGRAPH = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy."
TEST_QUESTION = "In what country is Normandy located and who gave it its name?"
TRAIN_PARAGRAPH = "The Amazon rainforest covers most of the Amazon basin of South America, seven million square km."
#: Positives that overlap a held-out text (and why): the pool must drop each of them.
CONTAMINATED = {
    "qed_nq-003": TEST_PARAGRAPH.upper(),  # equal after normalisation only
    "qed_nq-004": TEST_PARAGRAPH + " It is a long story.",  # most of its 13-grams are in the test paragraph
    "qed_nq-005": TEST_QUESTION,  # a held-out question counts too
}


def heldout_rows_of(xquad: Path) -> list[dict[str, Any]]:
    """The held-out XQuAD part of ``heldout.jsonl``."""
    return [{"id": i, "eval": e, "text": t} for i, e, t in xquad_heldout(xquad)]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _row(source: str, i: int, positive: str, query: str | None = None, lang: str = "en") -> dict[str, Any]:
    return {"id": f"{source}-{i:03d}", "source": source, "task_type": "qa", "lang": lang,
            "query": query or f"{source} question {i}", "positive": positive, "negative": None}


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """``data/prepared`` in miniature: two English datasets and the held-out texts (one XQuAD test paragraph and its
    question, as the prepare stage writes them to ``heldout.jsonl``)."""
    root = tmp_path / "prepared"
    _write(root / "xquad/paragraphs.jsonl", [
        {"id": "a00p0", "lang": "en", "article": 0, "title": "Normans", "text": TEST_PARAGRAPH, "split": "test"},
        {"id": "a01p0", "lang": "en", "article": 1, "title": "Amazon", "text": TRAIN_PARAGRAPH, "split": "train"},
    ])
    _write(root / "xquad/questions.jsonl", [
        {"id": "q0", "lang": "en", "paragraph_id": "a00p0", "text": TEST_QUESTION, "answer": "France",
         "answer_start": 0, "split": "test"},
    ])
    _write(root / "heldout.jsonl", heldout_rows_of(root / "xquad"))
    nq = [_row("qed_nq", i, f"Passage {i}: a paragraph about topic number {i} of the corpus.") for i in range(24)]
    for i, text in ((3, CONTAMINATED["qed_nq-003"]), (4, CONTAMINATED["qed_nq-004"]), (5, CONTAMINATED["qed_nq-005"]),
                    (6, TRAIN_PARAGRAPH)):  # training-pool text is no contamination
        nq[i]["positive"] = text
    nq[8]["query"] = nq[9]["query"] = "a claim with two evidence passages"
    nq[11]["positive"] = nq[10]["positive"]  # one passage, two queries (as SciTLDR's title and TLDR)
    _write(root / "english/qed_nq.jsonl", nq)
    _write(root / "english/stsb_multi_mt.jsonl", [
        _row("stsb_multi_mt", i, f"Sentence {i} in {lang}.", lang=lang) for i, lang in enumerate(["de", "en", "es"] * 4)
    ])
    return root


def _pool(prepared: Path, per_source: int, seed: int = SEED) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return english_pool(["qed_nq", "stsb_multi_mt"], per_source, params_group("dedupe"), seed=seed,
                        prepared_dir=prepared)


def _rows(prepared: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for source in ("qed_nq", "stsb_multi_mt")
            for line in (prepared / "english" / f"{source}.jsonl").read_text().splitlines()]


def test_pool_is_a_nested_sample_that_contains_the_rows_own(prepared: Path) -> None:
    own = nested_sample_by(_rows(prepared), lambda r: r["source"], 6, SEED)  # what the dedupe stage samples
    small, _ = _pool(prepared, 6)
    large, counts = _pool(prepared, 12)
    key = [(p["lang"], p["source"], p["text"]) for p in large]
    assert {(r["lang"], r["source"], r["positive"]) for r in own if r["id"] not in CONTAMINATED} <= set(key)
    assert {(p["lang"], p["source"], p["text"]) for p in small} <= set(key)  # a larger pool only adds passages
    assert len(key) == len(set(key))  # one entry per distinct passage of a dataset and language
    for source in ("qed_nq", "stsb_multi_mt"):
        assert counts[source]["sampled"] <= 12
        assert counts[source]["kept"] == sum(p["source"] == source for p in large)


def test_contaminated_passages_are_dropped(prepared: Path) -> None:
    pool, counts = _pool(prepared, 1000)  # every row
    texts = {p["text"] for p in pool}
    assert not texts & set(CONTAMINATED.values())
    assert TRAIN_PARAGRAPH in texts
    assert counts["qed_nq"] == {"sampled": 23, "contaminated": 3, "kept": 20}  # 24 rows, two share a positive
    assert counts["stsb_multi_mt"] == {"sampled": 12, "contaminated": 0, "kept": 12}


def test_entries_are_mine_pool_entries_with_their_row_language_and_queries(prepared: Path) -> None:
    pool, _ = _pool(prepared, 1000)
    assert all(set(p) == {"lang", "source", "source_id", "text", "queries"} for p in pool)
    assert len({p["source_id"] for p in pool}) == len(pool)
    assert all(p["source_id"].startswith(f"{p['source']}:pool") for p in pool)
    assert {p["lang"] for p in pool if p["source"] == "stsb_multi_mt"} == {"de", "en", "es"}  # joins its language
    shared = next(p for p in pool if p["text"] == "Passage 10: a paragraph about topic number 10 of the corpus.")
    assert sorted(shared["queries"]) == ["qed_nq question 10", "qed_nq question 11"]
    both = [p for p in pool if "a claim with two evidence passages" in p["queries"]]
    assert len(both) == 2  # each is no negative for the other's row (retrofit.mine's same_query_positive)


def test_deterministic_for_a_seed(prepared: Path) -> None:
    assert _pool(prepared, 6) == _pool(prepared, 6)
    assert {p["text"] for p in _pool(prepared, 6)[0]} != {p["text"] for p in _pool(prepared, 6, seed=SEED + 1)[0]}


def test_zero_reads_nothing_and_bad_input_is_named(prepared: Path, tmp_path: Path) -> None:
    pool, counts = english_pool(["qed_nq"], 0, params_group("dedupe"), seed=SEED, prepared_dir=tmp_path / "absent")
    assert pool == [] and counts == {"qed_nq": {"sampled": 0, "contaminated": 0, "kept": 0}}
    with pytest.raises(ValueError, match="per_source"):
        english_pool(["qed_nq"], -1, params_group("dedupe"), seed=SEED, prepared_dir=prepared)
    with pytest.raises(InputError, match="scitldr.jsonl: file not found"):
        english_pool(["qed_nq", "scitldr"], 5, params_group("dedupe"), seed=SEED, prepared_dir=prepared)
    _write(prepared / "english/qed_nq.jsonl", [{k: v for k, v in _row("qed_nq", 0, "p").items() if k != "positive"}])
    with pytest.raises(InputError, match=r"qed_nq.jsonl:1:.*'positive'"):
        english_pool(["qed_nq"], 5, params_group("dedupe"), seed=SEED, prepared_dir=prepared)
