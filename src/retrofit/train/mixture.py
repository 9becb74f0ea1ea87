"""The training mixture: which mined rows a run trains on.

:func:`select_mixture` takes, from the mine stage's rows, the English task rows of ``mix.english`` (at most
``mix.english_per_source`` each) plus ``mix.per_language`` synthetic rows per language of ``mix.languages``
restricted to ``mix.task_types``. Every cut is a nested, seeded sample (:mod:`retrofit.data.sampling`), so a
smaller data-scale point is a subset of a larger one. With ``mix.synthetic_source: oracle`` the synthetic slots take
the oracle twins (:mod:`retrofit.data.oracle`) of exactly the synthetic rows the run would otherwise take; with
``human`` a nested sample of every training-pool XQuAD question of the language (the scale study).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from retrofit.config import ParamsError, TrainParams
from retrofit.data.sampling import nested_sample
from retrofit.schema import CROSS, HUMAN, SYNTHETIC

log = logging.getLogger(__name__)


def twin_field(row: dict[str, Any], provenance_key: str, own_key: str) -> Any:
    """An oracle row's twin's field (recorded in its provenance), or the row's own field."""
    return (row.get("provenance") or {}).get(provenance_key, row[own_key])


def select_mixture(rows: Sequence[dict[str, Any]], params: TrainParams, seed: int) -> list[dict[str, Any]]:
    """The training rows of this run, in a stable order.

    Args:
        rows: The mine stage's rows (``data/mined/train.jsonl``).
        params: The train params (``mix`` decides the mixture).
        seed: Subsampling seed (``base.seed``, not ``train.seed``, so every run draws the same nested data).

    Returns:
        English rows first (by source), then synthetic rows (by language), each group in its sample order.

    Raises:
        ParamsError: A group has fewer rows than ``mix`` asks for (a sweep point would train on less than its name
            says) and ``mix.allow_shortfall`` is false; the message names both numbers.
    """
    mix = params.mix

    def take(group: list[dict[str, Any]], n: int | None, what: str, key: Any) -> list[dict[str, Any]]:
        if n is not None and len(group) < n:
            if not mix.allow_shortfall:
                raise ParamsError(
                    f"train.mix: {what} asks for {n} rows, but data/mined/train.jsonl has only {len(group)}; lower "
                    "it, generate more, or set train.mix.allow_shortfall: true to train on what there is"
                )
            log.warning("train.mix: %s: %d of the %d rows asked for (allow_shortfall)", what, len(group), n)
        return nested_sample(group, n, seed, key=key)

    out: list[dict[str, Any]] = []
    for source in mix.english:
        group = [r for r in rows if r["source"] == source]
        out += take(group, mix.english_per_source, f"english_per_source for {source!r}", lambda r: r["id"])
    tasks = set(mix.task_types)
    if mix.synthetic_source == HUMAN and mix.per_language and not any(r["source"] == HUMAN for r in rows):
        raise ParamsError("train.mix.synthetic_source: human needs the human rows: set dedupe.human: true "
                          "(profiles/cpu-scale.yaml does)")
    for lang in mix.languages:
        group = [r for r in rows if r["source"] == mix.synthetic_source and r["lang"] == lang
                 and twin_field(r, "twin_task_type", "task_type") in tasks]
        out += take(group, mix.per_language, f"per_language for {mix.synthetic_source} {lang!r} ({', '.join(sorted(tasks))})",
                    lambda r: twin_field(r, "oracle_of", "id"))
    return _cross_lingual(out, rows, mix.cross_lingual, seed) if mix.cross_lingual else out


def _cross_lingual(chosen: list[dict[str, Any]], rows: Sequence[dict[str, Any]], share: float,
                   seed: int) -> list[dict[str, Any]]:
    """``chosen`` with a nested, seeded ``share`` of its non-English synthetic rows replaced by their cross-lingual
    twins (rows without a twin stay), in place, so the counts are unchanged."""
    twins = {r["provenance"]["cross_of"]: r for r in rows if r["source"] == CROSS}
    candidates = [r for r in chosen if r["source"] == SYNTHETIC and r["lang"] != "en" and r["id"] in twins]
    swap = {r["id"] for r in nested_sample(candidates, round(share * len(candidates)), seed, key=lambda r: r["id"])}
    log.info("train.mix.cross_lingual: %d of %d non-English synthetic rows with their English passage", len(swap),
             len(candidates))
    return [twins[r["id"]] if r["id"] in swap else r for r in chosen]


