"""Source passages and few-shot exemplar pools for generation, read from ``data/prepared``.

Passages (what a query is written for) come from:

- ``xquad``: XQuAD **training-pool** paragraphs (Wikipedia). Held-out test articles are never read here;
- ``ntrex``: NTREX-128 news paragraphs, a second genre;
- ``wikipedia``: Wikipedia from the hub (paper scale; see :func:`wikipedia_passages`).

Exemplars (what a small base LM imitates) are real in-language data:

- ``short_query``: XQuAD training-pool questions, each shown with the sentence that holds its answer;
- ``title``: NTREX headlines with their document's first paragraph;
- ``paraphrase``: STS-B pairs scored >= 4 (the languages that STSb-multi-MT covers).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from retrofit import hub
from retrofit.data.english import ENGLISH_ROW
from retrofit.data.ntrex import HEADLINE_ROW, PASSAGE_ROW
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.errors import AssetError
from retrofit.generate.prompts import Exemplar, answer_sentence, snippet
from retrofit.io import iter_jsonl


@dataclass(frozen=True)
class Passage:
    """A source passage; ``source_id`` is language-independent (parallel translations share it)."""

    id: str
    lang: str
    source: str
    source_id: str
    text: str
    group: str  # exemplars from the same group (paragraph or document) are never shown for this passage


def load_passages(prepared: Path, sources: list[str], langs: list[str]) -> dict[str, list[Passage]]:
    """All source passages per language, in a stable order.

    Args:
        prepared: The ``data/prepared`` directory.
        sources: Any of ``xquad``, ``ntrex``, ``wikipedia``.
        langs: Languages to load.

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
            out[lang].extend(wikipedia_passages(lang))
    return dict(out)


def wikipedia_passages(lang: str, limit: int = 20000, date: str = "20231101") -> list[Passage]:
    """First paragraphs of Wikipedia articles from the hub dataset ``wikimedia/wikipedia`` (needs the network).

    Online, one metadata probe (:func:`retrofit.hub.probe`) runs first, so an unreachable Hub fails in seconds
    rather than in the libraries' retry loops; offline (``HF_HUB_OFFLINE=1``), only a pre-populated cache is read.

    Raises:
        RuntimeError: The hub cannot be reached; the message says how to provide the data offline.
    """
    describe = f"generate.passage_sources 'wikipedia': wikimedia/wikipedia ({date}.{lang})"
    fetch = f"run `huggingface-cli download --repo-type dataset wikimedia/wikipedia --include '{date}.{lang}/*'`"
    drop = "drop 'wikipedia' from generate.passage_sources (XQuAD and NTREX passages need no network)"
    if not hub.offline():
        hub.probe("wikimedia/wikipedia", describe, fetch=fetch, local=drop)
    try:
        from datasets import load_dataset

        ds = load_dataset("wikimedia/wikipedia", f"{date}.{lang}", split="train", streaming=True)
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


def load_exemplars(prepared: Path, langs: list[str], snippet_chars: int) -> dict[tuple[str, str], ExemplarPool]:
    """Few-shot pools per (task type, language); each exemplar comes with its group id.

    Args:
        prepared: The ``data/prepared`` directory.
        langs: Languages to load.
        snippet_chars: Maximum characters of an exemplar's text.

    Returns:
        ``{(task_type, lang): ExemplarPool}``; a missing key means no exemplars exist.
    """
    wanted = set(langs)
    pools: dict[tuple[str, str], list[tuple[Exemplar, str]]] = defaultdict(list)
    paras = {
        (r["id"], r["lang"]): r["text"]
        for r in iter_jsonl(prepared / "xquad" / "paragraphs.jsonl", PARAGRAPH_ROW)
        if r["split"] == "train" and r["lang"] in wanted
    }
    for q in iter_jsonl(prepared / "xquad" / "questions.jsonl", QUESTION_ROW):
        key = (q["paragraph_id"], q["lang"])
        if q["split"] == "train" and key in paras:
            text = answer_sentence(paras[key], q.get("answer_start", -1), snippet_chars)
            pools[("short_query", q["lang"])].append((Exemplar(text, q["text"]), f"xquad:{q['paragraph_id']}"))
    heads = prepared / "ntrex" / "headlines.jsonl"
    if heads.is_file():
        for r in iter_jsonl(heads, HEADLINE_ROW):
            if r["lang"] in wanted:
                ex = Exemplar(snippet(r["text"], snippet_chars), r["headline"])
                pools[("title", r["lang"])].append((ex, f"ntrex:{r['doc_id']}"))
    sts = prepared / "english" / "stsb_multi_mt.jsonl"
    if sts.is_file():
        for r in iter_jsonl(sts, ENGLISH_ROW):
            if r["lang"] in wanted and "-test-" not in r["id"] and len(r["query"]) <= snippet_chars:
                pools[("paraphrase", r["lang"])].append((Exemplar(r["query"], r["positive"]), f"stsb:{r['id']}"))
    return {key: ExemplarPool(items) for key, items in pools.items()}


class ExemplarPool:
    """The exemplars of one (task type, language), split once into terciles by query length.

    Drawing from the tercile of short, medium or long queries is how a base LM is steered towards the sampled
    length; falling back to the whole pool keeps small pools usable.
    """

    def __init__(self, items: list[tuple[Exemplar, str]]) -> None:
        self.items = sorted(items, key=lambda eg: (len(eg[0].query), eg[0].query, eg[1]))
        n = len(self.items)
        self.terciles = {
            "short": self.items[: n // 3],
            "medium": self.items[n // 3 : 2 * n // 3],
            "long": self.items[2 * n // 3 :],
        }

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, k: int, length: str, avoid_group: str, rng: random.Random) -> list[Exemplar]:
        """``k`` exemplars from the ``length`` tercile, none from ``avoid_group`` (the target's own paragraph)."""
        for source in (self.terciles[length], self.items):
            usable = [e for e, g in source if g != avoid_group]
            if len(usable) >= k:
                return rng.sample(usable, k)
        return [e for e, g in self.items if g != avoid_group][:k]
