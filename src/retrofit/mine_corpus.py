"""Hard-negative mining's candidate corpus: the passages each row's query is searched against, in partitions.

:func:`_partitions` groups the rows by ``scope`` (``"language"``: one partition per ``(lang, source)``; ``"all"``:
one for every row) and gives each partition its distinct positives, dataset negatives and ``pool`` passages, in a
stable order. :func:`_norm_key` and :func:`_shared_groups` are the building blocks of the passage groups that the
identity filters exclude together. The rows and the pool are those of :func:`retrofit.mine.mine`, which documents
them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrofit.filter.text import normalize


@dataclass
class _Partition:
    """One candidate corpus: its passages and the rows whose queries search it."""

    key: tuple[str, str]  # (lang, source), or ("*", "*") for scope "all"
    rows: list[int]
    texts: list[str]
    pool_sources: list[tuple[str, str]]  # (source_id, text) of the pool passages in ``texts``
    pool_queries: list[tuple[str, str]]  # (query, text): a pool passage and each query it is the positive of


def _norm_key(text: str) -> bytes:
    """A 16-byte digest of :func:`retrofit.filter.text.normalize`: equal for duplicates, and far smaller than the text."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


def _shared_groups(pairs: Iterable[tuple[Any, int]]) -> dict[Any, list[int]]:
    """Group passage indices by key, keeping only keys with two or more distinct passages."""
    first: dict[Any, int] = {}
    groups: dict[Any, list[int]] = {}
    for key, c in pairs:
        f = first.setdefault(key, c)
        if f != c:
            group = groups.setdefault(key, [f])
            if c not in group:
                group.append(c)
    return groups


def _negative_text(row: Mapping[str, Any]) -> str | None:
    neg = row.get("negative")
    return neg if isinstance(neg, str) and neg.strip() else None


def _partitions(rows: Sequence[Mapping[str, Any]], scope: str, pool: Sequence[Mapping[str, Any]] = ()) -> list[_Partition]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[("*", "*") if scope == "all" else (row["lang"], row["source"])].append(i)
    extra: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    extra_queries: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for passage in pool:
        key = ("*", "*") if scope == "all" else (passage["lang"], passage["source"])
        extra[key].append((str(passage["source_id"]), passage["text"]))
        extra_queries[key] += [(query, passage["text"]) for query in passage.get("queries") or ()]
    parts = []
    for key in sorted(groups):
        texts: dict[str, None] = {}
        for i in groups[key]:
            texts.setdefault(rows[i]["positive"])
            neg = _negative_text(rows[i])
            if neg is not None:
                texts.setdefault(neg)
        for _, text in extra.get(key, ()):
            texts.setdefault(text)
        parts.append(_Partition(key, groups[key], list(texts), extra.get(key, []), extra_queries.get(key, [])))
    return parts

