"""NTREX-128 news paragraphs: a second, parallel generation source.

NTREX-128 (Federmann et al., 2022) translates the 1997 English sentences of the WMT19 news test set (123 documents)
into 128 languages. Its files are line-aligned: line ``i`` of ``newstest2019-ref.<code>.txt`` translates line ``i``
of every other file, and line ``i`` of ``DOCUMENT_IDS.tsv`` names its document. A document's first line is its
headline; the rest is its body, one sentence a line.

:func:`prepare_ntrex` groups consecutive body sentences of a document into paragraphs of at most ``max_chars``
characters. The grouping is decided once, on the English reference (``eng-US``), and applied by line index to every
language, so passage ``ntrex-d012-p03`` is the same sentences in every language (other languages may run somewhat
over ``max_chars``; the counts report how many). A single sentence longer than ``max_chars`` forms its own
paragraph. Sentences are joined with a space, or with nothing in Chinese and Japanese.

Outputs of :func:`prepare_ntrex` (``out_dir`` is rewritten whole; rows ordered by language, document, paragraph):

``passages.jsonl``, one row per (language, paragraph)::

    {"id": "ntrex-d012-p03",       # language-independent: document index (3 digits), paragraph index (2 digits)
     "lang": "de",                 # ISO 639-1
     "doc_id": "ntrex-d012",       # language-independent document id (index in DOCUMENT_IDS.tsv order)
     "source_doc": "bbc.381790",   # the document's name in DOCUMENT_IDS.tsv
     "headline": "...",            # the document's headline in this language
     "text": "...",                # the paragraph
     "line_start": 15, "line_end": 18}  # its 0-based line range in the NTREX files, end exclusive

``headlines.jsonl``, one row per (language, document): the headline and the document's first body paragraph, a
ready-made (title -> passage) pair::

    {"id": "ntrex-d012-h", "lang": "de", "doc_id": "ntrex-d012", "source_doc": "bbc.381790",
     "headline": "...", "passage_id": "ntrex-d012-p00", "text": "..."}

A paragraph whose sentences are all empty in some language is left out for that language and counted.

References:
    NTREX-128 -- News Test References for MT Evaluation of 128 Languages (Federmann, Kocmi, Xin; SUMEval 2022).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrofit.data.sources import DataError, dataset_file
from retrofit.io import atomic_dir, write_jsonl
from retrofit.schema import NTREX_CODES, RowSchema, check_languages

log = logging.getLogger(__name__)

#: The contract of ``passages.jsonl`` (module docstring), checked by the stages that read it.
PASSAGE_ROW = RowSchema("NTREX passage row", "prepare", {
    "id": (str,), "lang": (str,), "doc_id": (str,), "headline": (str,), "text": (str,),
}, nonempty=("id", "lang", "text"))
#: The contract of ``headlines.jsonl``.
HEADLINE_ROW = RowSchema("NTREX headline row", "prepare", {
    "id": (str,), "lang": (str,), "doc_id": (str,), "headline": (str,), "passage_id": (str,), "text": (str,),
}, nonempty=("id", "lang", "headline", "text"))

#: Name of the line -> document table inside the ``ntrex128/`` folder.
DOCUMENT_IDS_FILE = "DOCUMENT_IDS.tsv"

#: Languages written without spaces between sentences.
_NO_SPACE_LANGS = frozenset({"zh", "ja"})


def ntrex_file(lang: str) -> str:
    """The name of one language's NTREX-128 reference inside the ``ntrex128/`` folder.

    For example ``ntrex_file("de") == "NTREX-128__newstest2019-ref.deu.txt"`` (the mirror flattens the repository
    path ``NTREX-128/newstest2019-ref.deu.txt``).
    """
    return f"NTREX-128__newstest2019-ref.{NTREX_CODES[lang]}.txt"


@dataclass(frozen=True)
class Document:
    """One NTREX document: its position, name and line range (``start`` is the headline; end exclusive)."""

    index: int
    name: str
    start: int
    end: int


def read_lines(path: str | Path) -> list[str]:
    """Read a line-aligned text file exactly, one entry per line.

    Lines are split on ``\\n`` only (the files use CRLF, and ``str.splitlines`` would also split on Unicode
    separators inside a sentence and break the alignment); a trailing ``\\r``, a byte-order mark and surrounding
    whitespace are removed.

    Args:
        path: The file.

    Returns:
        Its lines.

    Raises:
        DataError: The file is not UTF-8.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc}); re-fetch the raw data") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def documents(doc_ids: list[str], where: str = DOCUMENT_IDS_FILE) -> list[Document]:
    """Turn the per-line document names into documents (runs of consecutive equal names).

    Args:
        doc_ids: The document name of each line.
        where: File name for messages.

    Returns:
        The documents in order.

    Raises:
        DataError: A line has no document name, or a document's lines are not consecutive.
    """
    docs: list[Document] = []
    for i, name in enumerate(doc_ids):
        if not name:
            raise DataError(f"{where}:{i + 1}: empty document id; re-fetch the raw data")
        if docs and docs[-1].name == name:
            docs[-1] = Document(docs[-1].index, name, docs[-1].start, i + 1)
            continue
        if any(d.name == name for d in docs):
            raise DataError(
                f"{where}:{i + 1}: document {name!r} resumes after other documents; its lines must be consecutive"
            )
        docs.append(Document(len(docs), name, i, i + 1))
    return docs


