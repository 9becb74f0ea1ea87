"""Tests for retrofit.mine_report: score distributions with known answers. The report of a whole mining run:
``tests/test_mine.py``."""

from __future__ import annotations

from retrofit.mine_report import score_summary


def test_score_summary_known_values() -> None:
    s = score_summary([0.0, 0.5, 1.0])
    assert (s["count"], s["mean"], s["min"], s["q50"], s["max"]) == (3, 0.5, 0.0, 0.5, 1.0)
    assert sum(s["histogram"]["counts"]) == 3 and s["histogram"]["counts"][-1] == 1
    assert score_summary([])["mean"] is None
