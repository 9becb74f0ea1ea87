"""Tests for retrofit.report.build: every output written, families and the primary metric kept apart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from retrofit.report.build import build_report
from retrofit.report.evaluations import Evaluation


def test_families_and_primary_are_not_mixed_up(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    models = json.loads((tmp_path / "r/models.json").read_text())
    base = evals["base"]
    assert models["base"]["mono"] == pytest.approx(base.metrics["families"]["mono"]["ndcg_at_10"])
    assert models["base"]["mono"] - models["base"]["cross"] == pytest.approx(0.10, abs=0.01)
    assert models["base"]["cross"] - models["base"]["pooled"] == pytest.approx(0.40, abs=0.02)
    # the primary metric (the evaluate stage's per-question reduction, averaged) is the mean of the mono and cross
    # family means only: pooled (0.40 lower) must not pull it down
    assert models["base"]["primary"] == pytest.approx((models["base"]["mono"] + models["base"]["cross"]) / 2, abs=1e-9)
    rows = list(csv.DictReader((tmp_path / "r/scores.csv").open()))
    mono_de = [r for r in rows if r["model"] == "base" and r["family"] == "mono" and r["subset"] == "de"]
    assert float(mono_de[0]["score"]) == pytest.approx(base.metrics["subsets"]["mono"]["de"]["ndcg_at_10"], abs=1e-5)
