"""Tests for retrofit.dedupe: normalisation, exact and near duplicates (Latin, Chinese, Thai), decontamination,
determinism, the report's arithmetic, and the vectorised kernels against their datasketch / pure-Python references.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import numpy as np
import pytest
from conftest import params_group
from datasketch import MinHash, MinHashLSH

import retrofit.dedupe as dedupe_module
from retrofit.dedupe import (
    LSH_WEIGHTS,
    STEPS,
    ContaminationIndex,
    char_ngrams,
    dedupe,
    gram_hashes,
    hash_gram,
    hash_gram32,
    jaccard,
    lsh_band_keys,
    lsh_bands,
    minhash_signatures,
    normalize,
    to_output_row,
)

PARAMS = params_group("dedupe")
# LSH finds a pair at Jaccard 0.85 with probability ~0.975 (see LSH_WEIGHTS); for a fixed seed the outcome is fixed,
# and the fixture's near-duplicates (Jaccard 0.85 to 0.95) are all found with this one.
SEED = 42

# ---------------------------------------------------------------------------------------------------------------
# Fixture: a small mixed table whose fate (kept, or the drop reason and the row kept instead) is known per row
# ---------------------------------------------------------------------------------------------------------------

Q_EN = "Which river flows through the centre of Berlin and into the Havel at Spandau?"
Q_ZH = "请问长江流经中国哪些省份和直辖市，最终在哪里注入东海？它的全长大约是多少公里？"
Q_TH = "แม่น้ำเจ้าพระยาไหลผ่านจังหวัดใดบ้างก่อนจะไหลลงสู่อ่าวไทยที่จังหวัดสมุทรปราการ"

EVAL_TEXTS = {
    "xquad-en-q-1": "What is the name of the river that flows through the centre of Berlin?",
    "xquad-en-p-1": (
        "The Spree is a river that flows through the Saxony, Brandenburg and Berlin states of Germany, and in the "
        "Ústí nad Labem region of the Czech Republic. Its length is approximately 400 kilometres."
    ),
    "xquad-zh-q-1": "柏林市中心有哪条河流经过？它最终汇入哪条河？",
    "xquad-th-q-1": "แม่น้ำสายใดไหลผ่านใจกลางกรุงเบอร์ลินและไหลลงสู่แม่น้ำฮาเฟิล",
    "xquad-de-q-2": "Wer?",
}

PASSAGE = "A passage about rivers, lakes and the cities along them, with enough text to look like a paragraph."


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
# Normalisation and n-grams
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Ｈｅｌｌｏ　ＷＯＲＬＤ", "hello world"),  # full-width forms and ideographic space (NFKC)
        ("Straße", "strasse"),  # case folding, not just lower()
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),  # final sigma folds like any sigma
        ("  a\t\tb\n c\u00a0d  ", "a b c d"),  # every Unicode whitespace run -> one space, stripped
        ("ไทย\u200bไหม\ufeff", "ไทยไหม"),  # zero-width characters vanish
        ("น้ำ", "น้\u0e4d\u0e32"),  # Thai SARA AM is a compatibility character: NFKC splits it
        ("ﬁle Ⅻ ①", "file xii 1"),  # compatibility ligatures, numerals
        ("北京，你好！", "北京,你好!"),  # full-width CJK punctuation
        ("", ""),
    ],
)
def test_normalize(text: str, want: str) -> None:
    assert normalize(text) == want


@pytest.mark.parametrize("text", [Q_EN, Q_ZH, Q_TH, "ﬁ ẞ Ⅻ", "İstanbul", "ǅemal", " \u200b "])
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


def test_char_ngrams() -> None:
    assert char_ngrams("abcab", 3) == {"abc", "bca", "cab"}
    assert char_ngrams("ab", 5) == {"ab"}  # shorter than n: the whole text
    assert char_ngrams("", 5) == set()
    assert char_ngrams("北京欢迎你", 2) == {"北京", "京欢", "欢迎", "迎你"}
    assert jaccard("abcd", "abcd", 2) == 1.0
    assert jaccard("abcd", "abce", 2) == pytest.approx(2 / 4)


# ---------------------------------------------------------------------------------------------------------------
# Vectorised kernels against their references
# ---------------------------------------------------------------------------------------------------------------

KERNEL_TEXTS = [normalize(t) for t in (Q_EN, Q_ZH, Q_TH, *EVAL_TEXTS.values(), "ab", "", "a😀b 𝔘", "مرحبا بالعالم")]


@pytest.mark.parametrize("n", [1, 5, 13])
def test_gram_hashes_match_scalar_hash(n: int) -> None:
    hashes, owner = gram_hashes(KERNEL_TEXTS, n)
    want = [(hash_gram(t[i : i + n]), k) for k, t in enumerate(KERNEL_TEXTS) for i in range(len(t) - n + 1)]
    assert list(zip(hashes.tolist(), owner.tolist())) == want


def test_gram_hashes_whole_if_shorter() -> None:
    hashes, owner = gram_hashes(["abc", "", "abcdefg"], 5, whole_if_shorter=True)
    assert owner.tolist() == [0, 2, 2, 2]
    assert hashes[0] == hash_gram("abc")


@pytest.mark.parametrize(("num_perm", "seed", "n", "block"), [(128, 42, 5, None), (64, 1, 3, None), (128, 42, 5, 30)])
def test_minhash_signatures_equal_datasketch(
    num_perm: int, seed: int, n: int, block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if block is not None:  # one or two texts per numpy block
        monkeypatch.setattr(dedupe_module, "_MINHASH_BLOCK", block)
    sigs = minhash_signatures(KERNEL_TEXTS, n, num_perm, seed)
    assert sigs.shape == (len(KERNEL_TEXTS), num_perm) and sigs.dtype == np.uint32
    for text, sig in zip(KERNEL_TEXTS, sigs):
        ref = MinHash(num_perm=num_perm, seed=seed, hashfunc=hash_gram32)
        ref.update_batch(list(char_ngrams(text, n)))
        np.testing.assert_array_equal(sig, ref.hashvalues)


def test_lsh_band_keys_find_datasketch_candidates() -> None:
    rng = random.Random(0)
    base = [normalize(t) for t in (Q_EN, Q_ZH, Q_TH, *EVAL_TEXTS.values())]
    texts = base + [t[: len(t) // 2] + t[len(t) // 2 + 1 :] for t in base] + [t + rng.choice("xyz") for t in base]
    sigs = minhash_signatures(texts, PARAMS.ngram, PARAMS.num_perm, SEED)
    b, r = lsh_bands(PARAMS.threshold, PARAMS.num_perm)
    ref = MinHashLSH(threshold=PARAMS.threshold, num_perm=PARAMS.num_perm, weights=LSH_WEIGHTS)
    assert (ref.b, ref.r) == (b, r)
    for i, sig in enumerate(sigs):
        ref.insert(i, MinHash(num_perm=PARAMS.num_perm, seed=SEED, hashvalues=sig, scheme="affine32"))
    keys = lsh_band_keys(sigs, b, r)
    for i, sig in enumerate(sigs):
        ours = {j for j in range(len(texts)) if (keys[i] == keys[j]).any()}
        theirs = set(ref.query(MinHash(num_perm=PARAMS.num_perm, seed=SEED, hashvalues=sig, scheme="affine32")))
        assert ours == theirs


def _reference_containment(text: str, eval_texts: dict[str, str], n: int) -> tuple[float, str | None]:
    """Brute force: best fraction of ``text``'s distinct n-grams found in one eval text (ties: smallest id)."""
    grams = {text[i : i + n] for i in range(len(text) - n + 1)}
    best, best_id = 0.0, None
    for eid in sorted(eval_texts):
        e = normalize(eval_texts[eid])
        if text == e:
            return 1.0, eid
        if grams:
            c = len(grams & {e[i : i + n] for i in range(len(e) - n + 1)}) / len(grams)
            if c > best:
                best, best_id = c, eid
    return best, best_id


