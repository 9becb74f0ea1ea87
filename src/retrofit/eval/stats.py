"""Statistics that claim no more than the data shows: intervals over questions and seeds, equivalence, verdicts.

Two sources of noise stand between a difference of scores and a finding:

- *which questions were asked*: a paired bootstrap (Efron and Tibshirani; Sakai's paired bootstrap test for IR)
  resamples the evaluation's questions with replacement, recomputes both models' scores on the same resample and
  takes percentiles of the difference (:func:`paired_bootstrap`);
- *which training run it was*: an arm trained under several seeds has a seed variance of its score.

:func:`seeded_difference` gives one interval that carries both: the question variance of the seed-averaged
difference (from the bootstrap) plus each arm's seed variance of its mean (``s^2 / n``), with a Student t quantile
at the Welch-Satterthwaite degrees of freedom (3 seeds give too few distinct resamples for a bootstrap over seeds:
the variance-decomposition route of Bouthillier et al., "Accounting for variance in machine learning benchmarks",
MLSys 2021; rliable's stratified bootstrap, Agarwal et al. 2021, resamples runs where there are many). Its coverage
is checked by simulation in ``tests/eval/test_stats.py``. A comparison where an arm has one seed carries question
noise only, and says so (:data:`QUERY_ONLY`).

:func:`verdict`: a difference is resolved when its 95% interval excludes zero ("reproduced" or "opposite to the
paper"), and otherwise "not resolved at this scale", never "reversed" and never "no effect". A claim of *no* effect
(the plateau) needs an equivalence test: :func:`equivalent`, two one-sided tests at 5% each (TOST, Schuirmann 1987),
i.e. the 90% interval inside a declared margin.

**The resampling unit** is the item that carries the dependence. Per-query data comes from ``per_query.json`` files
written by :mod:`retrofit.eval.xquad`, the official tasks and the beyond family (schemas there): ``{subset: {query
id: value}}``, the value being the query's nDCG@10 or a classification example's correctness (averaged), the index
of the nearest ``sentence2`` for bitext mining (mteb's F1 is not a mean over sentences; :func:`bitext_f1` recomputes
it), or an STS pair's ``[similarity, gold]`` (Spearman's correlation over the resampled pairs,
:func:`weighted_spearman`). A ``unit`` function maps a query id to its unit: one draw of units applies to every
subset, so a resampled XQuAD question brings its values in every language and direction
(:func:`retrofit.eval.xquad.question_of`), a Belebele question its values in every subset, and a SIB-200 example or
an STS-B pair its translations. Without a unit each subset is resampled on its own (Tatoeba's languages hold
different sentences). Draws depend only on the seed and the set of units, so the primary metric and its families,
sharing their questions, share their draws. A task's score is the mean of its subset scores; an arm's score is the
mean over its seeds, and each resample scores every seed on the same draw. ``scipy.stats.bootstrap`` resamples
independent observations of one sample; the clustered scheme, and statistics recomputed from nearest-neighbour
indices and ranks, are why the resampling here is our own.

References:
    Efron and Tibshirani, *An Introduction to the Bootstrap* (1993). Sakai, "Evaluating evaluation metrics based
    on the bootstrap" (SIGIR 2006). Koehn, "Statistical significance tests for machine translation evaluation"
    (EMNLP 2004). Schuirmann, "A comparison of the two one-sided tests procedure and the power approach for
    assessing the equivalence of average bioavailability" (1987).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

#: What a per-query value is: a query's nDCG@10 or an example's correctness (averaged), a bitext nearest-neighbour
#: index (F1), or an STS pair's ``[model similarity, gold score]`` (Spearman's rank correlation over the pairs).
Statistic = Literal["mean", "bitext_f1", "spearman"]

#: ``{subset: {query id: value}}``
PerQuery = Mapping[str, Mapping[str, Any]]

#: Maps a query id to its resampling unit (``None``: each subset resampled on its own).
Unit = Callable[[str], str]

#: The ``noise`` of a comparison whose arms were not both trained under 2 or more seeds.
QUERY_ONLY = "one seed: query noise only"
#: The ``noise`` of a comparison of two arms each trained under 2 or more seeds (or of a seeded arm against the
#: untrained base model, which has no seed variance).
SEEDS_AND_QUERIES = "seeds and questions"


def bitext_f1(pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """mteb's bitext-mining F1 from nearest-neighbour predictions, optionally with resampling weights.

    mteb scores bitext mining with scikit-learn's support-weighted F1, where sentence ``i``'s gold label is ``i``.
    With every label supported once, label ``j`` has recall ``[pred[j] == j]`` and precision
    ``[pred[j] == j] / #{i: pred[i] == j}``; a bootstrap resample gives sentence ``i`` weight = its multiplicity,
    which scales both its support and its predictions.

    Args:
        pred: ``pred[i]`` = index of the sentence2 nearest to sentence1 ``i``; shape ``(n,)``.
        weights: Multiplicity of each sentence (default: 1 each).

    Returns:
        The weighted F1 in [0, 1] (equal to ``sklearn.metrics.f1_score(range(n), pred, average="weighted")``
        without weights).
    """
    pred = np.asarray(pred, dtype=np.int64)
    n = len(pred)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    correct = (pred == np.arange(n)).astype(np.float64)  # (n,) label j's recall
    predicted = np.bincount(pred, weights=w, minlength=n)[:n]  # (n,) weighted count of predictions of label j
    precision = np.divide(w * correct, predicted, out=np.zeros(n), where=predicted > 0)
    denom = precision + correct
    f1 = np.divide(2 * precision * correct, denom, out=np.zeros(n), where=denom > 0)
    total = w.sum()
    return float((w * f1).sum() / total) if total > 0 else 0.0


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of ``x`` in the sample that repeats ``x[i]`` ``w[r, i]`` times.

    Args:
        x: Values, shape ``(n,)``.
        w: Multiplicities, one row per resample, shape ``(R, n)``.

    Returns:
        Shape ``(R, n)``: the rank each value has in each expanded sample.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # (groups,) first position of each tie group
    group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1  # (n,) tie group of each sorted position
    sums = np.add.reduceat(w[:, order], starts, axis=1)  # (R, groups) weight of each tie group
    before = np.cumsum(sums, axis=1) - sums  # (R, groups) weight strictly below each group
    ranks_sorted = (before + (sums + 1) / 2)[:, group]  # (R, n)
    out = np.empty_like(ranks_sorted)
    out[:, order] = ranks_sorted
    return out


def weighted_spearman(pairs: np.ndarray, w: np.ndarray | None = None) -> np.ndarray | float:
    """Spearman's rank correlation of ``pairs[:, 0]`` and ``pairs[:, 1]`` in each resample (mteb's STS score).

    A resample repeats pair ``i`` ``w[r, i]`` times; the correlation is the one of that expanded sample (ties
    averaged), as ``scipy.stats.spearmanr`` would compute it, for every row of ``w`` at once.

    Args:
        pairs: Shape ``(n, 2)``: each STS pair's model similarity and gold score.
        w: Multiplicities, shape ``(R, n)``; ``None``: the sample itself (returns a float).

    Returns:
        Shape ``(R,)``, or a float without ``w``.
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    single = w is None
    w = np.ones((1, len(pairs))) if single else np.asarray(w, dtype=np.float64)
    rx, ry = _weighted_ranks(pairs[:, 0], w), _weighted_ranks(pairs[:, 1], w)  # (R, n)
    total = np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    mx, my = (w * rx).sum(1, keepdims=True) / total, (w * ry).sum(1, keepdims=True) / total
    cov = (w * (rx - mx) * (ry - my)).sum(1)
    var = np.sqrt((w * (rx - mx) ** 2).sum(1) * (w * (ry - my) ** 2).sum(1))
    rho = np.divide(cov, var, out=np.zeros_like(cov), where=var > 0)  # (R,)
    return float(rho[0]) if single else rho


