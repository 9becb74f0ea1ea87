"""retrofit.eval.stats: mteb's bitext F1, the paired bootstrap and the verdict rule, on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from retrofit.eval.stats import (
    bitext_f1,
    paired_bootstrap,
    resolved,
    seed_sd,
    task_score,
    verdict,
)


@pytest.mark.parametrize("seed", range(5))
def test_bitext_f1_equals_sklearn_weighted_f1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    pred = np.where(rng.random(n) < 0.7, np.arange(n), rng.integers(0, n, n))  # 70% right, the rest anywhere
    assert bitext_f1(pred) == pytest.approx(f1_score(np.arange(n), pred, average="weighted", zero_division=0))


def test_bitext_f1_with_weights_equals_the_expanded_sample() -> None:
    rng = np.random.default_rng(0)
    n = 40
    pred = np.where(rng.random(n) < 0.6, np.arange(n), rng.integers(0, n, n))
    counts = rng.multinomial(n, np.full(n, 1 / n))  # a bootstrap resample as multiplicities
    idx = np.repeat(np.arange(n), counts)  # the same resample, written out
    expected = f1_score(idx, pred[idx], average="weighted", zero_division=0)
    assert bitext_f1(pred, counts) == pytest.approx(expected)


def test_paired_bootstrap_of_a_constant_shift_is_exact() -> None:
    a = {"x": {str(i): 0.5 + 0.01 * (i % 7) for i in range(100)}}
    b = {"x": {k: v - 0.03 for k, v in a["x"].items()}}  # every query exactly 0.03 lower
    r = paired_bootstrap(a, b, resamples=200, seed=1)
    assert r["delta"] == pytest.approx(0.03) and r["lo"] == pytest.approx(0.03) and r["hi"] == pytest.approx(0.03)
    assert r["queries"] == 100


def test_paired_bootstrap_covers_zero_for_noise_and_not_for_a_real_gap() -> None:
    rng = np.random.default_rng(2)
    ids = [str(i) for i in range(400)]
    base = rng.random(400)
    same = {"s": dict(zip(ids, base + rng.normal(0, 0.1, 400), strict=True))}
    ref = {"s": dict(zip(ids, base, strict=True))}
    noise = paired_bootstrap(same, ref, resamples=1000, seed=0)
    assert noise["lo"] < 0 < noise["hi"]
    better = {"s": {k: v + 0.05 for k, v in same["s"].items()}}
    gap = paired_bootstrap(better, ref, resamples=1000, seed=0)
    assert gap["lo"] > 0 and gap["delta"] == pytest.approx(noise["delta"] + 0.05)


def test_clustered_resampling_draws_one_set_of_ids_for_every_subset() -> None:
    # two parallel subsets whose differences cancel question by question: clustered resampling keeps them paired
    ids = [str(i) for i in range(50)]
    a = {"de": {i: float(int(i) % 2) for i in ids}, "en": {i: float(1 - int(i) % 2) for i in ids}}
    b = {"de": dict.fromkeys(ids, 0.5), "en": dict.fromkeys(ids, 0.5)}
    clustered = paired_bootstrap(a, b, cluster=True, resamples=300, seed=0)
    assert clustered["lo"] == pytest.approx(0) and clustered["hi"] == pytest.approx(0)
    stratified = paired_bootstrap(a, b, cluster=False, resamples=300, seed=0)
    assert stratified["hi"] - stratified["lo"] > 0.05  # resampled apart, the subsets no longer cancel


def test_different_queries_are_refused() -> None:
    with pytest.raises(ValueError, match="different queries"):
        paired_bootstrap({"s": {"1": 1.0, "2": 0.0}}, {"s": {"1": 1.0, "3": 0.0}})
    with pytest.raises(ValueError, match="different subsets"):
        paired_bootstrap({"s": {"1": 1.0}}, {"t": {"1": 1.0}})


def test_task_score_is_the_mean_of_subset_scores() -> None:
    assert task_score({"a": {"1": 1.0, "2": 0.0}, "b": {"1": 1.0}}) == pytest.approx(0.75)
    assert task_score({"x": {"0": 0, "1": 0, "2": 2}}, "bitext_f1") == pytest.approx(bitext_f1(np.array([0, 0, 2])))


@pytest.mark.parametrize(
    ("interval", "sd", "sign", "want"),
    [
        ({"delta": 0.05, "lo": 0.02, "hi": 0.08}, 0.01, 1, "reproduced"),
        ({"delta": -0.05, "lo": -0.08, "hi": -0.02}, 0.01, 1, "opposite to the paper"),
        ({"delta": 0.05, "lo": -0.01, "hi": 0.1}, 0.01, 1, "not resolved at this scale"),  # interval covers 0
        ({"delta": 0.015, "lo": 0.01, "hi": 0.02}, 0.01, 1, "not resolved at this scale"),  # within 2 seed sd
        ({"delta": -0.05, "lo": -0.08, "hi": -0.02}, 0.01, -1, "reproduced"),
        ({"delta": 0.05, "lo": 0.02, "hi": 0.08}, None, 1, "no seed spread (need 2 or more seeds)"),
        (None, 0.01, 1, "not run"),
    ],
)
def test_verdict_rule(interval, sd, sign, want) -> None:
    assert verdict(interval, sd, sign) == want


def test_resolved_and_seed_sd() -> None:
    assert seed_sd([0.5]) is None
    assert seed_sd([0.5, 0.7]) == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert not resolved({"delta": 0.05, "lo": 0.02, "hi": 0.08}, None)
