"""XQuAD parsing and the by-article train/test split.

XQuAD (Artetxe et al., 2020) translates 240 SQuAD v1.1 dev paragraphs from 48 articles, with their 1190 questions,
into 11 languages. The translations are fully parallel: every language has the same articles, paragraphs, question
ids and order. :func:`prepare_xquad` checks this and fails if it does not hold, because the split and the
cross-lingual evaluation both rely on it.

Articles, not paragraphs, are split: a held-out (``test``) article never contributes a paragraph or question to the
``train`` pool that seeds data generation, so no passage of the evaluation corpus (nor a sibling paragraph on the
same topic) leaks into training. The split depends only on ``(n_articles, n_test, seed)``, so it is the same for
every language.

Outputs of :func:`prepare_xquad` (``out_dir`` is rewritten whole):

``paragraphs.jsonl``, one row per (language, paragraph), ordered by the requested languages, then article, then
paragraph::

    {"id": "a07p3",          # language-independent: article index (2 digits) and paragraph index in the article
     "lang": "de",           # ISO 639-1
     "article": 7,           # 0-based article index in the XQuAD file
     "title": "Martin_Luther",  # the article title (English in every language file)
     "text": "...",          # the paragraph ("context"), stripped
     "split": "train"}       # "train" (generation pool) or "test" (held-out evaluation)

``questions.jsonl``, one row per (language, question), in the same order::

    {"id": "56beb4343aeaaa14008c925b",  # the XQuAD/SQuAD question id; the same question in every language
     "lang": "de",
     "paragraph_id": "a00p0",           # the paragraph that answers it (its row in paragraphs.jsonl, same lang)
     "text": "...",                     # the question, stripped
     "answer": "...",                   # the first gold answer span ("" if none)
     "answer_start": 112,               # its character offset in the paragraph (-1 if none)
     "split": "test"}                   # always the split of its paragraph's article

``(id, lang)`` is unique in both files.

References:
    On the Cross-lingual Transferability of Monolingual Representations (Artetxe, Ruder, Yogatama; arXiv 1910.11856).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrofit.data.sources import DataError, dataset_file
from retrofit.io import atomic_dir, write_jsonl
from retrofit.schema import XQUAD_LANGUAGES, RowSchema, check_languages

log = logging.getLogger(__name__)

#: The contract of ``paragraphs.jsonl`` (module docstring), checked by the stages that read it.
PARAGRAPH_ROW = RowSchema("XQuAD paragraph row", "prepare", {
    "id": (str,), "lang": (str,), "article": (int,), "title": (str,), "text": (str,), "split": (str,),
}, nonempty=("id", "lang", "text", "split"))
#: The contract of ``questions.jsonl``.
QUESTION_ROW = RowSchema("XQuAD question row", "prepare", {
    "id": (str,), "lang": (str,), "paragraph_id": (str,), "text": (str,), "answer": (str,),
    "answer_start": (int,), "split": (str,),
}, nonempty=("id", "lang", "paragraph_id", "text", "split"))

#: Shape of the published XQuAD files (every language).
N_ARTICLES = 48
N_PARAGRAPHS = 240
N_QUESTIONS = 1190


@dataclass(frozen=True)
class Question:
    """One XQuAD question: its SQuAD id, text and first gold answer (text and character offset, -1 if absent)."""

    id: str
    text: str
    answer: str = ""
    answer_start: int = -1


@dataclass(frozen=True)
class Paragraph:
    """One XQuAD paragraph ("context") and its questions."""

    text: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Article:
    """One XQuAD article: its title and paragraphs."""

    title: str
    paragraphs: tuple[Paragraph, ...]


def xquad_file(lang: str) -> str:
    """The name of one language's XQuAD file inside the ``xquad/`` folder, e.g. ``xquad.en.json``."""
    return f"xquad.{lang}.json"


def paragraph_id(article: int, paragraph: int) -> str:
    """The language-independent id of a paragraph, e.g. ``paragraph_id(7, 3) == "a07p3"``."""
    return f"a{article:02d}p{paragraph}"


