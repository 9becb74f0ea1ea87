"""Tests for retrofit.data.ntrex: exact line reading, paragraph grouping and parallel passages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrofit.data.ntrex import (
    DOCUMENT_IDS_FILE,
    documents,
    group_lines,
    ntrex_file,
    prepare_ntrex,
    read_lines,
)
from retrofit.data.sources import DataError, load_registry
from retrofit.io import read_jsonl
from retrofit.schema import NTREX_CODES, XQUAD_LANGUAGES
from tests.mirror import mirror_or_skip

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- units ----------------------------------------------------------------------------------------------------------


def test_group_lines() -> None:
    assert group_lines([], 10) == []
    assert group_lines([4, 4, 4], 9) == [[0, 1], [2]]  # "aaaa bbbb" is 9 characters
    assert group_lines([4, 4, 4], 8) == [[0], [1], [2]]
    assert group_lines([20, 3, 3], 10) == [[0], [1, 2]]  # an over-long line stands alone
    assert group_lines([1] * 5, 100) == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="max_chars"):
        group_lines([1], 0)


def test_read_lines_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes("\ufeffone\r\ntwo\u2028still two \r\n\r\nfour\r\n".encode())
    assert read_lines(path) == ["one", "two\u2028still two", "", "four"]
    path.write_bytes(b"no final newline")
    assert read_lines(path) == ["no final newline"]
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8"):
        read_lines(path)


def test_documents() -> None:
    docs = documents(["a", "a", "b", "c", "c", "c"])
    assert [(d.index, d.name, d.start, d.end) for d in docs] == [(0, "a", 0, 2), (1, "b", 2, 3), (2, "c", 3, 6)]
    with pytest.raises(DataError, match=r":3: document 'a' resumes"):
        documents(["a", "b", "a"], "ids.tsv")
    with pytest.raises(DataError, match=r":2: empty document id"):
        documents(["a", ""], "ids.tsv")


def test_file_names_are_registered() -> None:
    registered = {sf.file for sf in load_registry(["ntrex128"])}
    assert f"ntrex128/{DOCUMENT_IDS_FILE}" in registered
    assert {f"ntrex128/{ntrex_file(lang)}" for lang in NTREX_CODES} <= registered


# --- prepare on a fixture -------------------------------------------------------------------------------------------

DOC_IDS = ["n.1"] * 4 + ["n.2"] * 3
EN = ["Headline one", "Aaaa aaaa.", "Bbbb bbbb.", "Cccc cccc.", "Headline two", "Dddd.", "Eeee."]
DE = ["Schlagzeile eins", "Aaaaaaaa aaaa.", "Bbbbbbbbb bbbb.", "Cccc.", "Schlagzeile zwei", "Dddd.", ""]
ZH = ["标题一", "甲。", "乙。", "丙。", "标题二", "丁。", "戊。"]


def write_raw(raw: Path, texts: dict[str, list[str]], doc_ids: list[str] = DOC_IDS) -> Path:
    """Write NTREX-style files (CRLF, like the real ones) and return the ``ntrex128`` folder."""
    folder = raw / "ntrex128"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DOCUMENT_IDS_FILE).write_text("".join(f"{d}\n" for d in doc_ids))
    for lang, lines in texts.items():
        (folder / ntrex_file(lang)).write_bytes("".join(f"{t}\r\n" for t in lines).encode())
    return folder


def test_prepare_fixture(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"en": EN, "de": DE, "zh": ZH})
    # English body lengths 10, 10, 10 | 5, 5; max 21 packs two 10-char lines ("Aaaa aaaa. Bbbb bbbb." = 21).
    counts = prepare_ntrex(raw, tmp_path / "out", ["de", "zh"], max_chars=21)
    rows = read_jsonl(tmp_path / "out" / "passages.jsonl")
    de = [r for r in rows if r["lang"] == "de"]
    zh = [r for r in rows if r["lang"] == "zh"]
    assert [r["id"] for r in de] == [r["id"] for r in zh] == ["ntrex-d000-p00", "ntrex-d000-p01", "ntrex-d001-p00"]
    assert de[0] == {
        "id": "ntrex-d000-p00",
        "lang": "de",
        "doc_id": "ntrex-d000",
        "source_doc": "n.1",
        "headline": "Schlagzeile eins",
        "text": "Aaaaaaaa aaaa. Bbbbbbbbb bbbb.",
        "line_start": 1,
        "line_end": 3,
    }
    assert de[2]["text"] == "Dddd."  # the empty German line is skipped inside the paragraph
    assert [r["text"] for r in zh] == ["甲。乙。", "丙。", "丁。戊。"]  # no spaces in Chinese
    assert counts["paragraphs"] == 3 and counts["documents"] == 2 and counts["lines"] == 7
    assert counts["passages"] == {"de": 3, "zh": 3}
    assert counts["over_max_chars"] == {"de": 1, "zh": 0}  # German runs over the English-decided bound
    heads = read_jsonl(tmp_path / "out" / "headlines.jsonl")
    assert [(h["id"], h["lang"], h["headline"], h["passage_id"]) for h in heads] == [
        ("ntrex-d000-h", "de", "Schlagzeile eins", "ntrex-d000-p00"),
        ("ntrex-d001-h", "de", "Schlagzeile zwei", "ntrex-d001-p00"),
        ("ntrex-d000-h", "zh", "标题一", "ntrex-d000-p00"),
        ("ntrex-d001-h", "zh", "标题二", "ntrex-d001-p00"),
    ]
    assert heads[0]["text"] == de[0]["text"]


def test_empty_paragraph_is_dropped_and_counted(tmp_path: Path) -> None:
    de = list(DE)
    de[5] = ""
    raw = write_raw(tmp_path / "raw", {"en": EN, "de": de})
    counts = prepare_ntrex(raw, tmp_path / "out", ["de"], max_chars=100)
    assert counts["dropped_empty"] == {"de": 1}
    assert counts["passages"] == {"de": 1}
    assert counts["headlines"] == {"de": 1}


def test_misaligned_file_fails(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"en": EN, "de": DE[:-1]})
    with pytest.raises(DataError, match=r"ref\.deu\.txt: 6 lines but .*DOCUMENT_IDS\.tsv has 7"):
        prepare_ntrex(raw, tmp_path / "out", ["de"], max_chars=100)
    assert not (tmp_path / "out").exists()


def test_missing_and_bad_inputs(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"de": DE})
    with pytest.raises(DataError, match=r"eng-US\.txt: not found"):  # English decides the grouping
        prepare_ntrex(raw, tmp_path / "out", ["de"], max_chars=100)
    with pytest.raises(DataError, match=r"is the raw-data root; pass its ntrex128/ folder"):
        prepare_ntrex(write_raw(tmp_path / "full", {"en": EN, "de": DE}).parent, tmp_path / "out", ["de"], 100)
    with pytest.raises(ValueError, match=r"langs: unsupported.*'xx'"):
        prepare_ntrex(raw, tmp_path / "out", ["xx"], max_chars=100)
    with pytest.raises(ValueError, match="max_chars"):
        prepare_ntrex(raw, tmp_path / "out", ["de"], max_chars=0)


# --- the real data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    mirror = mirror_or_skip()
    out = tmp_path_factory.mktemp("ntrex") / "out"
    return out, prepare_ntrex(mirror / "ntrex128", out, list(XQUAD_LANGUAGES), max_chars=600)


def test_real_counts(real_out: tuple[Path, dict[str, Any]]) -> None:
    _, counts = real_out
    assert counts["lines"] == 1997 and counts["documents"] == 123
    n = counts["paragraphs"]
    assert counts["passages"] == {lang: n for lang in XQUAD_LANGUAGES}
    assert counts["headlines"] == {lang: 123 for lang in XQUAD_LANGUAGES}
    assert counts["over_max_chars"]["en"] == 0


def test_real_parallel_and_complete(real_out: tuple[Path, dict[str, Any]]) -> None:
    out, _ = real_out
    mirror = mirror_or_skip()
    rows = read_jsonl(out / "passages.jsonl")
    ids = {
        lang: [(r["id"], r["line_start"], r["line_end"]) for r in rows if r["lang"] == lang] for lang in XQUAD_LANGUAGES
    }
    assert all(v == ids["en"] for v in ids.values())
    assert len({(r["id"], r["lang"]) for r in rows}) == len(rows)
    # English paragraphs partition every document's body, in order, within the bound.
    en_lines = read_lines(mirror / "ntrex128" / ntrex_file("en"))
    doc_ids = read_lines(mirror / "ntrex128" / DOCUMENT_IDS_FILE)
    headline_lines = {i for i in range(len(doc_ids)) if i == 0 or doc_ids[i] != doc_ids[i - 1]}
    covered = sorted(i for _, start, end in ids["en"] for i in range(start, end))
    assert covered == sorted(set(range(len(doc_ids))) - headline_lines)
    for r in rows:
        if r["lang"] == "en":
            assert r["text"] == " ".join(en_lines[r["line_start"] : r["line_end"]])
            assert len(r["text"]) <= 600 or r["line_end"] - r["line_start"] == 1
