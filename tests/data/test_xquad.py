"""Tests for retrofit.data.xquad: parsing, the parallelism check and the by-article split."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from retrofit.data.sources import DataError
from retrofit.data.xquad import (
    N_ARTICLES,
    N_PARAGRAPHS,
    N_QUESTIONS,
    paragraph_id,
    prepare_xquad,
    split_articles,
)
from retrofit.io import read_jsonl
from retrofit.schema import XQUAD_LANGUAGES
from tests.mirror import mirror_or_skip

REPO_ROOT = Path(__file__).resolve().parents[2]


def squad(lang: str, n_articles: int = 4, n_paragraphs: int = 2, n_questions: int = 2) -> dict[str, Any]:
    """A tiny parallel SQuAD v1.1 document; text is tagged with the language, ids are not."""
    return {
        "version": "1.1",
        "data": [
            {
                "title": f"Article_{a}",
                "paragraphs": [
                    {
                        "context": f" [{lang}] context {a}.{p} ",
                        "qas": [
                            {
                                "id": f"q{a}{p}{q}",
                                "question": f"[{lang}] question {a}.{p}.{q}?",
                                "answers": [{"answer_start": 0, "text": "x"}],
                            }
                            for q in range(n_questions)
                        ],
                    }
                    for p in range(n_paragraphs)
                ],
            }
            for a in range(n_articles)
        ],
    }


def write_raw(raw: Path, docs: dict[str, dict[str, Any]]) -> Path:
    """Write ``raw/xquad/xquad.<lang>.json`` files and return the ``xquad`` folder (what prepare_xquad reads)."""
    (raw / "xquad").mkdir(parents=True, exist_ok=True)
    for lang, doc in docs.items():
        (raw / "xquad" / f"xquad.{lang}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return raw / "xquad"


# --- split_articles ---------------------------------------------------------------------------------------------------


def test_split_is_deterministic_and_sized() -> None:
    a = split_articles(48, 24, seed=42)
    assert a == split_articles(48, 24, seed=42)
    assert len(a) == 24 and a <= set(range(48))
    assert split_articles(48, 24, seed=43) != a
    assert split_articles(48, 0, seed=1) == set()
    assert split_articles(48, 48, seed=1) == set(range(48))


def test_split_is_nested_in_n_test() -> None:
    """A larger test split extends a smaller one with the same seed (ranks do not depend on n_test)."""
    assert split_articles(48, 5, seed=7) <= split_articles(48, 10, seed=7)


@pytest.mark.parametrize("n_test", [-1, 49])
def test_split_rejects_bad_n_test(n_test: int) -> None:
    with pytest.raises(ValueError, match="n_test"):
        split_articles(48, n_test, seed=0)


def test_paragraph_id() -> None:
    assert paragraph_id(7, 3) == "a07p3"
    assert paragraph_id(0, 0) == "a00p0"


# --- prepare on fixtures --------------------------------------------------------------------------------------------


def test_prepare_fixture(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {lang: squad(lang) for lang in ("en", "de")})
    counts = prepare_xquad(raw, tmp_path / "out", ["de", "en"], n_test_articles=2, seed=3)
    test_articles = split_articles(4, 2, seed=3)
    assert counts["test_articles"] == sorted(test_articles)
    assert counts["articles"] == {"train": 2, "test": 2}
    assert counts["paragraphs"] == {"train": 8, "test": 8}
    assert counts["per_language"]["de"]["questions"] == {"train": 8, "test": 8}

    paras = read_jsonl(tmp_path / "out" / "paragraphs.jsonl")
    questions = read_jsonl(tmp_path / "out" / "questions.jsonl")
    assert paras[0] == {
        "id": "a00p0",
        "lang": "de",
        "article": 0,
        "title": "Article_0",
        "text": "[de] context 0.0",
        "split": "test" if 0 in test_articles else "train",
    }
    assert [p["lang"] for p in paras] == ["de"] * 8 + ["en"] * 8
    for p in paras:
        assert p["split"] == ("test" if p["article"] in test_articles else "train")
    split_of = {(p["id"], p["lang"]): p["split"] for p in paras}
    for q in questions:
        assert q["split"] == split_of[(q["paragraph_id"], q["lang"])]
    assert questions[0] == {
        "id": "q000",
        "lang": "de",
        "paragraph_id": "a00p0",
        "text": "[de] question 0.0.0?",
        "answer": "x",
        "answer_start": 0,
        "split": questions[0]["split"],
    }
    assert [q["id"] for q in questions if q["lang"] == "de"] == [q["id"] for q in questions if q["lang"] == "en"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["data"][2]["paragraphs"][1]["qas"][0].update(id="other"),
            r"article 2 .*paragraph 1: question ids",
        ),
        (lambda d: d["data"][1]["paragraphs"].pop(), r"article 1 .*1 paragraphs vs 2"),
        (lambda d: d["data"].pop(), r"3 articles vs 4"),
        (lambda d: d["data"][3].update(title="Elsewhere"), r"article 3 .*title 'Elsewhere'"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"].reverse(), r"article 0 .*paragraph 0: question ids"),
    ],
    ids=["question-id", "paragraph-count", "article-count", "title", "question-order"],
)
def test_not_parallel_fails_clearly(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    de = squad("de")
    mutate(de)
    raw = write_raw(tmp_path / "raw", {"en": squad("en"), "de": de})
    pattern = r"XQuAD is not parallel: .*xquad\.de\.json differs from .*xquad\.en\.json"
    with pytest.raises(DataError, match=pattern) as err:
        prepare_xquad(raw, tmp_path / "out", ["en", "de"], 1, 0)
    assert re.search(expected, str(err.value)), str(err.value)
    assert not (tmp_path / "out").exists()


def test_malformed_file_names_position(tmp_path: Path) -> None:
    en = squad("en")
    del en["data"][1]["paragraphs"][0]["qas"][1]["question"]
    raw = write_raw(tmp_path / "raw", {"en": en})
    pattern = r"xquad\.en\.json: data\[1\]\.paragraphs\[0\]\.qas\[1\]: missing key 'question'"
    with pytest.raises(DataError, match=pattern):
        prepare_xquad(raw, tmp_path / "out", ["en"], 1, 0)


def test_empty_text_and_bad_json(tmp_path: Path) -> None:
    en = squad("en")
    en["data"][0]["paragraphs"][1]["context"] = "  "
    raw = write_raw(tmp_path / "raw", {"en": en})
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[1\]\.context: empty text"):
        prepare_xquad(raw, tmp_path / "out", ["en"], 1, 0)
    (raw / "xquad.en.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot parse as JSON"):
        prepare_xquad(raw, tmp_path / "out", ["en"], 1, 0)


def test_missing_file_and_bad_language(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"en": squad("en")})
    with pytest.raises(DataError, match=r"xquad\.de\.json: not found; fetch the raw data"):
        prepare_xquad(raw, tmp_path / "out", ["en", "de"], 1, 0)
    with pytest.raises(DataError, match=r"is the raw-data root; pass its xquad/ folder"):
        prepare_xquad(raw.parent, tmp_path / "out", ["en"], 1, 0)
    with pytest.raises(ValueError, match=r"langs: unsupported.*'fr'"):
        prepare_xquad(raw, tmp_path / "out", ["en", "fr"], 1, 0)
    with pytest.raises(ValueError, match="n_test"):
        prepare_xquad(raw, tmp_path / "out", ["en"], 5, 0)


# --- the real data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    mirror = mirror_or_skip()
    out = tmp_path_factory.mktemp("xquad") / "out"
    return out, prepare_xquad(mirror / "xquad", out, list(XQUAD_LANGUAGES), n_test_articles=24, seed=42)


def test_real_counts(real_out: tuple[Path, dict[str, Any]]) -> None:
    out, counts = real_out
    assert counts["articles"] == {"train": N_ARTICLES - 24, "test": 24}
    for lang in XQUAD_LANGUAGES:
        c = counts["per_language"][lang]
        assert sum(c["paragraphs"].values()) == N_PARAGRAPHS == 240
        assert sum(c["questions"].values()) == N_QUESTIONS == 1190
    # Every article has 5 paragraphs, so the paragraph split is exact; questions depend on the articles drawn.
    assert counts["per_language"]["en"]["paragraphs"] == {"train": 120, "test": 120}
    paras = read_jsonl(out / "paragraphs.jsonl")
    questions = read_jsonl(out / "questions.jsonl")
    assert len(paras) == 12 * 240 and len(questions) == 12 * 1190
    assert len({(p["id"], p["lang"]) for p in paras}) == len(paras)
    assert len({(q["id"], q["lang"]) for q in questions}) == len(questions)


def test_real_no_article_in_both_splits(real_out: tuple[Path, dict[str, Any]]) -> None:
    out, counts = real_out
    paras = read_jsonl(out / "paragraphs.jsonl")
    questions = read_jsonl(out / "questions.jsonl")
    by_split: dict[str, set[int]] = {"train": set(), "test": set()}
    titles: dict[str, set[str]] = {"train": set(), "test": set()}
    for p in paras:
        by_split[p["split"]].add(p["article"])
        titles[p["split"]].add(p["title"])
    assert not by_split["train"] & by_split["test"]
    assert not titles["train"] & titles["test"]
    assert by_split["test"] == set(counts["test_articles"])
    split_of = {(p["id"], p["lang"]): p["split"] for p in paras}
    assert all(q["split"] == split_of[(q["paragraph_id"], q["lang"])] for q in questions)
    # parallel: the same paragraph and question ids, in the same order, in every language
    en_q = [(q["id"], q["paragraph_id"], q["split"]) for q in questions if q["lang"] == "en"]
    for lang in XQUAD_LANGUAGES:
        assert [(q["id"], q["paragraph_id"], q["split"]) for q in questions if q["lang"] == lang] == en_q


def test_real_deterministic(real_out: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = real_out
    mirror = mirror_or_skip()
    # Language order changes row order but not the split.
    prepare_xquad(mirror / "xquad", tmp_path / "again", ["zh", "en"], n_test_articles=24, seed=42)
    first = {(p["id"], p["lang"]): p for p in read_jsonl(out / "paragraphs.jsonl")}
    for p in read_jsonl(tmp_path / "again" / "paragraphs.jsonl"):
        assert first[(p["id"], p["lang"])] == p
