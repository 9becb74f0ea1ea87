"""retrofit.eval.stats: mteb's bitext F1, the bootstrap over questions, seeds in the interval, equivalence and the
verdict rule, on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from retrofit.eval.stats import (
    QUERY_ONLY,
    SEEDS_AND_QUERIES,
    bitext_f1,
    equivalent,
    paired_bootstrap,
    resolved,
    seed_sd,
    seeded_difference,
    task_score,
    verdict,
    weighted_spearman,
)
from retrofit.eval.xquad import question_of


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


def test_one_unit_draw_applies_to_every_subset() -> None:
    # two parallel subsets whose differences cancel question by question: resampled by question they stay paired
    ids = [str(i) for i in range(50)]
    a = {"de": {i: float(int(i) % 2) for i in ids}, "en": {i: float(1 - int(i) % 2) for i in ids}}
    b = {"de": dict.fromkeys(ids, 0.5), "en": dict.fromkeys(ids, 0.5)}
    clustered = paired_bootstrap(a, b, unit=lambda q: q, resamples=300, seed=0)
    assert clustered["lo"] == pytest.approx(0) and clustered["hi"] == pytest.approx(0)
    stratified = paired_bootstrap(a, b, unit=None, resamples=300, seed=0)
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
    ("interval", "sign", "want"),
    [
        ({"delta": 0.05, "lo": 0.02, "hi": 0.08}, 1, "reproduced"),
        ({"delta": -0.05, "lo": -0.08, "hi": -0.02}, 1, "opposite to the paper"),
        ({"delta": 0.05, "lo": -0.01, "hi": 0.1}, 1, "not resolved at this scale"),  # interval covers 0
        ({"delta": -0.05, "lo": -0.08, "hi": -0.02}, -1, "reproduced"),
        (None, 1, "not run"),
    ],
)
def test_verdict_rule(interval, sign, want) -> None:
    assert verdict(interval, sign) == want


def test_resolved_and_seed_sd() -> None:
    assert seed_sd([0.5]) is None
    assert seed_sd([0.5, 0.7]) == pytest.approx(0.1414213562)
    assert resolved({"delta": 0.05, "lo": 0.02, "hi": 0.08})
    assert not resolved({"delta": 0.05, "lo": -0.02, "hi": 0.08})


def test_question_unit_draws_a_question_in_every_language_production_ids() -> None:
    # production ids carry the language: "de:q:<qid>" (retrofit.eval.xquad). Two languages whose differences cancel
    # question by question: resampled by question they stay paired; by row they do not.
    qids = [f"57{i:04d}" for i in range(60)]
    a = {"de": {f"de:q:{q}": float(i % 2) for i, q in enumerate(qids)},
         "en": {f"en:q:{q}": float(1 - i % 2) for i, q in enumerate(qids)}}
    b = {"de": {f"de:q:{q}": 0.5 for q in qids}, "en": {f"en:q:{q}": 0.5 for q in qids}}
    by_question = paired_bootstrap(a, b, unit=question_of, resamples=300, seed=0)
    assert by_question["units"] == 60
    assert by_question["lo"] == pytest.approx(0) and by_question["hi"] == pytest.approx(0)
    by_row = paired_bootstrap(a, b, unit=lambda q: q, resamples=300, seed=0)  # the old scheme: ids never shared
    assert by_row["units"] == 120 and by_row["hi"] - by_row["lo"] > 0.05


def test_primary_and_families_share_draws() -> None:
    rng = np.random.default_rng(3)
    qids = [f"q{i}" for i in range(80)]
    fam = {lang: {f"{lang}:q:{q}": float(rng.random()) for q in qids} for lang in ("de", "ru")}
    zero = {s: dict.fromkeys(v, 0.0) for s, v in fam.items()}
    primary = {"all": {q: (fam["de"][f"de:q:{q}"] + fam["ru"][f"ru:q:{q}"]) / 2 for q in qids}}
    p_zero = {"all": dict.fromkeys(qids, 0.0)}
    r_fam = paired_bootstrap(fam, zero, unit=question_of, resamples=500, seed=4)
    r_pri = paired_bootstrap(primary, p_zero, unit=question_of, resamples=500, seed=4)
    # the same questions drawn: the mean of two subsets' means is the primary on every resample
    assert r_pri["lo"] == pytest.approx(r_fam["lo"]) and r_pri["hi"] == pytest.approx(r_fam["hi"])


def _simulated_arm(rng, n_seeds, questions, mean, query_sd, seed_sd):
    """Per-query values of one arm under n_seeds seeds: arm x question effects plus a seed effect per run."""
    effect = rng.normal(0, query_sd, questions)  # this arm's own response to each question
    runs = []
    for _ in range(n_seeds):
        shift = rng.normal(0, seed_sd)
        noise = rng.normal(0, query_sd / 4, questions)  # seed x question interaction
        runs.append({"s": {str(i): float(mean + effect[i] + shift + noise[i]) for i in range(questions)}})
    return runs


@pytest.mark.parametrize(("query_sd", "seed_sd"), [(0.2, 0.01), (0.1, 0.03)])
def test_seeded_interval_covers_the_true_difference(query_sd, seed_sd) -> None:
    # 200 simulated experiments with a known difference of 0.02, 3 seeds per arm, a fresh question set each:
    # the 95% interval must cover the truth in 90-98% of them (the criterion)
    rng = np.random.default_rng(11)
    covered = 0
    for k in range(200):
        a = _simulated_arm(rng, 3, 150, 0.52, query_sd, seed_sd)
        b = _simulated_arm(rng, 3, 150, 0.50, query_sd, seed_sd)
        c = seeded_difference(a, b, resamples=300, seed=k)
        assert c["noise"] == SEEDS_AND_QUERIES
        covered += c["lo"] <= 0.02 <= c["hi"]
    assert 0.90 <= covered / 200 <= 0.98


def test_seeded_interval_is_wider_than_questions_alone_and_one_seed_says_so() -> None:
    rng = np.random.default_rng(5)
    a = _simulated_arm(rng, 3, 200, 0.55, 0.1, 0.05)
    b = _simulated_arm(rng, 3, 200, 0.50, 0.1, 0.05)
    both = seeded_difference(a, b, resamples=500, seed=0)
    assert both["hi"] - both["lo"] > 2 * 1.9 * both["se_questions"]
    assert both["seed_sd_a"] == pytest.approx(np.std([task_score(r) for r in a], ddof=1))
    one = seeded_difference(a, b[:1], resamples=500, seed=0)
    assert one["noise"] == QUERY_ONLY and one["seeds_b"] == 1
    assert one["delta"] == pytest.approx(np.mean([task_score(r) for r in a]) - task_score(b[0]))


@pytest.mark.parametrize(("lo90", "hi90", "want"), [(-0.004, 0.003, True), (-0.004, 0.006, False), (-0.006, 0.0, False)])
def test_equivalence_is_the_90_interval_inside_the_margin(lo90, hi90, want) -> None:
    assert equivalent({"lo90": lo90, "hi90": hi90}, 0.005) is want


@pytest.mark.parametrize("seed", range(4))
def test_weighted_spearman_equals_scipy_on_the_expanded_sample(seed: int) -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    n = 40
    gold = rng.integers(0, 6, n) / 5  # STS gold scores in steps: many ties
    sim = gold + rng.normal(0, 0.3, n)
    sim[:5] = sim[5]  # ties in the similarities too
    pairs = np.stack([sim, gold], axis=1)
    w = rng.multinomial(n, np.full(n, 1 / n), size=6).astype(float)  # (6, n)
    got = weighted_spearman(pairs, w)
    want = [spearmanr(np.repeat(sim, row.astype(int)), np.repeat(gold, row.astype(int)))[0] for row in w]
    assert got == pytest.approx(want, abs=1e-12)
    assert weighted_spearman(pairs) == pytest.approx(spearmanr(sim, gold)[0], abs=1e-12)


def test_spearman_bootstrap_resolves_a_better_model_on_sts_pairs() -> None:
    rng = np.random.default_rng(0)
    gold = rng.random(300)
    good = {"s": {f"p{i}": [g + rng.normal(0, 0.1), g] for i, g in enumerate(gold)}}
    bad = {"s": {f"p{i}": [g + rng.normal(0, 0.6), g] for i, g in enumerate(gold)}}
    r = paired_bootstrap(good, bad, statistic="spearman", resamples=300, seed=1)
    assert r["delta"] == pytest.approx(task_score(good, "spearman") - task_score(bad, "spearman"))
    assert r["lo"] > 0 and resolved(r)
    same = paired_bootstrap(good, good, statistic="spearman", resamples=50)
    assert same["delta"] == 0 and same["lo"] == 0 and same["hi"] == 0


def test_non_mean_statistics_average_every_seed_inside_each_resample() -> None:
    n = 50
    right = {"s": {str(i): i for i in range(n)}}
    half = {"s": {str(i): (i if i % 2 else (i + 1) % n) for i in range(n)}}
    r = seeded_difference([right, half], [half], statistic="bitext_f1", resamples=100)
    # the arm's score is the mean of its two seeds' F1, not its first seed's
    assert r["a"] == pytest.approx((bitext_f1(np.arange(n)) + task_score(half, "bitext_f1")) / 2)
    assert r["noise"] == QUERY_ONLY  # B has one run and is not declared fixed


def test_a_seeded_arm_against_the_fixed_base_carries_its_seed_noise() -> None:
    rng = np.random.default_rng(3)
    base = {"s": {f"q{i}": float(v) for i, v in enumerate(rng.random(200))}}
    runs = [{"s": {q: v + 0.05 + shift for q, v in base["s"].items()}} for shift in (-0.01, 0.0, 0.02)]
    r = seeded_difference(runs, [base], resamples=200, fixed_b=True)
    assert r["noise"] == SEEDS_AND_QUERIES and r["seed_sd_b"] is None
    assert r["seed_sd_a"] == pytest.approx(np.std([-0.01, 0.0, 0.02], ddof=1))
    assert r["hi"] - r["lo"] > 0.02  # wider than the questions' part alone, which is exactly zero here
    assert seeded_difference(runs, [base], resamples=200)["noise"] == QUERY_ONLY
