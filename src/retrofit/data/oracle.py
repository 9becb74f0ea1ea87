"""The oracle: human XQuAD questions in place of the generator's queries, an upper bound on synthetic data.

For every synthetic row of the dedupe stage, :func:`oracle_rows` writes one oracle twin in the same language: a
human question from XQuAD's training pool on the same passage (a row whose passage is an XQuAD paragraph), or on
a training-pool paragraph that no other twin of the language uses (a row whose passage is NTREX news, which has no
questions). Every language therefore gets as many oracle rows as synthetic ones, so a run that trains on the oracle
(``train.mix.synthetic_source: oracle``) sees the same counts as the run it is compared with, and the difference
measures the generator's quality, not the recipe. Held-out test articles are never read. Twins are assigned in the
mixture's sample order (:func:`retrofit.data.sampling.rank_key` of the twin's id), so when a language runs out of
unused questions (paper scale: thousands of rows against about 800 training-pool questions per language) the rows
left without a twin are the ones the smallest mixtures never select; the count is logged.

Output rows (the dedupe stage's schema, :mod:`retrofit.filter.dedupe`)::

    {"id": "oracle-syn-de-000042",     # "oracle-" + the twin's id
     "source": "oracle", "lang": "de",
     "task_type": "short_query",       # a human question, whatever the twin's task type
     "query": "...",                   # the XQuAD question
     "positive": "...",                # its paragraph
     "negative": null,
     "source_id": "xquad:a07p3",
     "provenance": {"oracle_of": "syn-de-000042",   # the twin: the mixture selects twins and oracle rows alike
                    "twin_task_type": "title",
                    "question_id": "56beb4343aeaaa14008c925b",
                    "evidence": "..."}}            # the sentence that holds the answer (retrofit.train.trainer cuts there)
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from retrofit.data.sampling import rank_key
from retrofit.data.passages import answer_sentence
from retrofit.schema import HUMAN, ORACLE

log = logging.getLogger(__name__)

_XQUAD = "xquad:"


def oracle_rows(
    synthetic: Sequence[Mapping[str, Any]],
    paragraphs: Iterable[Mapping[str, Any]],
    questions: Iterable[Mapping[str, Any]],
    seed: int,
) -> list[dict[str, Any]]:
    """One oracle twin per synthetic row (see the module docstring), in the input order.

    Args:
        synthetic: The dedupe stage's synthetic rows (``source_id`` ``xquad:<paragraph>`` or another source).
        paragraphs: ``data/prepared/xquad/paragraphs.jsonl`` rows (``id``, ``lang``, ``text``, ``split``).
        questions: ``data/prepared/xquad/questions.jsonl`` rows (``id``, ``lang``, ``paragraph_id``, ``text``,
            ``answer_start``, ``split``).
        seed: ``base.seed``: the mixture's sample order, and the choice of questions and of the paragraphs that
            stand in for non-XQuAD passages.

    Returns:
        The oracle rows, in the input order of their twins (rows without a twin are skipped).
    """
    text_of = {(p["lang"], p["id"]): p["text"] for p in paragraphs if p["split"] == "train"}
    asked: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for q in questions:
        if q["split"] == "train" and (q["lang"], q["paragraph_id"]) in text_of:
            asked[(q["lang"], q["paragraph_id"])].append(q)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, row in sorted(enumerate(synthetic), key=lambda x: rank_key(seed, x[1]["id"])):
        by_lang[row["lang"]].append(i)
    out: dict[int, dict[str, Any]] = {}
    for lang, indices in sorted(by_lang.items()):
        rng = random.Random(f"{seed}:oracle:{lang}")
        own = [_paragraph(synthetic[i]) for i in indices]
        spare = sorted(pid for (lg, pid) in asked if lg == lang and pid not in set(own))
        rng.shuffle(spare)
        used_questions: set[str] = set()

        def unused(pid: str | None) -> list[Mapping[str, Any]]:
            free = (q for q in asked.get((lang, pid), []) if q["id"] not in used_questions)  # noqa: B023
            return sorted(free, key=lambda q: q["id"])

        for n_done, (i, pid) in enumerate(zip(indices, own, strict=True)):
            free = unused(pid)
            while not free and spare:  # no XQuAD passage, or its questions are all taken: a fresh paragraph
                pid = spare.pop()
                free = unused(pid)
            if not free:
                log.warning("oracle: %s has questions for %d of its %d rows; the rest get no twin", lang, n_done,
                            len(indices))
                break
            question = free[rng.randrange(len(free))]
            used_questions.add(question["id"])
            passage = text_of[(lang, pid)]
            twin = synthetic[i]
            out[i] = {
                "id": f"{ORACLE}-{twin['id']}",
                "source": ORACLE,
                "lang": lang,
                "task_type": "short_query",
                "query": question["text"],
                "positive": passage,
                "negative": None,
                "source_id": f"{_XQUAD}{pid}",
                "provenance": {
                    "oracle_of": twin["id"],
                    "twin_task_type": twin["task_type"],
                    "question_id": question["id"],
                    "evidence": answer_sentence(passage, int(question.get("answer_start", -1)), len(passage)),
                },
            }
    return [out[i] for i in range(len(synthetic)) if i in out]


def human_rows(paragraphs: Iterable[Mapping[str, Any]], questions: Iterable[Mapping[str, Any]],
               languages: Sequence[str]) -> list[dict[str, Any]]:
    """Every training-pool XQuAD question of ``languages`` as a row of its own (``source`` ``human``), by language and
    question id: the scale study's stand-in for generated queries, about 790 per language where the generator
    affords 24 (``dedupe.human``; ``train.mix.synthetic_source: human`` takes a nested sample per language).

    The rows follow the oracle rows' contract (module docstring) with ``id`` ``human-<lang>-<question id>`` and no
    twin in ``provenance``. Held-out test articles are never read.
    """
    text_of = {(p["lang"], p["id"]): p["text"] for p in paragraphs if p["split"] == "train"}
    wanted = set(languages)
    out = []
    for q in sorted(questions, key=lambda q: (q["lang"], q["id"])):
        passage = text_of.get((q["lang"], q["paragraph_id"]))
        if q["split"] != "train" or q["lang"] not in wanted or passage is None:
            continue
        out.append({
            "id": f"{HUMAN}-{q['lang']}-{q['id']}",
            "source": HUMAN,
            "lang": q["lang"],
            "task_type": "short_query",
            "query": q["text"],
            "positive": passage,
            "negative": None,
            "source_id": f"{_XQUAD}{q['paragraph_id']}",
            "provenance": {"question_id": q["id"],
                           "evidence": answer_sentence(passage, int(q.get("answer_start", -1)), len(passage))},
        })
    return out


def _paragraph(row: Mapping[str, Any]) -> str | None:
    sid = row.get("source_id") or ""
    return sid[len(_XQUAD):] if sid.startswith(_XQUAD) else None
