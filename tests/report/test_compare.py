"""Tests for retrofit.report.compare: seed-and-question intervals, verdicts and the plateau by TOST."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np
import pytest

from retrofit.eval.stats import QUERY_ONLY, SEEDS_AND_QUERIES
from retrofit.report.build import build_report
from retrofit.report.compare import Comparer
from retrofit.report.evaluations import Evaluation


def test_verdicts_follow_the_interval_rule_and_say_what_noise_they_carry(evals: dict[str, Evaluation],
                                                                          tmp_path: Path) -> None:
    summary = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md",
                           resamples=300, arm_seeds={"nohard": ["nohard_s2", "nohard_s3"]})
    f = summary["findings"]
    top = ("scale_12", "seed2", "seed3")
    sd = summary["seed_sd"]["primary"]
    assert sd == pytest.approx(statistics.stdev([evals[m].score("primary") for m in top]))  # an independent stdev
    assert f["gain_from_synthetic"]["verdict"] == "reproduced"  # +0.08, far beyond noise
    assert f["gain_from_synthetic"]["lo"] > 0
    assert f["gain_from_synthetic"]["noise"] == QUERY_ONLY  # scale_0 was trained once
    # the top arm's score is the mean over its 3 seeds
    assert f["gain_from_synthetic"]["score_a"] == pytest.approx(np.mean([evals[m].score("primary") for m in top]))
    assert f["plateau_last_step"]["verdict"] == "not resolved at this scale"  # +0.001
    # not resolved is not a plateau: the 90% interval (about +-0.015 here) is wider than the 0.5-point margin
    assert f["plateau"]["verdict"].startswith("gain reproduced; plateau not resolved at this scale")
    assert f["hard_negatives"]["verdict"] == "not resolved at this scale"  # -0.001: never "reversed"
    hard = f["hard_negatives"]
    assert hard["noise"] == SEEDS_AND_QUERIES and (hard["seeds_a"], hard["seeds_b"]) == (3, 3)
    assert hard["hi"] - hard["lo"] > 2 * 1.96 * hard["se_questions"]  # seeds widen the question interval
    assert f["task_over_language_diversity"]["verdict"] == "opposite to the paper"  # -0.15, resolved
    assert f["task_over_language_diversity"]["hi"] < 0
    vs = summary["versus_base"]["scale_12"]
    assert vs["primary"]["delta"] == pytest.approx(evals["scale_12"].score("primary") - evals["base"].score("primary"))
    assert vs["Tatoeba"]["delta"] == pytest.approx(evals["scale_12"].score("Tatoeba") - evals["base"].score("Tatoeba"))
    assert (vs["primary"]["a"], vs["primary"]["b"]) == ("scale_12", "base")  # names, not scores
    assert vs["primary"]["score_a"] == pytest.approx(evals["scale_12"].score("primary"))
    rows = list(csv.DictReader((tmp_path / "r/comparisons.csv").open()))
    gain = next(r for r in rows if (r["a"], r["b"], r["metric"]) == ("scale_12", "scale_0", "primary"))
    assert float(gain["delta"]) == pytest.approx(f["gain_from_synthetic"]["delta"], abs=1e-4)  # rounded in the CSV
    assert gain["noise"] == QUERY_ONLY


def test_plateau_is_reproduced_only_by_equivalence(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    # a margin wider than the last step's 90% interval: TOST passes; the default 0.5 points: it does not
    wide = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "w", tmp_path / "W.md", resamples=300,
                        margin=5.0)["findings"]
    assert wide["plateau_last_step"]["equivalent"] and wide["plateau"]["verdict"].startswith("reproduced: ")
    narrow = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "n", tmp_path / "N.md", resamples=300,
                          margin=0.5)["findings"]
    assert not narrow["plateau_last_step"]["equivalent"]
    assert "plateau not resolved at this scale" in (tmp_path / "N.md").read_text()


def test_family_intervals_resample_questions_across_languages(evals: dict[str, Evaluation]) -> None:
    # the fixture's noise is per question, shared by its languages: drawn as rows, the family intervals come out
    # narrower than the primary's, which averages the same questions
    cmp = Comparer(evals, {}, "scale_12", resamples=400, seed=0)
    for name in ("base", "scale_12"):
        width = {m: (lambda iv: iv[1] - iv[0])(cmp.own_interval(name, m)) for m in ("primary", "mono", "cross")}
        assert width["primary"] <= max(width["mono"], width["cross"]) + 0.002, (name, width)