def _subset_score(arr: np.ndarray, statistic: Statistic, w: np.ndarray | None = None) -> np.ndarray | float:
    """One subset's score from its per-query values (in id order), for each resample row of ``w`` (or unweighted)."""
    if statistic == "spearman":
        return weighted_spearman(arr, w)
    if statistic == "bitext_f1":
        pred = arr.astype(np.int64)
        return bitext_f1(pred) if w is None else np.array([bitext_f1(pred, row) for row in w])
    if w is None:
        return float(arr.mean())
    return (w @ arr) / np.maximum(w.sum(axis=1), 1e-12)


def task_score(per_query: PerQuery, statistic: Statistic = "mean") -> float:
    """The task score from per-query values: the mean over subsets of each subset's score."""
    return float(np.mean([_subset_score(np.array([values[k] for k in sorted(values, key=_id_order)], dtype=np.float64),
                                        statistic) for values in per_query.values()]))


def _id_order(key: str) -> tuple[int, int | str]:
    """Bitext ids are sentence indices: order them numerically so position i holds sentence i."""
    return (0, int(key)) if key.isdigit() else (1, key)


def _aligned(runs: Sequence[PerQuery]) -> list[tuple[str, list[str], np.ndarray]]:
    """``[(subset, ids, values)]`` with ``values`` of shape ``(runs, n)`` (``(runs, n, 2)`` for STS pairs).

    Raises:
        ValueError: The runs differ in subsets or in query ids.
    """
    first = runs[0]
    for other in runs[1:]:
        if sorted(first) != sorted(other):
            raise ValueError(f"the two evaluations have different subsets: {sorted(first)} vs {sorted(other)}")
        for subset in first:
            if set(first[subset]) != set(other[subset]):
                raise ValueError(
                    f"subset {subset!r}: the two evaluations asked different queries ({len(first[subset])} vs "
                    f"{len(other[subset])}); compare models only under identical evaluation conditions"
                )
    out = []
    for subset in sorted(first):
        ids = sorted(first[subset], key=_id_order)
        out.append((subset, ids, np.array([[r[subset][i] for i in ids] for r in runs], dtype=np.float64)))
    return out


