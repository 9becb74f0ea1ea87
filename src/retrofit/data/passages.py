"""Source passages (what a synthetic query is written for) and the sentences of a passage.

Passages come from ``data/prepared`` or the hub:

- ``xquad``: XQuAD **training-pool** paragraphs (Wikipedia). Held-out test articles are never read here;
- ``ntrex``: NTREX-128 news paragraphs, a second genre;
- ``wikipedia``: Wikipedia from the hub or a local folder laid out like it (paper scale; see
  :func:`wikipedia_passages`).

Generation (:mod:`retrofit.generate`) and the data built beside it (:mod:`retrofit.data.oracle`,
:mod:`retrofit.data.cross_lingual`) read them here, so the data layer never imports the generation layer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from retrofit import hub
from retrofit.config import WikipediaParams
from retrofit.data.ntrex import PASSAGE_ROW
from retrofit.data.xquad import PARAGRAPH_ROW
from retrofit.errors import AssetError
from retrofit.io import iter_jsonl

#: A sentence's end: a Latin or Devanagari mark before whitespace, or a CJK mark (CJK puts no space after it),
#: each with the closing quotes and brackets that follow it (so ``。”`` ends a sentence, and ``”`` opens none).
_SENTENCE_END = re.compile(r"[.!?।॥][\"'”’»」』）)\]]*(?=\s)|[。！？][\"'”’»」』）)\]]*")


@dataclass(frozen=True)
class Passage:
    """A source passage; ``source_id`` is language-independent (parallel translations share it)."""

    id: str
    lang: str
    source: str
    source_id: str
    text: str
    group: str  # exemplars from the same group (paragraph or document) are never shown for this passage


def load_passages(
    prepared: Path, sources: list[str], langs: list[str], wikipedia: WikipediaParams | None = None,
    wikipedia_limit: int = 20000,
) -> dict[str, list[Passage]]:
    """All source passages per language, in a stable order.

    Args:
        prepared: The ``data/prepared`` directory.
        sources: Any of ``xquad``, ``ntrex``, ``wikipedia``.
        langs: Languages to load.
        wikipedia: Where ``wikipedia`` is read (``generate.wikipedia``); default: the hub's ``wikimedia/wikipedia``.
        wikipedia_limit: Articles read per language (``generate.passages_per_language``).

    Returns:
        ``{lang: [Passage, ...]}``.
    """
    wanted = set(langs)
    out: dict[str, list[Passage]] = defaultdict(list)
    if "xquad" in sources:
        for r in iter_jsonl(prepared / "xquad" / "paragraphs.jsonl", PARAGRAPH_ROW):
            if r["lang"] in wanted and r["split"] == "train":  # never a held-out test article
                sid = f"xquad:{r['id']}"
                out[r["lang"]].append(Passage(f"{sid}:{r['lang']}", r["lang"], "xquad", sid, r["text"], sid))
    if "ntrex" in sources:
        for r in iter_jsonl(prepared / "ntrex" / "passages.jsonl", PASSAGE_ROW):
            if r["lang"] in wanted:
                sid = f"ntrex:{r['id']}"
                grp = f"ntrex:{r['doc_id']}"
                out[r["lang"]].append(Passage(f"{sid}:{r['lang']}", r["lang"], "ntrex", sid, r["text"], grp))
    if "wikipedia" in sources:
        for lang in langs:
            where = wikipedia or WikipediaParams(dataset="wikimedia/wikipedia", date="20231101")
            out[lang].extend(wikipedia_passages(lang, wikipedia_limit, where.date, where.dataset))
    return dict(out)


def wikipedia_passages(
    lang: str, limit: int = 20000, date: str = "20231101", dataset: str = "wikimedia/wikipedia",
) -> list[Passage]:
    """First paragraphs of Wikipedia articles from ``wikimedia/wikipedia`` or a local folder laid out like it.

    A hub id needs the network: online, one metadata probe (:func:`retrofit.hub.probe`) runs first, so an
    unreachable Hub fails in seconds rather than in the libraries' retry loops; offline (``HF_HUB_OFFLINE=1``), only
    a pre-populated cache is read. A local folder (:func:`retrofit.data.hub_layout.write_wikipedia`) is read through
    the same ``datasets.load_dataset`` call, streaming.

    Raises:
        RuntimeError: The hub cannot be reached; the message says how to provide the data offline.
    """
    describe = f"generate.passage_sources 'wikipedia': {dataset} ({date}.{lang})"
    fetch = f"run `huggingface-cli download --repo-type dataset {dataset} --include '{date}.{lang}/*'`"
    drop = ("set generate.wikipedia.dataset to a local folder laid out like it, or drop 'wikipedia' from "
            "generate.passage_sources (XQuAD and NTREX passages need no network)")
    local = Path(dataset).expanduser().is_dir()
    if not local and not hub.offline():
        hub.probe(dataset, describe, fetch=fetch, local=drop)
    try:
        from datasets import load_dataset

        ds = load_dataset(str(Path(dataset).expanduser()) if local else dataset, f"{date}.{lang}", split="train",
                          streaming=True)
        rows = []
        for i, r in enumerate(ds):
            if i >= limit:
                break
            para = next((p.strip() for p in r["text"].split("\n") if len(p.strip()) > 200), "")
            if para:
                sid = f"wikipedia:{r['id']}"
                rows.append(Passage(f"{sid}:{lang}", lang, "wikipedia", sid, para[:2000], sid))
        return rows
    except Exception as exc:
        raise AssetError(
            f"{describe}: cannot read it ({type(exc).__name__}: {str(exc)[:300]}). "
            + hub.provide_help(fetch=fetch, local=drop)
        ) from None


def _continues(text: str, mark: int) -> bool:
    """Whether the period at ``mark`` ends an initial or a day rather than a sentence ("John F. Kennedy", "am 30.")."""
    if text[mark] != ".":
        return False
    start = mark
    while start > 0 and not text[start - 1].isspace() and text[start - 1] != "(":
        start -= 1
    token = text[start:mark]
    return (len(token) == 1 and token.isalpha()) or (token.isdigit() and len(token) <= 2)


def sentences(text: str) -> list[str]:
    """Split a passage into sentences on ., !, ?, 。, ！, ？, । and ॥ (Thai, which has no such marks, stays whole).

    A period after a single letter or a one- or two-digit number does not end a sentence (initials, German dates
    and ordinals: "John F. Kennedy", "am 30. September"). Closing quotes and brackets stay with the sentence they
    close, and a piece with fewer than two letters or digits (a stray quote mark, "...") joins the sentence before
    it, so no sentence is punctuation alone.
    """
    cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(text) if not _continues(text, m.start())] + [len(text)]
    out: list[str] = []
    carry = ""  # a leading fragment, joined to the first real sentence
    for piece in (text[a:b] for a, b in pairwise(cuts)):
        if sum(ch.isalnum() for ch in piece) < 2:
            if out:
                out[-1] += piece
            else:
                carry += piece
            continue
        out.append(carry + piece)
        carry = ""
    return [s.strip() for s in out] or ([carry.strip()] if carry.strip() else [])  # out: >= 2 letters each


def snippet(text: str, max_chars: int, index: int = 0) -> str:
    """Sentence ``index`` of ``text`` (clamped), cut at a word boundary to at most ``max_chars`` characters."""
    parts = sentences(text) or [text]
    s = parts[min(index, len(parts) - 1)]
    if len(s) <= max_chars:
        return s
    cut = s[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def answer_sentence(passage: str, answer_start: int, max_chars: int) -> str:
    """The sentence of ``passage`` that contains character ``answer_start`` (the first sentence if unknown)."""
    if answer_start < 0:
        return snippet(passage, max_chars)
    offset = 0
    for i, s in enumerate(sentences(passage)):
        pos = passage.find(s, offset)
        if pos <= answer_start < pos + len(s) or pos < 0:
            return snippet(passage, max_chars, i)
        offset = pos + len(s)
    return snippet(passage, max_chars)