@pytest.mark.parametrize("small_blocks", [False, True])
def test_contamination_index_matches_brute_force(small_blocks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if small_blocks:  # many blocks of texts and many scoring chunks per block
        monkeypatch.setattr(dedupe_module, "_GRAM_BLOCK", 400)
        monkeypatch.setattr(dedupe_module, "_SCORE_WINDOWS", 50)
    rng = random.Random(3)
    pool = list(EVAL_TEXTS.values()) + [Q_EN, Q_ZH, Q_TH, PASSAGE]
    texts = []
    for _ in range(200):  # splice random spans of the pool: containment spread over 0..1
        a, b = rng.sample(pool, 2)
        i, j = sorted(rng.sample(range(len(a) + 1), 2))
        k = rng.randrange(len(b) + 1)
        texts.append(normalize(a[i:j] + b[k:]))
    texts = sorted(set(texts))
    index = ContaminationIndex(EVAL_TEXTS, PARAMS.decontam_ngram)
    threshold = PARAMS.decontam_threshold
    got = index.contamination(texts, threshold)
    n_hits = 0
    for text, c in zip(texts, got):
        want, want_id = _reference_containment(text, EVAL_TEXTS, PARAMS.decontam_ngram)
        if want >= threshold:
            n_hits += 1
            assert c.containment == pytest.approx(want) and index.ids[c.eval_index] == want_id, text
        else:
            assert c.eval_index < 0 or c.containment == pytest.approx(want), text
    assert 0 < n_hits < len(texts)  # the fixture exercises both sides of the threshold


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
                                         "by_field": {"query": 4, "positive": 2, "negative": 1}}


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
        for prev, step in zip(steps, steps[1:]):
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
