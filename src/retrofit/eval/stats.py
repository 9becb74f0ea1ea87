"""Statistics that tell a finding from noise: paired bootstrap intervals over queries, seed spread, verdicts.

Two sources of noise stand between a difference of scores and a finding:

- *which queries were asked*: a paired bootstrap over queries (Efron and Tibshirani; Sakai's paired bootstrap test
  for IR) resamples the evaluation's queries with replacement, recomputes both models' scores on the same
  resample, and takes the 2.5th and 97.5th percentiles of the difference;
- *which training run it was*: the standard deviation of the score over training seeds of one configuration.

:func:`verdict` counts a finding only when its 95% interval excludes zero **and** the difference exceeds twice the
seed standard deviation; anything else is "not resolved at this scale", never "reversed".

Per-query data comes from ``per_query.json`` files written by :mod:`retrofit.eval.xquad` and the official tasks
(schema there): ``{subset: {query id: value}}`` where the value is the query's nDCG@10, or, for bitext mining,
the index of the nearest ``sentence2`` (mteb's F1 is not a mean over sentences; :func:`bitext_f1` recomputes it).
Subsets are resampled *clustered* when their query ids denote the same item across subsets (XQuAD's parallel
questions, Belebele's parallel questions: one draw of ids applies to every subset) and *stratified* otherwise
(Tatoeba's languages: each subset is resampled on its own). A task's score is the mean of its subset scores.
``scipy.stats.bootstrap`` resamples independent observations of one sample; the clustered scheme, and a statistic
(bitext F1) recomputed from nearest-neighbour indices per resample, are why the resampling here is our own.

References:
    Efron and Tibshirani, *An Introduction to the Bootstrap* (1993). Sakai, "Evaluating evaluation metrics based
    on the bootstrap" (SIGIR 2006). Koehn, "Statistical significance tests for machine translation evaluation"
    (EMNLP 2004) -- paired bootstrap resampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

#: What a per-query value is: a query's nDCG@10 (averaged) or a bitext nearest-neighbour index (F1).
Statistic = Literal["mean", "bitext_f1"]

#: ``{subset: {query id: value}}``
PerQuery = Mapping[str, Mapping[str, float]]


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


def task_score(per_query: PerQuery, statistic: Statistic = "mean") -> float:
    """The task score from per-query values: the mean over subsets of each subset's score."""
    scores = []
    for values in per_query.values():
        arr = np.array([values[k] for k in sorted(values, key=_id_order)], dtype=np.float64)
        scores.append(float(arr.mean()) if statistic == "mean" else bitext_f1(arr.astype(np.int64)))
    return float(np.mean(scores))


def _id_order(key: str) -> tuple[int, int | str]:
    """Bitext ids are sentence indices: order them numerically so position i holds sentence i."""
    return (0, int(key)) if key.isdigit() else (1, key)


def _aligned(a: PerQuery, b: PerQuery) -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    if sorted(a) != sorted(b):
        raise ValueError(f"the two evaluations have different subsets: {sorted(a)} vs {sorted(b)}")
    out = []
    for subset in sorted(a):
        if set(a[subset]) != set(b[subset]):
            raise ValueError(
                f"subset {subset!r}: the two evaluations asked different queries ({len(a[subset])} vs "
                f"{len(b[subset])}); compare models only under identical evaluation conditions"
            )
        ids = sorted(a[subset], key=_id_order)
        out.append((subset, ids, np.array([a[subset][i] for i in ids]), np.array([b[subset][i] for i in ids])))
    return out


def paired_bootstrap(
    a: PerQuery,
    b: PerQuery,
    *,
    statistic: Statistic = "mean",
    cluster: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Paired bootstrap interval of ``score(a) - score(b)`` over queries.

    Args:
        a: Per-query values of model A (``{subset: {query id: value}}``).
        b: The same for model B, on exactly the same subsets and query ids.
        statistic: ``"mean"`` (nDCG@10 per query) or ``"bitext_f1"`` (nearest-neighbour indices).
        cluster: Resample one draw of query ids shared by every subset (parallel subsets) instead of each subset
            on its own.
        resamples: Bootstrap resamples (1,000 or more for a 95% interval).
        seed: Resampling seed.
        confidence: Coverage of the percentile interval.

    Returns:
        ``{"delta": observed difference, "lo": ..., "hi": ..., "a": score(a), "b": score(b), "resamples": n,
        "queries": total query count}``.

    Raises:
        ValueError: The evaluations differ in subsets or queries, or ``resamples < 1``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    parts = _aligned(a, b)
    rng = np.random.default_rng(seed)
    if cluster:
        universe = sorted({i for _, ids, _, _ in parts for i in ids}, key=_id_order)
        index = {k: j for j, k in enumerate(universe)}
        draws = rng.multinomial(len(universe), np.full(len(universe), 1 / len(universe)), size=resamples)
    subset_deltas = []
    for _, ids, va, vb in parts:
        if cluster:
            w = draws[:, [index[i] for i in ids]].astype(np.float64)  # (resamples, len(ids))
        else:
            w = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=resamples).astype(np.float64)
        if statistic == "mean":
            total = np.maximum(w.sum(axis=1), 1e-12)
            subset_deltas.append((w @ va - w @ vb) / total)  # (resamples,)
        else:
            pa, pb = va.astype(np.int64), vb.astype(np.int64)
            subset_deltas.append(np.array([bitext_f1(pa, row) - bitext_f1(pb, row) for row in w]))
    deltas = np.mean(subset_deltas, axis=0)
    tail = 100 * (1 - confidence) / 2
    score_a, score_b = task_score(a, statistic), task_score(b, statistic)
    return {
        "delta": score_a - score_b,
        "lo": float(np.percentile(deltas, tail)),
        "hi": float(np.percentile(deltas, 100 - tail)),
        "a": score_a,
        "b": score_b,
        "resamples": resamples,
        "queries": sum(len(ids) for _, ids, _, _ in parts),
    }


def seed_sd(scores: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1) of one configuration's score over training seeds; ``None`` below 2."""
    return float(np.std(np.asarray(scores, dtype=np.float64), ddof=1)) if len(scores) >= 2 else None


def resolved(interval: Mapping[str, float], sd: float | None) -> bool:
    """The rule: the interval excludes zero and ``|delta| > 2 * seed sd`` (no seed sd: never resolved)."""
    if sd is None:
        return False
    excludes_zero = interval["lo"] > 0 or interval["hi"] < 0
    return excludes_zero and abs(interval["delta"]) > 2 * sd


def verdict(interval: Mapping[str, float] | None, sd: float | None, expected_sign: int = 1) -> str:
    """A finding's verdict by the rule of :func:`resolved`.

    Args:
        interval: From :func:`paired_bootstrap` (``None``: the comparison was not run).
        sd: The seed standard deviation of the primary metric.
        expected_sign: +1 when the paper expects A > B.

    Returns:
        ``"reproduced"``, ``"opposite to the paper"`` (resolved, wrong sign), ``"not resolved at this scale"``,
        ``"no seed spread (need 2 or more seeds)"`` or ``"not run"``.
    """
    if interval is None:
        return "not run"
    if sd is None:
        return "no seed spread (need 2 or more seeds)"
    if not resolved(interval, sd):
        return "not resolved at this scale"
    return "reproduced" if np.sign(interval["delta"]) == expected_sign else "opposite to the paper"
