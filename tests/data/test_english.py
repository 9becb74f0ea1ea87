"""Tests for retrofit.data.english: text clean-up, each source's pairs and the real-data counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retrofit.data.english import (
    STSB_LANGUAGES,
    build_pairs,
    prepare_exemplars,
    clean_citation_markers,
    detokenize,
    prepare_english,
)
from retrofit.data.sources import DataError, load_registry
from retrofit.io import read_jsonl
from retrofit.schema import ENGLISH_SOURCES, ENGLISH_TASK_TYPES
from tests.mirror import mirror_or_skip

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = ["id", "source", "task_type", "lang", "query", "positive", "negative"]


# --- text clean-up --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        ("Two women are embracing , then leave . ", "Two women are embracing, then leave."),
        ("Michael Vick -LRB- born June 26 , 1980 -RRB- is a player", "Michael Vick (born June 26, 1980) is a player"),
        ("Arthur R. `` Pop '' Momand in 1913 .", 'Arthur R. "Pop" Momand in 1913.'),
        ("released `` I Want You Back `` with", 'released "I Want You Back" with'),
        ("Destiny 's Child do n't sing", "Destiny's Child don't sing"),
        ("a new ' garden ' village and the companies ' shares", "a new 'garden' village and the companies' shares"),
        ("Maria Skłodowska - Curie ( 1903 ) costs $ 5 or 10 %", "Maria Skłodowska-Curie (1903) costs $5 or 10%"),
        ("1940 -- 1942 ; Mandarin : x", "1940 -- 1942; Mandarin: x"),
        ("-LSB- 1 -RSB- end !", "[1] end!"),
        ("", ""),
        ('Already clean text, with "quotes".', 'Already clean text, with "quotes".'),
    ],
)
def test_detokenize(tokens: str, text: str) -> None:
    assert detokenize(tokens) == text
    assert detokenize(text) == text  # idempotent on its own output


@pytest.mark.parametrize(
    ("claim", "clean"),
    [
        ("shown in carcinogenesis [<|multi_cit|>].", "shown in carcinogenesis."),
        ("targets of p53 suppression [<|multi_cit|>,7].", "targets of p53 suppression."),
        ("miR-211 [<|cit|>], they regulate", "miR-211, they regulate"),
        ("miR-211.<|cit|> Liu et al. show", "miR-211. Liu et al. show"),
        ("lung edema (<|other_cit|>) and [20, <|other_cit|>] more", "lung edema and more"),
        ("[e.g., the strain (<|other_cit|>)] kept", "[e.g., the strain] kept"),
        ("no markers [see 3] here", "no markers [see 3] here"),
    ],
)
def test_clean_citation_markers(claim: str, clean: str) -> None:
    assert clean_citation_markers(claim) == clean


# --- fixtures for single sources ------------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def snli_raw(raw: Path, s1: list[str], s2: list[str], labels: list[str]) -> Path:
    """The given lines as the dev split (with SNLI's trailing spaces), and an empty test split."""
    for split in ("dev", "test"):
        for k, lines in (("s1", s1), ("s2", s2), ("labels", labels)):
            body = "".join(f"{x} \n" for x in lines) if split == "dev" else ""
            write(raw / f"snli_via_esnli/dataset__eSNLI__{k}.{split}", body)
    return raw


def test_snli_pairs_and_negatives(tmp_path: Path) -> None:
    raw = snli_raw(
        tmp_path,
        s1=["A dog runs .", "A dog runs .", "A dog runs .", "A cat sleeps .", "A cat sleeps ."],
        s2=["An animal moves .", "A dog sleeps .", "A dog runs fast .", "A cat rests .", "A cat is awake ."],
        labels=["entailment", "contradiction", "neutral", "entailment", "neutral"],
    )
    rows, counts = build_pairs(raw, "snli_via_esnli")
    assert rows == [
        {
            "id": "snli_via_esnli-dev-00000",
            "source": "snli_via_esnli",
            "task_type": "nli",
            "lang": "en",
            "query": "A dog runs.",
            "positive": "An animal moves.",
            "negative": "A dog sleeps.",
        },
        {
            "id": "snli_via_esnli-dev-00003",
            "source": "snli_via_esnli",
            "task_type": "nli",
            "lang": "en",
            "query": "A cat sleeps.",
            "positive": "A cat rests.",
            "negative": None,
        },
    ]
    assert counts["dropped"] == {"not_entailment": 3}
    assert counts["with_negative"] == 1 and counts["written"] == 2


def test_snli_misaligned_and_bad_label(tmp_path: Path) -> None:
    raw = snli_raw(tmp_path / "a", s1=["x", "y"], s2=["x"], labels=["entailment", "neutral"])
    with pytest.raises(DataError, match=r"s2\.dev: 1 lines but .*labels\.dev has 2"):
        build_pairs(raw, "snli_via_esnli")
    raw = snli_raw(tmp_path / "b", s1=["x"], s2=["y"], labels=["entails"])
    with pytest.raises(DataError, match=r"labels\.dev:1: unknown label 'entails'"):
        build_pairs(raw, "snli_via_esnli")


def test_qed_skips_empty_and_duplicates(tmp_path: Path) -> None:
    rows = [
        {"example_id": 1, "question_text": "who won", "paragraph_text": "Bob won , said Al ."},
        {"example_id": 2, "question_text": "who lost", "paragraph_text": "   "},
        {"example_id": 3, "question_text": "who won", "paragraph_text": "Bob won , said Al ."},
    ]
    write(tmp_path / "qed_nq/qed-dev.jsonlines", jsonl(rows))
    out, counts = build_pairs(tmp_path, "qed_nq")
    assert [(r["id"], r["query"], r["positive"], r["negative"]) for r in out] == [
        ("qed_nq-1", "who won", "Bob won, said Al.", None)
    ]
    assert counts["dropped"] == {"duplicate_pair": 1, "empty_text": 1}
    assert counts["candidates"] == 3


def test_bad_json_and_missing_key_name_the_line(tmp_path: Path) -> None:
    good = '{"example_id": 1, "question_text": "q", "paragraph_text": "p"}\n'
    write(tmp_path / "qed_nq/qed-dev.jsonlines", good + "{oops\n")
    with pytest.raises(DataError, match=r"qed-dev\.jsonlines:2: not valid JSON"):
        build_pairs(tmp_path, "qed_nq")
    write(tmp_path / "qed_nq/qed-dev.jsonlines", '{"example_id": 1, "question_text": "q"}\n')
    with pytest.raises(DataError, match=r"qed-dev\.jsonlines:1: missing key 'paragraph_text'"):
        build_pairs(tmp_path, "qed_nq")


def test_missing_file_and_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"qed-dev\.jsonlines: not found; fetch the raw data first"):
        prepare_english(tmp_path, tmp_path / "out", ["qed_nq"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"unknown English source.*'msmarco'"):
        prepare_english(tmp_path, tmp_path / "out", ["msmarco"])


def test_citation_integrity_fixture(tmp_path: Path) -> None:
    corpus = [
        {"doc_id": 10, "title": "", "abstract": ["First sentence.", " Second one. "]},
        {"doc_id": 11, "title": "", "abstract": []},
    ]
    claims = [
        {
            "id": 0,
            "claim": "A claim [<|cit|>].",
            "evidence": {"10": [{"sentences": [0], "label": "SUPPORT"}]},
            "cited_doc_ids": [10],
        },
        {"id": 1, "claim": "Not enough info [<|cit|>].", "evidence": {}, "cited_doc_ids": [10]},
        {"id": 2, "claim": "Empty abstract.", "evidence": {"11": [{"label": "REFUTE"}]}, "cited_doc_ids": [11]},
        {"id": 3, "claim": "Unknown doc.", "evidence": {"12": [{"label": "SUPPORT"}]}, "cited_doc_ids": [12]},
    ]
    write(tmp_path / "citation_integrity/data__citint__corpus.jsonl", jsonl(corpus))
    for split in ("train", "dev", "test"):
        body = jsonl(claims if split == "dev" else [])
        write(tmp_path / f"citation_integrity/data__citint__claims_{split}.jsonl", body)
    rows, counts = build_pairs(tmp_path, "citation_integrity")
    assert [(r["id"], r["query"], r["positive"]) for r in rows] == [
        ("citation_integrity-dev-0-10", "A claim.", "First sentence. Second one.")
    ]
    assert counts["dropped"] == {"empty_text": 1, "missing_doc": 1, "no_evidence": 1}


def test_scitldr_fixture(tmp_path: Path) -> None:
    paper = {"paper_id": "P1", "title": "A Title", "source": ["S1.", "S2."], "target": ["T one.", "T two.", "T one."]}
    for split in ("train", "dev", "test"):
        write(tmp_path / f"scitldr/SciTLDR-Data__SciTLDR-A__{split}.jsonl", jsonl([paper] if split == "test" else []))
    rows, counts = build_pairs(tmp_path, "scitldr")
    assert [(r["id"], r["query"], r["positive"], r["task_type"]) for r in rows] == [
        ("scitldr-test-P1-title", "A Title", "S1. S2.", "title"),
        ("scitldr-test-P1-tldr0", "T one.", "S1. S2.", "title"),
        ("scitldr-test-P1-tldr1", "T two.", "S1. S2.", "title"),
    ]
    assert counts["dropped"] == {"duplicate_pair": 1}


def test_stsb_threshold_and_languages(tmp_path: Path) -> None:
    for lang in STSB_LANGUAGES:
        for split in ("train", "dev", "test"):
            body = ""
            if split == "train":
                body = f'{lang} a,{lang} b,4.0\n"{lang}, quoted",{lang} d,3.99\n{lang} e,{lang} f,5.0\n'
            write(tmp_path / f"stsb_multi_mt/data__stsb-{lang}-{split}.csv", body)
        write(tmp_path / f"stsb_multi_mt/data__stsb-{lang}-dev.csv", f"{lang} g,{lang} h,4.5\n")
    # the English task data: English train only (the other languages are translations, every test an evaluation)
    rows, counts = build_pairs(tmp_path, "stsb_multi_mt")
    assert counts["per_lang"] == {"en": 2} and counts["dropped"] == {"score_below_4": 1}
    assert [(r["id"], r["query"], r["positive"]) for r in rows] == [
        ("stsb_multi_mt-en-train-00000", "en a", "en b"),
        ("stsb_multi_mt-en-train-00002", "en e", "en f"),
    ]
    # the generator's paraphrase exemplars: every language, train and dev, never test
    assert prepare_exemplars(tmp_path, tmp_path / "ex.jsonl") == 3 * len(STSB_LANGUAGES)
    ex = read_jsonl(tmp_path / "ex.jsonl")
    assert {r["lang"] for r in ex} == set(STSB_LANGUAGES) and not any("-test-" in r["id"] for r in ex)
    assert [r["id"] for r in ex if r["lang"] == "de"] == [
        "stsb_multi_mt-de-train-00000", "stsb_multi_mt-de-train-00002", "stsb_multi_mt-de-dev-00000"]
    write(tmp_path / "stsb_multi_mt/data__stsb-en-train.csv", "a,b,high\n")
    with pytest.raises(DataError, match=r"stsb-en-train\.csv: row 1: score 'high' is not a number"):
        build_pairs(tmp_path, "stsb_multi_mt")


def test_file_names_are_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every raw file a reader opens first is pinned in the registry (so fetch provides it)."""
    import retrofit.data.english as english

    registered = {sf.file for sf in load_registry(list(ENGLISH_SOURCES))}
    opened: list[str] = []

    def spy(raw_dir: Path, file: str) -> Path:
        opened.append(file)
        raise DataError("stop")

    monkeypatch.setattr(english, "raw_file", spy)
    for source in ENGLISH_SOURCES:
        with pytest.raises(DataError):
            build_pairs(tmp_path, source)
    assert len(opened) == len(ENGLISH_SOURCES) and set(opened) <= registered


# --- the real data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    mirror = mirror_or_skip()
    out = tmp_path_factory.mktemp("english") / "out"
    return out, prepare_english(mirror, out)


def test_real_counts(real_out: tuple[Path, dict[str, Any]]) -> None:
    _, counts = real_out
    assert counts["qed_nq"]["candidates"] == 1355
    assert counts["snli_via_esnli"]["candidates"] == 3329 + 3368  # entailments in dev + test
    assert counts["snli_via_esnli"]["candidates"] + counts["snli_via_esnli"]["dropped"]["not_entailment"] == 19666
    assert counts["snli_via_esnli"]["with_negative"] > 0.9 * counts["snli_via_esnli"]["written"]
    assert counts["fever_symmetric"]["candidates"] == 1420
    assert counts["citation_integrity"]["candidates"] + counts["citation_integrity"]["dropped"]["no_evidence"] == 3060
    assert counts["scitldr"]["candidates"] == 3229 + 5412  # one title and every TLDR per paper
    sts = counts["stsb_multi_mt"]
    assert sts["candidates"] + sts["dropped"]["score_below_4"] == 5749  # STS-B's English train split
    assert set(sts["per_lang"]) == {"en"}
    for source in ENGLISH_SOURCES:
        assert counts[source]["task_type"] == ENGLISH_TASK_TYPES[source]
        assert counts[source]["written"] == counts[source]["candidates"] - counts[source]["dropped"].get(
            "empty_text", 0
        ) - counts[source]["dropped"].get("duplicate_pair", 0)
    assert counts["total"]["written"] == sum(counts[s]["written"] for s in ENGLISH_SOURCES)


def test_real_rows_follow_schema(real_out: tuple[Path, dict[str, Any]]) -> None:
    out, counts = real_out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.jsonl" for s in ENGLISH_SOURCES)
    for source in ENGLISH_SOURCES:
        rows = read_jsonl(out / f"{source}.jsonl")
        assert len(rows) == counts[source]["written"]
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            assert list(r) == KEYS
            assert r["source"] == source and r["task_type"] == ENGLISH_TASK_TYPES[source]
            assert r["query"] and r["positive"] and r["query"] == r["query"].strip()
            assert r["negative"] is None or (isinstance(r["negative"], str) and r["negative"])
            assert r["lang"] == "en" or source == "stsb_multi_mt"
        if source in ("qed_nq", "snli_via_esnli", "fever_symmetric"):
            text = " ".join(r["positive"] for r in rows)
            assert " , " not in text and "-LRB-" not in text and "``" not in text
        if source == "citation_integrity":
            assert not any("<|" in r["query"] for r in rows)
