"""The tidy CSVs: every score, every comparison, and the tables that ``dvc plots show`` draws."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.report.compare import Comparer, forest_pairs
from retrofit.report.evaluations import LABELS, XQUAD_METRICS, Evaluation


def tidy_rows(evals: Mapping[str, Evaluation], points: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of ``scores.csv``: every family and subset of held-out XQuAD and every official task subset."""
    scales = {f"scale_{n}": n for n in points}
    rows = []
    for model, ev in evals.items():
        base = {"model": model, "scale": scales.get(model, "")}
        rows.append({**base, "benchmark": "xquad", "family": "primary", "subset": "all", "score": ev.score("primary")})
        for fam, subsets in ev.metrics["subsets"].items():
            rows.append({**base, "benchmark": "xquad", "family": fam, "subset": "all", "score": ev.score(fam)})
            rows += [{**base, "benchmark": "xquad", "family": fam, "subset": s, "score": v["ndcg_at_10"]}
                     for s, v in subsets.items()]
        for task, t in ev.official.get("tasks", {}).items():
            rows.append({**base, "benchmark": task, "family": t["main_score_name"], "subset": "all",
                         "score": t["main_score"]})
            rows += [{**base, "benchmark": task, "family": t["main_score_name"], "subset": s, "score": v}
                     for s, v in t["subset_scores"].items()]
    return rows


def plot_tables(cmp: Comparer, points: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """The plots' data: the scale curve as each point's gain over the first, and each finding as a difference.

    Every row carries its 95% interval (``lo``, ``hi``); the forest rows also the equivalence margin
    (``margin_lo``, ``margin_hi``), the noise the interval carries and the verdict.
    """
    first = f"scale_{points[0]}"
    scale = []
    for metric in XQUAD_METRICS:
        for n in points:
            model = f"scale_{n}"
            c = cmp.compare(model, first, metric) if model != first else None
            if model == first and model in cmp.evals:
                scale.append({"scale": n, "model": model, "family": metric, "gain": 0.0, "lo": 0.0, "hi": 0.0})
            elif c is not None:
                scale.append({"scale": n, "model": model, "family": metric, "gain": c["delta"], "lo": c["lo"],
                              "hi": c["hi"], "noise": c["noise"]})
    tables: dict[str, list[dict[str, Any]]] = {"scale": scale}
    for name, (_, a, b) in forest_pairs(f"scale_{points[-1]}").items():
        rows = []
        for metric in XQUAD_METRICS:
            c = cmp.compare(a, b, metric)
            if c is not None:
                rows.append({"label": LABELS.get(metric, metric), "comparison": f"{a} - {b}", "family": metric,
                             "delta": c["delta"], "lo": c["lo"], "hi": c["hi"], "margin_lo": -cmp.margin,
                             "margin_hi": cmp.margin, "noise": c["noise"], "verdict": c["verdict"]})
        tables[name] = rows
    return tables


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})
