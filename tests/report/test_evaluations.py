"""Tests for retrofit.report.evaluations: reading reports/eval/<model>/ back, and a clear error when missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrofit.errors import InputError
from retrofit.report.evaluations import Evaluation, load_evaluations


def test_load_evaluations_round_trip_and_missing(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    ev = evals["base"]
    d = tmp_path / "eval" / "base"
    (d / "official" / "per_query").mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(ev.metrics))
    (d / "per_query.json").write_text(json.dumps(ev.per_query))
    (d / "official" / "metrics.json").write_text(json.dumps(ev.official))
    for task, values in ev.official_per_query.items():
        (d / "official" / "per_query" / f"{task}.json").write_text(json.dumps(values))
    loaded = load_evaluations(tmp_path / "eval", ["base"])["base"]
    assert loaded.score("primary") == ev.score("primary") and loaded.score("Tatoeba") == ev.score("Tatoeba")
    with pytest.raises(InputError, match="scale_0: no evaluation"):
        load_evaluations(tmp_path / "eval", ["base", "scale_0"])
