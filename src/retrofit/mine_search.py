"""Hard-negative mining's search kernel: top-k inner-product search over one partition, and the vectorised filters.

:class:`_Searcher` runs FAISS over one candidate partition's embeddings (exact by default; IVF or HNSW for large
partitions, exact below :data:`APPROX_MIN_PASSAGES` passages); :func:`select_candidates` applies the identity
filters, the positive-aware margin and the rank window to one batch of search results at once. What the filters and
the rank windows mean, and how a mining run uses them: :mod:`retrofit.mine`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

RankWindow = Literal["search", "filtered"]

#: Why a candidate was dropped, in the order the filters apply; a candidate is counted under the first that fits.
DROP_REASONS = ("self_or_duplicate", "same_query_positive", "same_source_id", "dataset_negative", "margin")
_N_IDENTITY = 4  # the first four reasons are identity filters; codes 1..4 in the per-batch reason matrices
_MARGIN = 4  # column of "margin" in the per-row drop-count matrix

#: Approximate indexes need enough points to train and to pay off; smaller partitions are searched exactly.
APPROX_MIN_PASSAGES = 10_000
IVF_MAX_NPROBE = 32
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_MIN_EF_SEARCH = 64


class _Searcher:
    """Top-k inner-product search over one partition's passages."""

    def __init__(self, emb: npt.NDArray[np.float32], kind: str) -> None:
        import faiss

        self._faiss = faiss
        self.emb = np.ascontiguousarray(emb, dtype=np.float32)  # (n, dim)
        n, dim = self.emb.shape
        self.kind = kind if n >= APPROX_MIN_PASSAGES else "flat"
        if kind != self.kind:
            log.info("partition of %d passages is below %d: exact search, not %s", n, APPROX_MIN_PASSAGES, kind)
        self.index: Any = None
        if self.kind == "ivf":
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per list
            self._quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(self.emb)
            self.index.add(self.emb)
            self.index.nprobe = min(nlist, IVF_MAX_NPROBE)
        elif self.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            self.index.add(self.emb)

    def search(self, q: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(b, k)`` float32 and passage indices ``(b, k)`` int64 (-1 where fewer than ``k`` were found)."""
        n = self.emb.shape[0]
        kk = min(k, n)
        q = np.ascontiguousarray(q, dtype=np.float32)
        if self.kind == "flat":
            scores, idx = self._faiss.knn(q, self.emb, kk, metric=self._faiss.METRIC_INNER_PRODUCT)  # (b, kk)
        else:
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = max(HNSW_MIN_EF_SEARCH, 2 * kk)
            scores, idx = self.index.search(q, kk)  # (b, kk)
        if kk < k:
            pad = ((0, 0), (0, k - kk))
            scores = np.pad(scores, pad, constant_values=-np.inf)  # (b, k)
            idx = np.pad(idx, pad, constant_values=-1)  # (b, k)
        return scores, idx


def select_candidates(
    idx: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    excl_ids: npt.NDArray[np.int64],
    excl_reason: npt.NDArray[np.int8],
    n_excluded: npt.NDArray[np.int64],
    threshold: npt.NDArray[np.float32],
    n_want: npt.NDArray[np.int64],
    *,
    range_min: int,
    range_max: int,
    rank_window: RankWindow = "search",
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Apply the filters and the rank window to one batch of search results, vectorised.

    Args:
        idx: Passage indices ``(b, k)`` by descending score, -1 for none.
        scores: Their scores ``(b, k)``.
        excl_ids: Identity-excluded passage indices per row ``(b, m)``, padded with -2.
        excl_reason: Reason code per excluded passage ``(b, m)``: 1 + its position in :data:`DROP_REASONS`.
        n_excluded: Distinct excluded passages per row ``(b,)``.
        threshold: Margin threshold per row ``(b,)``: candidates scoring above it are dropped.
        n_want: Negatives to mine per row ``(b,)``.
        range_min: First rank of the window (inclusive).
        range_max: End of the window (exclusive).
        rank_window: ``"search"``: ranks of the raw result; ``"filtered"``: ranks among the survivors of the
            first ``range_max + n_excluded`` results (see the module docstring).

    Returns:
        ``chosen`` ``(b, k)`` bool mask of the kept candidates (at most ``n_want`` per row, the first ones by
        rank); ``dropped`` ``(b, len(DROP_REASONS))`` counts per reason; ``below_range_min`` ``(b,)`` survivors
        skipped by ``range_min`` (only for ``"filtered"``; zeros otherwise).
    """
    b, k = idx.shape
    cols = np.arange(k)[None, :]  # (1, k)
    valid = idx >= 0  # (b, k)
    eq = idx[:, :, None] == excl_ids[:, None, :]  # (b, k, m)
    hit = eq.any(axis=2)  # (b, k)
    first = eq.argmax(axis=2)  # (b, k)
    reason = np.where(hit, np.take_along_axis(excl_reason, first, axis=1), 0)  # (b, k)
    over = scores > threshold[:, None]  # (b, k)
    if rank_window == "search":
        pool = valid & (cols >= range_min) & (cols < range_max)  # (b, k)
    elif rank_window == "filtered":
        pool = valid & (cols < range_max + n_excluded[:, None])  # (b, k)
    else:
        raise ValueError(f"rank_window must be 'search' or 'filtered', got {rank_window!r}")
    dropped = np.zeros((b, len(DROP_REASONS)), dtype=np.int64)  # (b, reasons)
    for code in range(1, _N_IDENTITY + 1):
        dropped[:, code - 1] = (pool & (reason == code)).sum(axis=1)
    passes_identity = pool & (reason == 0)  # (b, k)
    dropped[:, _MARGIN] = (passes_identity & over).sum(axis=1)
    survive = passes_identity & ~over  # (b, k)
    rank = np.cumsum(survive, axis=1) - 1  # (b, k) 0-based rank among survivors
    if rank_window == "search":
        chosen = survive & (rank < n_want[:, None])
        below = np.zeros(b, dtype=np.int64)
    else:
        in_window = (rank >= range_min) & (rank < range_max)
        chosen = survive & in_window & (rank - range_min < n_want[:, None])
        below = (survive & (rank < range_min)).sum(axis=1)
    return chosen, dropped, below
