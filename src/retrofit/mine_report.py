"""Hard-negative mining's report: the per-row outcomes of a run, score distributions and counts per language and
source.

:class:`_Tally` gathers what mining did to each row, across partitions; :func:`_report` turns it into the report's
counts and score distributions (:func:`score_summary`). The report's schema is documented once, in
:mod:`retrofit.mine`, whose :func:`~retrofit.mine.mine` returns it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from retrofit.embed.encoder import KINDS
from retrofit.mine_corpus import _Partition
from retrofit.mine_search import DROP_REASONS, _Searcher

#: Score histograms cover the cosine range in 0.1-wide bins.
HIST_EDGES = np.linspace(-1.0, 1.0, 21)


def score_summary(scores: npt.ArrayLike) -> dict[str, Any]:
    """Distribution of similarity scores: count, mean, std, min, quantiles, max and a histogram over [-1, 1].

    Args:
        scores: 1-D scores.

    Returns:
        ``{"count", "mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max", "histogram": {"edges",
        "counts"}}``; statistics are ``None`` when there are no scores.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    counts, _ = np.histogram(np.clip(s, -1.0, 1.0), bins=HIST_EDGES)
    out: dict[str, Any] = {"count": int(s.size), "histogram": {"edges": [round(float(e), 2) for e in HIST_EDGES],
                                                                "counts": counts.tolist()}}
    names = ("mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max")
    if s.size == 0:
        out.update(dict.fromkeys(names))
        return out
    q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    values = (s.mean(), s.std(), s.min(), *q, s.max())
    out.update({n: round(float(v), 6) for n, v in zip(names, values, strict=True)})
    return out


@dataclass
class _Tally:
    """Per-row outcomes of one mining run (arrays of length ``n``), gathered across partitions for the report."""

    pos_score: np.ndarray  # (n,)
    n_negs: np.ndarray  # (n,)
    dropped: np.ndarray  # (n, reasons)
    below_min: np.ndarray  # (n,)
    in_window: np.ndarray  # (n,)
    kept_dataset: np.ndarray  # (n,)
    dataset_above_margin: np.ndarray  # (n,)
    dataset_score: np.ndarray  # (n,)
    hardest_gap: np.ndarray  # (n,) positive score minus the hardest mined negative's
    random_score: np.ndarray  # (n,) a uniformly drawn, non-excluded candidate's score
    mined_scores: list[np.ndarray] = field(default_factory=list)
    dataset_equals_positive: int = 0
    dataset_no_room: int = 0

    @classmethod
    def empty(cls, n: int) -> _Tally:
        return cls(
            pos_score=np.zeros(n, dtype=np.float32), n_negs=np.zeros(n, dtype=np.int64),
            dropped=np.zeros((n, len(DROP_REASONS)), dtype=np.int64), below_min=np.zeros(n, dtype=np.int64),
            in_window=np.zeros(n, dtype=np.int64), kept_dataset=np.zeros(n, dtype=bool),
            dataset_above_margin=np.zeros(n, dtype=bool), dataset_score=np.full(n, np.nan, dtype=np.float32),
            hardest_gap=np.full(n, np.nan, dtype=np.float32), random_score=np.full(n, np.nan, dtype=np.float32),
        )


def _report(rows: Sequence[Mapping[str, Any]], tally: _Tally, num_negatives: int, has_neg: np.ndarray,
            parts: list[_Partition], index_used: Counter[str], n_unique: dict[str, int], encoded: dict[str, int],
            fp: str) -> dict[str, Any]:
    """The mining report's counts and score distributions (schema: :mod:`retrofit.mine`), from the run's tally."""
    t = tally
    short = t.n_negs < num_negatives  # (n,)
    all_mined = np.concatenate(t.mined_scores) if t.mined_scores else np.zeros(0, dtype=np.float32)

    def by(keys: list[str]) -> dict[str, Any]:
        names, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
        stats: dict[str, Any] = {}
        for g, name in enumerate(names.tolist()):
            sel = inverse == g
            stats[name] = {
                "rows": int(sel.sum()),
                "short": int(short[sel].sum()),
                "negatives": int(t.n_negs[sel].sum()),
                "dropped": {r: int(t.dropped[sel, c].sum()) for c, r in enumerate(DROP_REASONS)},
                "positive_score_mean": round(float(t.pos_score[sel].mean()), 6),
                "hardest_gap_mean": _nanmean(t.hardest_gap[sel]),
            }
        return stats

    return {
        "teacher_fingerprint": fp,
        "rows": {
            "in": len(rows),
            "out": len(rows),
            "with_dataset_negative": int(has_neg.sum()),
            "short": int(short.sum()),
            "without_negatives": int((t.n_negs == 0).sum()),
        },
        "negatives": {"total": int(t.n_negs.sum()), "dataset": int(t.kept_dataset.sum()), "mined": int(all_mined.size)},
        "dataset_negatives": {
            "kept": int(t.kept_dataset.sum()),
            "above_margin": int(t.dataset_above_margin.sum()),  # kept anyway: the dataset labels them negative
            "dropped_equal_to_positive": t.dataset_equals_positive,
            "dropped_num_negatives_0": t.dataset_no_room,
        },
        "candidates": {
            "in_window": int(t.in_window.sum()),
            "dropped": {r: int(t.dropped[:, c].sum()) for c, r in enumerate(DROP_REASONS)},
            "below_range_min": int(t.below_min.sum()),
            "chosen": int(all_mined.size),
        },
        "corpus": {
            "partitions": len(parts),
            "passages": sum(len(p.texts) for p in parts),
            "largest_partition": max((len(p.texts) for p in parts), default=0),
            "index": dict(sorted(index_used.items())),
        },
        "encoding": {
            kind: {"unique": n_unique[kind], "encoded": encoded[kind], "cached": n_unique[kind] - encoded[kind]}
            for kind in KINDS
        },
        "scores": {
            "positive": score_summary(t.pos_score),
            "mined_negative": score_summary(all_mined),
            "random_negative": score_summary(t.random_score[~np.isnan(t.random_score)]),
            "dataset_negative": score_summary(t.dataset_score[~np.isnan(t.dataset_score)]),
            "hardest_gap": score_summary(t.hardest_gap[~np.isnan(t.hardest_gap)]),
        },
        "by_lang": by([r["lang"] for r in rows]),
        "by_source": by([r["source"] for r in rows]),
    }


def _index_label(requested: str, searcher: _Searcher | None) -> str:
    if searcher is None:
        return "none"
    return searcher.kind if searcher.kind == requested else f"{requested}->{searcher.kind}"


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return round(float(values.mean()), 6) if values.size else None