def group_lines(lengths: list[int], max_chars: int) -> list[list[int]]:
    """Greedily group consecutive lines into paragraphs of at most ``max_chars`` characters.

    Args:
        lengths: Character length of each line, in order.
        max_chars: Upper bound on a paragraph's length counting one joining space between lines; a line longer
            than this forms a paragraph of its own.

    Returns:
        Groups of indices into ``lengths``, covering each exactly once, in order.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, n in enumerate(lengths):
        if current and size + 1 + n > max_chars:
            groups.append(current)
            current, size = [], 0
        size = n if not current else size + 1 + n
        current.append(i)
    if current:
        groups.append(current)
    return groups


def prepare_ntrex(raw_dir: str | Path, out_dir: str | Path, langs: list[str], max_chars: int) -> dict[str, Any]:
    """Group NTREX-128 documents into parallel paragraphs and write passages and headline pairs.

    Args:
        raw_dir: The ``ntrex128/`` folder of a raw-data directory from :func:`retrofit.data.sources.fetch` (or of the
            mirror); reads ``DOCUMENT_IDS.tsv`` and ``NTREX-128__newstest2019-ref.<code>.txt``.
        out_dir: Output directory, rewritten atomically with ``passages.jsonl`` and ``headlines.jsonl`` (schemas in
            the module docstring).
        langs: ISO 639-1 codes present in :data:`retrofit.schema.NTREX_CODES`.
        max_chars: Paragraph length bound, measured on the English reference.

    Returns:
        Counts: ``{"languages", "max_chars", "lines", "documents", "paragraphs" (per language, before dropping),
        "passages": {lang: n}, "headlines": {lang: n}, "dropped_empty": {lang: n},
        "over_max_chars": {lang: n}, "mean_chars": {lang: x}}``.

    Raises:
        ValueError: An unsupported or repeated language, or ``max_chars < 1``.
        DataError: A file is missing, not UTF-8, or not line-aligned with ``DOCUMENT_IDS.tsv``.
    """
    check_languages(list(langs), tuple(NTREX_CODES), key="langs")
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    ids_path = dataset_file(raw_dir, "ntrex128", DOCUMENT_IDS_FILE)
    doc_ids = [line.split("\t", 1)[0].strip() for line in read_lines(ids_path)]
    docs = documents(doc_ids, str(ids_path))
    n_lines = len(doc_ids)

    texts = {lang: _aligned_lines(raw_dir, lang, ids_path, n_lines)
             for lang in dict.fromkeys(["en", *langs])}  # English decides the grouping even when it is not requested
    english = texts["en"]
    paragraphs: list[tuple[Document, int, list[int]]] = []  # (doc, paragraph index, line indices)
    for doc in docs:
        body = list(range(doc.start + 1, doc.end))
        for pi, group in enumerate(group_lines([len(english[i]) for i in body], max_chars)):
            paragraphs.append((doc, pi, [body[g] for g in group]))

    passages: list[dict[str, Any]] = []
    headlines: list[dict[str, Any]] = []
    counts: dict[str, Any] = {
        "languages": list(langs),
        "max_chars": max_chars,
        "lines": n_lines,
        "documents": len(docs),
        "paragraphs": len(paragraphs),
        "passages": {},
        "headlines": {},
        "dropped_empty": {},
        "over_max_chars": {},
        "mean_chars": {},
    }
    for lang in langs:
        rows, dropped, over = _language_passages(lang, texts[lang], paragraphs, max_chars)
        heads = _headlines(lang, rows, docs)
        passages += rows
        headlines += heads
        counts["passages"][lang] = len(rows)
        counts["headlines"][lang] = len(heads)
        counts["dropped_empty"][lang] = dropped
        counts["over_max_chars"][lang] = over
        counts["mean_chars"][lang] = round(sum(len(r["text"]) for r in rows) / len(rows), 1) if rows else 0.0
        if dropped:
            log.warning("ntrex %s: %d paragraph(s) empty in this language, left out", lang, dropped)

    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "passages.jsonl", passages)
        write_jsonl(tmp / "headlines.jsonl", headlines)
    log.info(
        "ntrex: %d documents, %d paragraphs per language, %d passage rows", len(docs), len(paragraphs), len(passages)
    )
    return counts


def _aligned_lines(raw_dir: str | Path, lang: str, ids_path: Path, n_lines: int) -> list[str]:
    """One language's lines, checked to be line-aligned with ``DOCUMENT_IDS.tsv``."""
    path = dataset_file(raw_dir, "ntrex128", ntrex_file(lang))
    lines = read_lines(path)
    if len(lines) != n_lines:
        raise DataError(
            f"{path}: {len(lines)} lines but {ids_path} has {n_lines}; the files must be line-aligned, "
            f"re-fetch the raw data"
        )
    return lines


