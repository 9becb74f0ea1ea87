"""Tests for retrofit.mine_search: the vectorised filters on a hand-built batch of search results. Search through a
whole mining run (batches, approximate indexes, the exact fallback): ``tests/test_mine.py``."""

from __future__ import annotations

import numpy as np

from retrofit.mine_search import DROP_REASONS, select_candidates


def test_margin_is_sign_safe_for_negative_positive_scores() -> None:
    # positive score -0.5, margin 0.1: threshold -0.55 (stricter), not (1 - 0.1) * -0.5 = -0.45 (looser)
    idx = np.array([[0, 1, 2]])
    scores = np.array([[-0.46, -0.52, -0.56]], dtype=np.float32)
    ps = np.float32(-0.5)
    threshold = np.array([ps - abs(ps) * np.float32(0.1)], dtype=np.float32)
    chosen, dropped, _ = select_candidates(
        idx, scores, np.full((1, 1), -2), np.zeros((1, 1), np.int8), np.zeros(1, np.int64), threshold,
        np.array([3]), range_min=0, range_max=3,
    )
    assert chosen.tolist() == [[False, False, True]]
    assert dropped[0, DROP_REASONS.index("margin")] == 2
