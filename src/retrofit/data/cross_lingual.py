"""Cross-lingual twins: a generated query in language X with the English version of its passage as the positive.

XQuAD and NTREX-128 are parallel: a passage's ``source_id`` names it in every language. For every non-English
synthetic row whose positive is the whole passage (the ``short_query``, ``long_query`` and ``title`` tasks; a
``paraphrase`` row's positive is one sentence), :func:`cross_rows` writes a twin whose positive is the English
passage of the same ``source_id``. Training on such pairs asks the model to put a query near the translation of its
passage, the skill the held-out ``cross`` family (``X -> en`` and ``en -> X``) measures; it is the cheapest lever on
that family, since it needs no new generation. A passage without an English version (Wikipedia at paper scale) gets
no twin; the count is logged.

The twins are mined like every other row, in their own partition per query language (source ``cross``) whose
candidates are English passages, and batched together (:func:`retrofit.train.batching.batch_group`), so neither the
hard negatives nor the in-batch ones can be told apart from the positive by language. A run trains on them with
``train.mix.cross_lingual``: the share of its non-English synthetic rows replaced by their twins
(:func:`retrofit.train.mixture.select_mixture`), so the counts stay those of the run it is compared with.

Output rows (the dedupe stage's schema, :mod:`retrofit.filter.dedupe`)::

    {"id": "cross-syn-de-000042",      # "cross-" + the twin's id
     "source": "cross", "lang": "de",  # the query's language
     "task_type": "short_query",       # the twin's
     "query": "...",                   # the twin's query, unchanged
     "positive": "...",                # the English passage of the twin's source_id
     "negative": null,
     "source_id": "ntrex:ntrex-d078-p03",
     "provenance": {"cross_of": "syn-de-000042"}}
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.data.passages import load_passages
from retrofit.schema import CROSS

log = logging.getLogger(__name__)

#: Generated task types whose positive is the whole passage (a paraphrase's is one sentence of it).
WHOLE_PASSAGE_TASKS = frozenset({"short_query", "long_query", "title"})


def english_passages(prepared: str | Path, sources: Iterable[str] = ("xquad", "ntrex")) -> dict[str, str]:
    """``source_id -> English text`` of the parallel generation sources (XQuAD's training pool, NTREX-128)."""
    parallel = [s for s in sources if s in ("xquad", "ntrex")]
    return {p.source_id: p.text for p in load_passages(Path(prepared), parallel, ["en"]).get("en", [])}


def cross_rows(synthetic: Sequence[Mapping[str, Any]], english: Mapping[str, str]) -> list[dict[str, Any]]:
    """One cross-lingual twin per non-English synthetic row with a whole-passage positive and an English version.

    Args:
        synthetic: The dedupe stage's synthetic rows.
        english: ``source_id -> English passage`` (:func:`english_passages`).

    Returns:
        The twins, in input order.
    """
    out: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for row in synthetic:
        if row["lang"] == "en" or row["task_type"] not in WHOLE_PASSAGE_TASKS:
            continue
        text = english.get(row["source_id"] or "")
        if text is None:
            skipped[row["lang"]] += 1
            continue
        out.append({
            "id": f"{CROSS}-{row['id']}", "source": CROSS, "lang": row["lang"], "task_type": row["task_type"],
            "query": row["query"], "positive": text, "negative": None, "source_id": row["source_id"],
            "provenance": {"cross_of": row["id"]},
        })
    if skipped:
        log.warning("cross-lingual twins: no English passage for %d row(s): %s", sum(skipped.values()), dict(skipped))
    log.info("cross-lingual twins: %d", len(out))
    return out