def _language_passages(lang: str, lines: list[str], paragraphs: list[tuple[Document, int, list[int]]],
                       max_chars: int) -> tuple[list[dict[str, Any]], int, int]:
    """One language's passage rows, and how many paragraphs were empty in it or longer than ``max_chars``."""
    sep = "" if lang in _NO_SPACE_LANGS else " "
    rows: list[dict[str, Any]] = []
    dropped = over = 0
    for doc, pi, idx in paragraphs:
        text = sep.join(lines[i] for i in idx if lines[i])
        if not text:
            dropped += 1
            continue
        rows.append({
            "id": f"ntrex-d{doc.index:03d}-p{pi:02d}",
            "lang": lang,
            "doc_id": f"ntrex-d{doc.index:03d}",
            "source_doc": doc.name,
            "headline": lines[doc.start],
            "text": text,
            "line_start": idx[0],
            "line_end": idx[-1] + 1,
        })
        over += len(text) > max_chars
    return rows, dropped, over


def _headlines(lang: str, rows: list[dict[str, Any]], docs: list[Document]) -> list[dict[str, Any]]:
    """One (headline, first passage) pair per document whose headline and first passage are non-empty."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["doc_id"], row)
    out = []
    for doc in docs:
        lead = first.get(f"ntrex-d{doc.index:03d}")
        if lead is None or not lead["headline"]:
            continue
        out.append({
            "id": f"{lead['doc_id']}-h",
            "lang": lang,
            "doc_id": lead["doc_id"],
            "source_doc": doc.name,
            "headline": lead["headline"],
            "passage_id": lead["id"],
            "text": lead["text"],
        })
    return out
