"""More of each English task dataset as hard-negative candidates: the English part of the mine stage's ``pool``.

The dedupe stage keeps a nested, seeded sample of ``dedupe.english_per_source`` pairs per English dataset (48
here), and :func:`retrofit.mine.mine` searches an English row's negatives in the partition of its ``(lang,
source)``: without a pool, only the other sampled rows' positives. :func:`english_pool` adds up to ``per_source``
positives of each dataset's prepared corpus (``<prepared_dir>/english/<source>.jsonl``, :mod:`retrofit.data.english`),
so that an English query meets hundreds of competitors from its own task instead of a few dozen.

The sample is :func:`retrofit.data.sampling.nested_sample` by row id under the dedupe stage's seed, so it contains the
rows' own sample whenever ``per_source >= dedupe.english_per_source``, and a larger ``per_source`` only adds
passages. A negative is training text too, so the passages are decontaminated exactly as the dedupe stage
decontaminates rows: a passage goes when at least ``dedupe.decontam_threshold`` of its character
``dedupe.decontam_ngram``-grams occur in one held-out evaluation text (:mod:`retrofit.data.heldout`).

Pool entries (what :func:`retrofit.mine.mine` takes as ``pool``; one per distinct ``(lang, text)`` of a source)::

    {"lang": "en",                     # the passage's language (the English data is English): it joins that partition
     "source": "qed_nq",               # the English dataset: it joins the partition of that dataset's rows
     "source_id": "qed_nq:pool17",     # unique per passage; mined negatives record it (retrofit.train.trainer keeps
                                       # a batch free of repeats by it)
     "text": "...",
     "queries": ["...", ...]}          # the queries it is the positive of in the sample: it is no negative for
                                       # a row with one of them (NLI premises and FEVER claims repeat with other
                                       # positives, and dedupe keeps one row per query)

The counts (per source; the mine stage adds them to its report)::

    {"sampled": n,        # distinct (lang, positive) passages in the sample
     "contaminated": m,   # of them dropped by decontamination
     "kept": n - m}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrofit.config import DedupeParams
from retrofit.data.english import ENGLISH_ROW
from retrofit.data.heldout import HELDOUT_ROW, eval_texts
from retrofit.data.sampling import nested_sample
from retrofit.filter.decontaminate import ContaminationIndex
from retrofit.filter.text import normalize
from retrofit.io import read_jsonl

log = logging.getLogger(__name__)


def english_pool(
    sources: Sequence[str],
    per_source: int,
    dedupe: DedupeParams,
    *,
    seed: int,
    prepared_dir: str | Path = "data/prepared",
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Up to ``per_source`` decontaminated positives of each English dataset, as :func:`retrofit.mine.mine` pool.

    Args:
        sources: English dataset names (``data.english`` then ``data.hub_english``, as the dedupe stage reads them).
        per_source: Prepared rows sampled per dataset; 0 gives an empty pool.
        dedupe: The ``dedupe`` params: ``decontam_ngram`` and ``decontam_threshold`` decontaminate the passages.
        seed: ``base.seed``, the dedupe stage's sampling seed: the sample then contains the rows' own.
        prepared_dir: The prepare stage's output directory (``english/<source>.jsonl`` and ``heldout.jsonl``).

    Returns:
        ``(pool, counts)``: pool entries (schema in the module docstring), by source then sample order, and
        ``{source: {"sampled", "contaminated", "kept"}}``.

    Raises:
        InputError: A prepared file is missing or breaks its producer's schema (the message names file and line).
        ValueError: ``per_source`` is negative.
    """
    if per_source < 0:
        raise ValueError(f"per_source must be at least 0, got {per_source}")
    counts: dict[str, dict[str, int]] = {}
    pool: list[dict[str, Any]] = []
    if per_source == 0 or not sources:
        return pool, {s: {"sampled": 0, "contaminated": 0, "kept": 0} for s in sources}
    prepared = Path(prepared_dir)
    # the held-out texts exactly as the dedupe stage indexes them: every text of every evaluation task
    index = ContaminationIndex(eval_texts(read_jsonl(prepared / "heldout.jsonl", HELDOUT_ROW)), dedupe.decontam_ngram)
    threshold = dedupe.decontam_threshold
    for source in sources:
        rows = nested_sample(read_jsonl(prepared / "english" / f"{source}.jsonl", ENGLISH_ROW), per_source, seed,
                             key=lambda r: r["id"])
        queries: dict[tuple[str, str], dict[str, None]] = {}  # (lang, positive) -> its queries, in sample order
        for r in rows:
            queries.setdefault((r["lang"], r["positive"]), {}).setdefault(r["query"])
        passages = list(queries)
        flags = index.contamination([normalize(text) for _, text in passages], threshold)
        # the dedupe stage's rule: contaminated when the best-matching eval text reaches the threshold
        clean = [p for p, c in zip(passages, flags, strict=True) if c.eval_index < 0 or c.containment < threshold]
        counts[source] = {"sampled": len(passages), "contaminated": len(passages) - len(clean), "kept": len(clean)}
        pool += [{"lang": lang, "source": source, "source_id": f"{source}:pool{i}", "text": text,
                  "queries": list(queries[(lang, text)])}
                 for i, (lang, text) in enumerate(clean)]
    log.info("English pool: %s", {s: f"{c['kept']} of {c['sampled']}" for s, c in counts.items()})
    return pool, counts
