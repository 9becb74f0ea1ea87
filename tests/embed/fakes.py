"""A fake encoder for tests of code that embeds: hand-built vectors, every call recorded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TableEncoder:
    """Deterministic fake teacher: embeddings come from hand-built tables; every ``encode`` call is recorded."""

    def __init__(self, queries: dict[str, np.ndarray], passages: dict[str, np.ndarray], fingerprint: str = "table-v1"):
        self.tables = {"query": queries, "passage": passages}
        self._fingerprint = fingerprint
        self.calls: list[tuple[str, list[str]]] = []

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], kind: str) -> np.ndarray:
        self.calls.append((kind, list(texts)))
        return np.stack([self.tables[kind][t] for t in texts]).astype(np.float32)

    def n_encoded(self, kind: str | None = None) -> int:
        return sum(len(t) for k, t in self.calls if kind in (None, k))
