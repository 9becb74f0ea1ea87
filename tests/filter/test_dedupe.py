"""Tests for retrofit.filter.dedupe: exact and near duplicates (Latin, Chinese, Thai), decontamination through
dedupe(), determinism, the report's arithmetic, the output schema, and the datasketch LSH that finds near-duplicate
candidates.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any

import pytest
from conftest import params_group

from retrofit.filter.dedupe import STEPS, _lsh_index, _minhashes, dedupe, to_output_row
from retrofit.filter.text import jaccard, normalize

from .samples import EVAL_TEXTS, PASSAGE, Q_EN, Q_TH, Q_ZH

PARAMS = params_group("dedupe")
# LSH finds a pair at Jaccard 0.85 with probability ~0.975 (see LSH_WEIGHTS); for a fixed seed the outcome is fixed,
# and the fixture's near-duplicates (Jaccard 0.85 to 0.95) are all found with this one.
SEED = 42

# ---------------------------------------------------------------------------------------------------------------
# Fixture: a small mixed table whose fate (kept, or the drop reason and the row kept instead) is known per row
# ---------------------------------------------------------------------------------------------------------------


def _syn(rid: str, lang: str, query: str, positive: str = PASSAGE, negative: str | None = None) -> dict[str, Any]:
    return {"id": rid, "lang": lang, "task_type": "qa", "query": query, "positive": positive, "negative": negative,
            "source_id": "a01p0", "generator": {"backend": "local", "model": "gemma-3-270m"},
            "prompt_version": "v1", "seed": 7}


def _eng(rid: str, source: str, query: str, positive: str = PASSAGE, negative: str | None = None) -> dict[str, Any]:
    return {"id": rid, "source": source, "task_type": "qa", "lang": "en", "query": query, "positive": positive,
            "negative": negative}


#: (row, expected fate): "kept", or (reason, kept_id or matched eval id or None).
CASES: list[tuple[dict[str, Any], Any]] = [
    # Latin: the smallest id copies Q_EN but its positive is a test passage, so it goes and en-001 represents Q_EN.
    (_syn("en-000", "en", Q_EN, positive=EVAL_TEXTS["xquad-en-p-1"]), ("decontam", "xquad-en-p-1")),
    (_syn("en-001", "en", Q_EN), "kept"),
    (_syn("en-002", "en", "  WHICH river flows through the centre of\tBerlin and into the Havel at Spandau?\n"),
     ("exact", "en-001")),
    (_eng("en-003", "qed_nq", "Ｗｈｉｃｈ ｒｉｖｅｒ flows through the centre of Berlin and into the Havel at Spandau?"),
     ("exact", "en-001")),
    (_syn("en-004", "en", "Which river flows through the center of Berlin and into the Havel at Spandau?"),
     ("near", "en-001")),
    (_eng("en-005", "qed_nq", "Which river flows through the centre of Paris and into the English Channel?"), "kept"),
    # Chinese: the full-width punctuation of Q_ZH becomes ASCII under NFKC, so zh-001 (smaller id) represents both.
    (_syn("zh-001", "zh", Q_ZH.replace("，", ",").replace("？", "?")), "kept"),
    (_syn("zh-002", "zh", Q_ZH), ("exact", "zh-001")),
    (_syn("zh-003", "zh", Q_ZH[:-1] + "呢？"), ("near", "zh-001")),
    (_syn("zh-004", "zh", "黄河发源于哪座山脉，流经哪些省份，最后在山东省的哪个地方注入渤海？"), "kept"),
    # Thai: zero-width spaces between words do not make a new query; a polite particle at the end is a near copy.
    (_syn("th-001", "th", Q_TH), "kept"),
    (_syn("th-002", "th", Q_TH.replace("ไหลผ่าน", "\u200bไหลผ่าน\u200b")), ("exact", "th-001")),
    (_syn("th-003", "th", Q_TH + "ครับ"), ("near", "th-001")),
    (_syn("th-004", "th", "ดอยอินทนนท์เป็นภูเขาที่สูงที่สุดในประเทศไทยตั้งอยู่ในจังหวัดเชียงใหม่ใช่หรือไม่"), "kept"),
    # Decontamination: a query that copies most of a test question, through each field, and a short exact match.
    (_syn("en-010", "en", "what is the name of the river that flows through the centre of Berlin today?"),
     ("decontam", "xquad-en-q-1")),
    (_eng("en-011", "fever_symmetric", "How long is the Spree?",
          positive=EVAL_TEXTS["xquad-en-p-1"] + " It is popular with canoeists."), ("decontam", "xquad-en-p-1")),
    (_syn("en-012", "en", "Name a river in Brandenburg.", negative=EVAL_TEXTS["xquad-en-q-1"]),
     ("decontam", "xquad-en-q-1")),
    (_syn("zh-010", "zh", "柏林市中心有哪条河流经过？它最终汇入哪条河呢？"), ("decontam", "xquad-zh-q-1")),
    (_syn("th-010", "th", EVAL_TEXTS["xquad-th-q-1"] + "ครับ"), ("decontam", "xquad-th-q-1")),
    (_syn("de-010", "de", "WER?"), ("decontam", "xquad-de-q-2")),
    (_syn("de-011", "de", "Wo?"), "kept"),
    (_syn("de-012", "de", "Welcher Fluss fließt durch die Mitte Berlins und mündet bei Spandau in die Havel?"), "kept"),
    # Empty after normalisation.
    (_syn("en-020", "en", " \u200b \u3000 "), ("empty", None)),
]


@pytest.fixture(scope="session")
def _cases() -> list[tuple[dict[str, Any], Any]]:
    return CASES


@pytest.fixture
def rows(_cases: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    """A private copy of the fixture rows."""
    return copy.deepcopy([row for row, _ in _cases])


@pytest.fixture
def expected(_cases: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    return {row["id"]: fate for row, fate in _cases}


def _fates(result: Any) -> dict[str, Any]:
    """id -> "kept" or (reason, evidence id) from a result whose examples hold every dropped row."""
    fates: dict[str, Any] = {row["id"]: "kept" for row in result.rows}
    for reason, examples in result.examples.items():
        for ex in examples:
            fates[ex["id"]] = (reason, ex.get("kept_id", ex.get("eval_id")))
    return fates


# ---------------------------------------------------------------------------------------------------------------
# dedupe(): behaviour on the fixture
# ---------------------------------------------------------------------------------------------------------------


def test_fixture_preconditions() -> None:
    """The near-duplicates are near (Jaccard >= threshold) and the look-alikes that must stay are not."""
    n, t = PARAMS.ngram, PARAMS.threshold
    en_near = normalize("Which river flows through the center of Berlin and into the Havel at Spandau?")
    assert jaccard(normalize(Q_EN), en_near, n) >= t
    assert jaccard(normalize(Q_ZH), normalize(Q_ZH[:-1] + "呢？"), n) >= t
    assert jaccard(normalize(Q_TH), normalize(Q_TH + "ครับ"), n) >= t
    paris = normalize("Which river flows through the centre of Paris and into the English Channel?")
    assert 0.3 < jaccard(normalize(Q_EN), paris, n) < t


def test_every_row_meets_its_expected_fate(rows: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    result = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    assert _fates(result) == expected


def test_decontam_examples_name_field_and_eval_text(rows: list[dict[str, Any]]) -> None:
    result = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    by_id = {ex["id"]: ex for ex in result.examples["decontam"]}
    assert by_id["en-010"]["field"] == "query" and by_id["en-010"]["containment"] >= PARAMS.decontam_threshold
    assert by_id["en-011"]["field"] == "positive"
    assert by_id["en-012"]["field"] == "negative" and by_id["en-012"]["containment"] == 1.0
    assert by_id["en-011"]["eval_text"] == EVAL_TEXTS["xquad-en-p-1"]
    assert result.report["decontam"] == {"eval_texts": len(EVAL_TEXTS),
                                         "by_field": {"query": 4, "positive": 2, "negative": 1},
                                         "by_eval": {"xquad": 7}}


def test_near_examples_carry_the_kept_row(rows: list[dict[str, Any]]) -> None:
    result = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    for ex in result.examples["near"]:
        assert PARAMS.threshold <= ex["jaccard"] < 1.0
        assert ex["kept_id"] < ex["id"]
    for ex in result.examples["exact"]:
        assert normalize(ex["query"]) == normalize(ex["kept_query"])


def test_unrelated_rows_survive_a_contaminated_eval_set(rows: list[dict[str, Any]]) -> None:
    clean = [r for r in rows if r["id"] in {"en-005", "zh-004", "th-004", "de-012"}]
    result = dedupe(clean, EVAL_TEXTS, PARAMS, seed=SEED)
    assert [r["id"] for r in result.rows] == ["de-012", "en-005", "th-004", "zh-004"]
    assert result.report["dropped"]["overall"] == dict.fromkeys(STEPS, 0)


@pytest.mark.parametrize("shuffle_seed", [0, 1, 2])
def test_deterministic_under_shuffled_input(rows: list[dict[str, Any]], shuffle_seed: int) -> None:
    reference = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    shuffled = list(rows)
    random.Random(shuffle_seed).shuffle(shuffled)
    eval_shuffled = list(EVAL_TEXTS.items())
    random.Random(shuffle_seed).shuffle(eval_shuffled)
    result = dedupe(shuffled, eval_shuffled, PARAMS, seed=SEED)
    assert result.rows == reference.rows
    assert result.report == reference.report
    assert result.examples == reference.examples
    assert [r["id"] for r in result.rows] == sorted(r["id"] for r in result.rows)


def test_report_counts_add_up(rows: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    result = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    report = result.report
    counts, dropped = report["counts"], report["dropped"]
    groups = [(counts["overall"], dropped["overall"])]
    groups += [(counts[s][g], dropped[s][g]) for s in ("by_lang", "by_source") for g in counts[s]]
    for c, d in groups:
        steps = ["input", *STEPS]
        for prev, step in itertools.pairwise(steps):
            assert c[prev] - d[step] == c[step]
        assert c["input"] - sum(d.values()) == c["near"]
    assert report["kept"] == counts["overall"]["near"] == len(result.rows)
    assert counts["overall"]["input"] == len(rows)
    for scope in ("by_lang", "by_source"):
        for step in ("input", *STEPS):
            assert sum(g[step] for g in counts[scope].values()) == counts["overall"][step]
    want = {reason: sum(1 for f in expected.values() if f != "kept" and f[0] == reason) for reason in STEPS}
    assert dropped["overall"] == want
    assert set(counts["by_source"]) == {"synthetic", "qed_nq", "fever_symmetric"}
    assert counts["by_lang"]["th"] == {"input": 5, "empty": 5, "decontam": 4, "exact": 3, "near": 2}


def test_report_is_a_metrics_document(rows: list[dict[str, Any]]) -> None:
    report = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED).report

    def leaves(x: Any) -> list[Any]:
        return [v for y in x.values() for v in leaves(y)] if isinstance(x, dict) else [x]

    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in leaves(report))
    json.dumps(report)


def test_examples_are_capped(rows: list[dict[str, Any]]) -> None:
    params = PARAMS.model_copy(update={"max_dropped_examples": 1})
    result = dedupe(rows, EVAL_TEXTS, params, seed=SEED)
    assert {reason: len(ex) for reason, ex in result.examples.items()} == dict.fromkeys(STEPS, 1)
    assert result.report["dropped"]["overall"]["decontam"] == 7  # the counts do not depend on the cap


def test_higher_threshold_keeps_near_duplicates(rows: list[dict[str, Any]]) -> None:
    strict = dedupe(rows, EVAL_TEXTS, PARAMS.model_copy(update={"threshold": 1.0}), seed=SEED)
    assert strict.report["dropped"]["overall"]["near"] == 0
    assert {"en-004", "zh-003", "th-003"} <= {r["id"] for r in strict.rows}


def test_dedupe_of_output_is_a_no_op(rows: list[dict[str, Any]]) -> None:
    first = dedupe(rows, EVAL_TEXTS, PARAMS, seed=SEED)
    again = dedupe(copy.deepcopy(first.rows), EVAL_TEXTS, PARAMS, seed=SEED)
    assert again.rows == first.rows


# ---------------------------------------------------------------------------------------------------------------
# Near-duplicate candidates: datasketch MinHash LSH
# ---------------------------------------------------------------------------------------------------------------


def test_lsh_candidates_catch_a_near_duplicate_and_reject_a_dissimilar_query() -> None:
    n, num_perm = PARAMS.ngram, PARAMS.num_perm
    kept = normalize(Q_EN)
    near = normalize("Which river flows through the center of Berlin and into the Havel at Spandau?")
    unrelated = normalize("Welcher Fluss fließt durch die Mitte Berlins und mündet bei Spandau in die Havel?")
    assert jaccard(kept, near, n) >= PARAMS.threshold > jaccard(kept, unrelated, n)
    lsh = _lsh_index(PARAMS.threshold, num_perm)
    assert (lsh.b, lsh.r) == (14, 9)  # the banding LSH_WEIGHTS documents for threshold 0.8 and 128 permutations
    sketch = dict(zip(("kept", "near", "unrelated"), _minhashes([kept, near, unrelated], n, num_perm, SEED)))
    lsh.insert("kept", sketch["kept"])
    assert lsh.query(sketch["near"]) == ["kept"]
    assert lsh.query(sketch["unrelated"]) == []


def test_one_band_lsh_for_thresholds_near_one() -> None:
    """MinHashLSH refuses a single band (b < 2); its stand-in makes candidates of equal signatures only."""
    lsh = _lsh_index(1.0, PARAMS.num_perm)
    assert (lsh.b, lsh.r) == (1, PARAMS.num_perm)
    texts = [normalize(Q_ZH), normalize(Q_ZH.replace("，", ",")), normalize(Q_ZH[:-1] + "呢？")]
    first, same, near = _minhashes(texts, PARAMS.ngram, PARAMS.num_perm, SEED)
    lsh.insert(0, first)
    assert lsh.query(same) == [0]  # NFKC makes the two punctuation variants one text
    assert lsh.query(near) == []


# ---------------------------------------------------------------------------------------------------------------
# Output schema and errors
# ---------------------------------------------------------------------------------------------------------------


def test_output_schema() -> None:
    syn = to_output_row(_syn("s-1", "th", Q_TH, negative="ไม่ใช่"))
    assert list(syn) == ["id", "source", "lang", "task_type", "query", "positive", "negative", "source_id",
                         "provenance"]
    assert syn["source"] == "synthetic" and syn["source_id"] == "a01p0" and syn["negative"] == "ไม่ใช่"
    assert syn["provenance"] == {"generator": {"backend": "local", "model": "gemma-3-270m"}, "prompt_version": "v1",
                                 "seed": 7}
    eng = to_output_row(_eng("qed_nq-1", "qed_nq", "who?"))
    assert eng["source"] == "qed_nq" and eng["source_id"] is None and eng["provenance"] == {}
    passage_source = to_output_row({**_syn("s-2", "de", "wer?"), "source": "ntrex"})
    assert passage_source["source"] == "synthetic" and passage_source["provenance"]["source"] == "ntrex"
    assert to_output_row(syn) == syn


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"id": "x", "lang": "en", "task_type": "qa", "positive": "p"}, r"row 0 \(id='x'\): 'query' must be a string"),
        ({"lang": "en", "task_type": "qa", "query": "q", "positive": "p"}, r"row 0 .*'id' must be a non-empty"),
        ({**_syn("x", "en", "q"), "negative": 3}, r"'negative' must be a string or null"),
        ("not a row", r"row 0: expected a JSON object"),
    ],
)
def test_bad_rows_name_the_row_and_key(row: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dedupe([row], EVAL_TEXTS, PARAMS)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rows 0 and 1 share the id 'a'"):
        dedupe([_syn("a", "en", "q one"), _syn("a", "en", "q two")], EVAL_TEXTS, PARAMS)


def test_decontamination_cannot_be_skipped() -> None:
    with pytest.raises(ValueError, match="eval_texts is empty"):
        dedupe([_syn("a", "en", "q")], {}, PARAMS)
    with pytest.raises(ValueError, match="id 'e' appears twice with different texts"):
        dedupe([_syn("a", "en", "q")], [("e", "one"), ("e", "two")], PARAMS)


def test_no_rows() -> None:
    result = dedupe([], EVAL_TEXTS, PARAMS)
    assert result.rows == [] and result.report["kept"] == 0
    assert result.report["counts"]["overall"] == dict.fromkeys(("input", *STEPS), 0)