def _bootstrap(
    a_runs: Sequence[PerQuery], b_runs: Sequence[PerQuery], *, statistic: Statistic, unit: Unit | None,
    resamples: int, seed: int, confidence: float,
) -> dict[str, Any]:
    """The paired bootstrap of ``mean over A's runs of score - mean over B's runs of score``: each resample of the
    questions scores every run on the same draw, so the seed average is taken inside each resample."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    parts = _aligned([*a_runs, *b_runs])
    n_a = len(a_runs)
    rng = np.random.default_rng(seed)
    if unit is not None:
        universe = sorted({unit(i) for _, ids, _ in parts for i in ids}, key=_id_order)
        index = {k: j for j, k in enumerate(universe)}
        draws = rng.multinomial(len(universe), np.full(len(universe), 1 / len(universe)), size=resamples)
    subset_deltas, score_a, score_b = [], [], []
    for _, ids, values in parts:
        if unit is not None:
            w = draws[:, [index[unit(i)] for i in ids]].astype(np.float64)  # (resamples, len(ids))
        else:
            w = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=resamples).astype(np.float64)
        if statistic == "mean":  # linear: the seed average of the values scores the same as the average score
            va, vb = values[:n_a].mean(axis=0), values[n_a:].mean(axis=0)
            subset_deltas.append(_subset_score(va - vb, "mean", w))  # (resamples,)
        else:
            subset_deltas.append(np.mean([_subset_score(v, statistic, w) for v in values[:n_a]], axis=0)
                                 - np.mean([_subset_score(v, statistic, w) for v in values[n_a:]], axis=0))
        score_a.append(np.mean([_subset_score(v, statistic) for v in values[:n_a]]))
        score_b.append(np.mean([_subset_score(v, statistic) for v in values[n_a:]]))
    deltas = np.mean(subset_deltas, axis=0)  # (resamples,)
    tail = 100 * (1 - confidence) / 2
    a, b = float(np.mean(score_a)), float(np.mean(score_b))
    return {
        "delta": a - b,
        "lo": float(np.percentile(deltas, tail)),
        "hi": float(np.percentile(deltas, 100 - tail)),
        "lo90": float(np.percentile(deltas, 5)),
        "hi90": float(np.percentile(deltas, 95)),
        "se": float(np.std(deltas, ddof=1)) if resamples > 1 else 0.0,
        "a": a,
        "b": b,
        "resamples": resamples,
        "queries": sum(len(ids) for _, ids, _ in parts),
        "units": len(universe) if unit is not None else None,
    }


def paired_bootstrap(
    a: PerQuery,
    b: PerQuery,
    *,
    statistic: Statistic = "mean",
    unit: Unit | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap interval of ``score(a) - score(b)`` over questions.

    Args:
        a: Per-query values of model A (``{subset: {query id: value}}``).
        b: The same for model B, on exactly the same subsets and query ids.
        statistic: ``"mean"`` (nDCG@10 per query, correctness per example), ``"bitext_f1"`` (nearest-neighbour
            indices) or ``"spearman"`` (STS pairs' ``[similarity, gold]``).
        unit: Maps a query id to its resampling unit; one draw of units applies to every subset. ``None``: each
            subset is resampled on its own (stratified).
        resamples: Bootstrap resamples (1,000 or more for a 95% interval).
        seed: Resampling seed.
        confidence: Coverage of the percentile interval (``lo``, ``hi``); ``lo90``/``hi90`` are always the 90% one.

    Returns:
        ``{"delta": observed difference, "lo", "hi", "lo90", "hi90", "se": the bootstrap standard error,
        "a": score(a), "b": score(b), "resamples": n, "queries": total query count, "units": units drawn}``.

    Raises:
        ValueError: The evaluations differ in subsets or queries, or ``resamples < 1``.
    """
    return _bootstrap([a], [b], statistic=statistic, unit=unit, resamples=resamples, seed=seed,
                      confidence=confidence)


