"""Deterministic, nested subsampling.

Every subsample in the project ranks rows by ``sha256(f"{seed}:{row_id}")`` and takes a prefix of that order.
The order depends only on the seed and the ids, not on input order, file layout or the sample size, so a smaller
sample is always a subset of a larger one: a data-scale point of 8 examples per language is contained in the
point of 16, and changing one scale point never reshuffles another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def rank_key(seed: int, item_id: str) -> str:
    """The sort key of ``item_id`` under ``seed``."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def nested_sample(items: Iterable[T], n: int | None, seed: int, key: Callable[[T], str]) -> list[T]:
    """The first ``n`` items in the seeded hash order (all of them, ordered, when ``n`` is ``None``).

    Args:
        items: Items with unique ids.
        n: Sample size; ``None`` or more than available keeps everything.
        seed: The ranking seed.
        key: Returns an item's unique id.

    Returns:
        The sample, in rank order.
    """
    ranked = sorted(items, key=lambda it: rank_key(seed, key(it)))
    return ranked if n is None else ranked[:n]


def nested_sample_by(
    rows: Sequence[dict[str, Any]], group: Callable[[dict[str, Any]], str], n: int | None, seed: int
) -> list[dict[str, Any]]:
    """:func:`nested_sample` of ``n`` rows within each group (e.g. per language or per source), by ``row["id"]``.

    Returns:
        The kept rows, in the input order (so output files stay diffable).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(group(r), []).append(r)
    keep = {id(r) for g in groups.values() for r in nested_sample(g, n, seed, key=lambda x: x["id"])}
    return [r for r in rows if id(r) in keep]