def _get(obj: Any, key: str, typ: type, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{where}: missing key {key!r} (expected SQuAD v1.1 JSON); re-fetch the raw data")
    value = obj[key]
    if not isinstance(value, typ):
        raise DataError(f"{where}.{key}: expected {typ.__name__}, got {type(value).__name__}; re-fetch the raw data")
    return value


def _text(obj: Any, key: str, where: str) -> str:
    value = _get(obj, key, str, where).strip()
    if not value:
        raise DataError(f"{where}.{key}: empty text; re-fetch the raw data")
    return value


def load_xquad(path: str | Path) -> list[Article]:
    """Parse one XQuAD (SQuAD v1.1) file.

    Args:
        path: An ``xquad.<lang>.json`` file.

    Returns:
        Its articles in file order.

    Raises:
        DataError: The file is not valid JSON, lacks a SQuAD key, has empty text or repeats a question id; the
            message names the file and the position (``data[3].paragraphs[2].qas[1]``).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot parse as JSON ({exc}); re-fetch the raw data") from exc
    articles: list[Article] = []
    seen: set[str] = set()
    for ai, art in enumerate(_get(doc, "data", list, str(path))):
        where_a = f"{path}: data[{ai}]"
        paragraphs = []
        for pi, par in enumerate(_get(art, "paragraphs", list, where_a)):
            where_p = f"{where_a}.paragraphs[{pi}]"
            questions = []
            for qi, qa in enumerate(_get(par, "qas", list, where_p)):
                where_q = f"{where_p}.qas[{qi}]"
                qid = _text(qa, "id", where_q)
                if qid in seen:
                    raise DataError(f"{where_q}: question id {qid!r} repeats; re-fetch the raw data")
                seen.add(qid)
                answers = qa.get("answers") or [{}]
                first = answers[0] if isinstance(answers[0], dict) else {}
                questions.append(
                    Question(
                        qid,
                        _text(qa, "question", where_q),
                        str(first.get("text", "")).strip(),
                        int(first.get("answer_start", -1)),
                    )
                )
            paragraphs.append(Paragraph(_text(par, "context", where_p), tuple(questions)))
        articles.append(Article(_text(art, "title", where_a), tuple(paragraphs)))
    return articles


def check_parallel(parsed: dict[str, list[Article]], names: dict[str, str] | None = None) -> None:
    """Check that every language has the same articles, titles, paragraphs and question ids in the same order.

    Args:
        parsed: Language -> its parsed articles; the first language is the reference.
        names: Language -> file name for messages (defaults to the language code).

    Raises:
        DataError: Naming both files, the article and what differs.
    """
    if not parsed:
        return
    names = names or {}
    ref_lang, ref = next(iter(parsed.items()))
    ref_name = names.get(ref_lang, ref_lang)
    for lang, arts in parsed.items():
        name = names.get(lang, lang)
        prefix = f"XQuAD is not parallel: {name} differs from {ref_name}"
        fix = "the split and cross-lingual evaluation need identical structure; re-fetch the raw data"
        if len(arts) != len(ref):
            raise DataError(f"{prefix}: {len(arts)} articles vs {len(ref)}; {fix}")
        for ai, (a, r) in enumerate(zip(arts, ref, strict=True)):
            at = f"article {ai} ({r.title!r})"
            if a.title != r.title:
                raise DataError(f"{prefix} at {at}: title {a.title!r}; {fix}")
            if len(a.paragraphs) != len(r.paragraphs):
                raise DataError(f"{prefix} at {at}: {len(a.paragraphs)} paragraphs vs {len(r.paragraphs)}; {fix}")
            for pi, (p, q) in enumerate(zip(a.paragraphs, r.paragraphs, strict=True)):
                ids, ref_ids = [x.id for x in p.questions], [x.id for x in q.questions]
                if ids != ref_ids:
                    raise DataError(f"{prefix} at {at}, paragraph {pi}: question ids {ids} vs {ref_ids}; {fix}")


def split_articles(n_articles: int, n_test: int, seed: int) -> set[int]:
    """Choose the held-out articles.

    Each article index is ranked by ``sha256("<seed>:<index>")`` and the ``n_test`` lowest ranks are held out. The
    choice therefore depends only on the arguments (not on language, file order or Python's hash seed), and a
    different seed gives an independent split.

    Args:
        n_articles: How many articles there are (indices ``0 .. n_articles-1``).
        n_test: How many to hold out, ``0 <= n_test <= n_articles``.
        seed: The split seed.

    Returns:
        The held-out (test) article indices.

    Raises:
        ValueError: ``n_test`` is out of range.
    """
    if n_articles < 0 or not 0 <= n_test <= n_articles:
        raise ValueError(f"n_test must be between 0 and n_articles={n_articles}, got {n_test}")

    def rank(i: int) -> str:
        return hashlib.sha256(f"xquad-split:{seed}:{i}".encode()).hexdigest()

    return set(sorted(range(n_articles), key=lambda i: (rank(i), i))[:n_test])


def prepare_xquad(
    raw_dir: str | Path, out_dir: str | Path, langs: list[str], n_test_articles: int, seed: int
) -> dict[str, Any]:
    """Parse XQuAD for ``langs``, verify it is parallel, split it by article and write the two tables.

    Args:
        raw_dir: The ``xquad/`` folder of a raw-data directory from :func:`retrofit.data.sources.fetch` (or of the
            mirror); reads ``xquad.<lang>.json``.
        out_dir: Output directory, rewritten atomically with ``paragraphs.jsonl`` and ``questions.jsonl`` (schemas
            in the module docstring).
        langs: ISO 639-1 codes, a subset of :data:`retrofit.schema.XQUAD_LANGUAGES`; the first is the
            reference for the parallelism check.
        n_test_articles: How many articles to hold out for evaluation.
        seed: The split seed (see :func:`split_articles`).

    Returns:
        Counts: ``{"languages", "seed", "articles": {"train", "test"}, "test_articles": [...],
        "paragraphs": {"train", "test"}, "questions": {"train", "test"},
        "per_language": {lang: {"paragraphs": {...}, "questions": {...}}}}`` (paragraph and question totals sum
        over languages).

    Raises:
        ValueError: An unsupported or repeated language, or ``n_test_articles`` out of range.
        DataError: A file is missing or malformed, or the languages are not parallel.
    """
    check_languages(list(langs), XQUAD_LANGUAGES, key="langs")
    if not langs:
        raise ValueError("langs: give at least one XQuAD language")
    paths = {lang: dataset_file(raw_dir, "xquad", xquad_file(lang)) for lang in langs}
    parsed = {lang: load_xquad(path) for lang, path in paths.items()}
    check_parallel(parsed, {lang: str(path) for lang, path in paths.items()})
    n_articles = len(next(iter(parsed.values())))
    test = split_articles(n_articles, n_test_articles, seed)

    para_rows: list[dict[str, Any]] = []
    q_rows: list[dict[str, Any]] = []
    per_lang: dict[str, dict[str, dict[str, int]]] = {}
    for lang, arts in parsed.items():
        c = {"paragraphs": {"train": 0, "test": 0}, "questions": {"train": 0, "test": 0}}
        for ai, art in enumerate(arts):
            split = "test" if ai in test else "train"
            for pi, par in enumerate(art.paragraphs):
                pid = paragraph_id(ai, pi)
                para_rows.append(
                    {"id": pid, "lang": lang, "article": ai, "title": art.title, "text": par.text, "split": split}
                )
                c["paragraphs"][split] += 1
                for q in par.questions:
                    q_rows.append(
                        {
                            "id": q.id,
                            "lang": lang,
                            "paragraph_id": pid,
                            "text": q.text,
                            "answer": q.answer,
                            "answer_start": q.answer_start,
                            "split": split,
                        }
                    )
                    c["questions"][split] += 1
        per_lang[lang] = c

    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "paragraphs.jsonl", para_rows)
        write_jsonl(tmp / "questions.jsonl", q_rows)

    def total(kind: str, split: str) -> int:
        return sum(c[kind][split] for c in per_lang.values())

    counts: dict[str, Any] = {
        "languages": list(langs),
        "seed": seed,
        "articles": {"train": n_articles - len(test), "test": len(test)},
        "test_articles": sorted(test),
        "paragraphs": {s: total("paragraphs", s) for s in ("train", "test")},
        "questions": {s: total("questions", s) for s in ("train", "test")},
        "per_language": per_lang,
    }
    log.info("xquad: %s", {k: counts[k] for k in ("articles", "paragraphs", "questions")})
    return counts
