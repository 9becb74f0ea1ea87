"""Tests for tools/results_diff.py: findings and scores side by side, and a verdict that changed is called out."""

from __future__ import annotations

import sys

from tests.paper import REPO

sys.path.insert(0, str(REPO / "tools"))
import results_diff  # noqa: E402  (tools/ is not a package)


def _side(delta: float, verdict: str, primary: float) -> dict:
    finding = {"delta": delta, "lo": delta - 0.001, "hi": delta + 0.001, "verdict": verdict}
    findings = {key: finding for key in results_diff.FINDINGS}
    findings["plateau"] = {"verdict": "not run"}
    return {"findings": {"findings": findings}, "models": {"base": {"primary": 0.9}, "scale_24": {"primary": primary}}}


def test_a_changed_verdict_is_called_out() -> None:
    old = _side(0.004, "reproduced", 0.912)
    new = _side(0.0005, "not resolved at this scale", 0.9105)
    text = results_diff.report(old, new, ("before", "after"))
    assert "| gain_from_synthetic | +0.40 [+0.30, +0.50] | +0.05 [-0.05, +0.15] | reproduced | " \
           "not resolved at this scale **(changed)** |" in text
    assert "**Verdicts that changed: gain_from_synthetic, plateau_last_step" in text
    assert "| scale_24 | primary | 91.20 | 91.05 | -0.15 |" in text and "| base | primary | 90.00 | 90.00 | +0.00 |" in text
    assert "No verdict changed." in results_diff.report(old, old, ("a", "b"))
