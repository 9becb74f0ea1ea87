"""Few-shot exemplar pools for generation, read from ``data/prepared``.

Passages (what a query is written for) are :mod:`retrofit.data.passages`'.

Exemplars (what a small base LM imitates) are real in-language data:

- ``short_query``: XQuAD training-pool questions, each shown with the sentence that holds its answer;
- ``title``: NTREX headlines with their document's first paragraph;
- ``paraphrase``: STS-B pairs scored >= 4 (the languages that STSb-multi-MT covers; train and dev splits,
  ``data/prepared/exemplars/stsb_paraphrase.jsonl``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from retrofit.data.english import ENGLISH_ROW
from retrofit.data.ntrex import HEADLINE_ROW
from retrofit.data.passages import answer_sentence, snippet
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.generate.prompts import Exemplar
from retrofit.io import iter_jsonl


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
    sts = prepared / "exemplars" / "stsb_paraphrase.jsonl"  # train and dev pairs only (retrofit.data.english)
    if sts.is_file():
        for r in iter_jsonl(sts, ENGLISH_ROW):
            if r["lang"] in wanted and len(r["query"]) <= snippet_chars:
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
