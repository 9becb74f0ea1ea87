"""Tests for retrofit.generate.roundtrip: the round-trip filter's ranks, by hand."""

from __future__ import annotations

import numpy as np

from retrofit.generate.roundtrip import RoundTrip


def test_roundtrip_ranks_by_hand():
    vecs = {"p0": [1, 0, 0], "p1": [0, 1, 0], "p2": [0, 0, 1], "q0": [0.9, 0.1, 0], "q1": [0.8, 0.6, 0]}

    def encode(texts: list[str], kind: str) -> np.ndarray:
        return np.array([vecs[t] for t in texts], dtype=np.float32)

    rt = RoundTrip(encode, k=1)
    # q0 ranks p0 first (rank 0); q1 is closer to p0 than to its positive p1 (rank 1).
    assert rt.ranks(["q0", "q1"], ["p0", "p1"], ["p0", "p1", "p2"]) == [0, 1]