def seeded_difference(
    a_runs: Sequence[PerQuery],
    b_runs: Sequence[PerQuery],
    *,
    statistic: Statistic = "mean",
    unit: Unit | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    fixed_b: bool = False,
) -> dict[str, Any]:
    """``mean score(A) - mean score(B)`` over each arm's seed runs, with one interval for seeds and questions.

    The question part is the paired bootstrap of the seed-averaged difference: each resample scores every run on the
    same draw of questions (for any statistic: nDCG@10, bitext F1, Spearman). With 2 or more seeds in both arms (or
    in A, against a ``fixed_b`` model that no training produced), its variance (the bootstrap's squared standard
    error) is added to ``s_A^2/n_A + s_B^2/n_B``, each arm's seed variance of its mean score; the interval is
    ``delta +- t * se`` with Welch-Satterthwaite degrees of freedom (the question part counts as known). Otherwise
    it is the bootstrap's percentile interval, labelled :data:`QUERY_ONLY`.

    Args:
        a_runs: Per-query values of arm A, one mapping per training seed (same queries in each).
        b_runs: The same for arm B.
        statistic, unit, resamples, seed, confidence: As :func:`paired_bootstrap`.
        fixed_b: B has no seed variance (the base model, which no seed trained): A's seeds alone carry seed noise.

    Returns:
        :func:`paired_bootstrap`'s keys (``delta``, ``a`` and ``b`` now means over seeds; ``lo``/``hi``/``lo90``/
        ``hi90`` the combined interval when seeded) and ``noise`` (:data:`SEEDS_AND_QUERIES` or :data:`QUERY_ONLY`),
        ``seeds_a``, ``seeds_b``, ``seed_sd_a``, ``seed_sd_b``, ``se_questions``, ``df``.
    """
    from scipy import stats as sps

    if not a_runs or not b_runs:
        raise ValueError("seeded_difference: each arm needs at least one run")
    seeded = len(a_runs) >= 2 and (len(b_runs) >= 2 or fixed_b)
    q = _bootstrap(a_runs, b_runs, statistic=statistic, unit=unit, resamples=resamples, seed=seed,
                   confidence=confidence)
    common = {"seeds_a": len(a_runs), "seeds_b": len(b_runs), "se_questions": q["se"]}
    if not seeded:
        return {**q, **common, "noise": QUERY_ONLY, "seed_sd_a": None, "seed_sd_b": None, "df": None}
    scores_a = np.array([task_score(r, statistic) for r in a_runs])
    scores_b = np.array([task_score(r, statistic) for r in b_runs])
    va = scores_a.var(ddof=1) / len(a_runs)
    vb = scores_b.var(ddof=1) / len(b_runs) if len(b_runs) >= 2 else 0.0
    total = q["se"] ** 2 + va + vb
    seed_part = va**2 / (len(a_runs) - 1) + (vb**2 / (len(b_runs) - 1) if len(b_runs) >= 2 else 0.0)
    df = float(total**2 / seed_part) if seed_part > 0 else None  # None: no seed variance, a normal quantile
    se = float(np.sqrt(total))
    delta = q["delta"]

    def half(level: float) -> float:
        p = 1 - (1 - level) / 2
        return float(sps.t.ppf(p, df) if df is not None else sps.norm.ppf(p)) * se

    h, h90 = half(confidence), half(0.90)
    return {**q, **common, "lo": delta - h, "hi": delta + h, "lo90": delta - h90, "hi90": delta + h90, "se": se,
            "noise": SEEDS_AND_QUERIES, "seed_sd_a": seed_sd(scores_a), "seed_sd_b": seed_sd(scores_b), "df": df}


def seed_sd(scores: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1) of one configuration's score over training seeds; ``None`` below 2."""
    return float(np.std(np.asarray(scores, dtype=np.float64), ddof=1)) if len(scores) >= 2 else None


def resolved(interval: Mapping[str, float]) -> bool:
    """The rule: the 95% interval (which carries the seed noise where there are seeds) excludes zero."""
    return interval["lo"] > 0 or interval["hi"] < 0


def equivalent(interval: Mapping[str, float], margin: float) -> bool:
    """TOST at 5% per side: the 90% interval lies inside ``(-margin, +margin)``."""
    return -margin < interval["lo90"] and interval["hi90"] < margin


def verdict(interval: Mapping[str, float] | None, expected_sign: int = 1) -> str:
    """A difference's verdict by the rule of :func:`resolved`.

    Args:
        interval: From :func:`seeded_difference` or :func:`paired_bootstrap` (``None``: the comparison was not run).
        expected_sign: +1 when the paper expects A > B.

    Returns:
        ``"reproduced"``, ``"opposite to the paper"`` (resolved, wrong sign), ``"not resolved at this scale"`` or
        ``"not run"``. Whether seeds are in the interval is the comparison's ``noise``, reported beside it.
    """
    if interval is None:
        return "not run"
    if not resolved(interval):
        return "not resolved at this scale"
    return "reproduced" if np.sign(interval["delta"]) == expected_sign else "opposite to the paper"
