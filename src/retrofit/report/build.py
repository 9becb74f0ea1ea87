"""The plot stage's one call: every output of :mod:`retrofit.report`, written from the loaded evaluations."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.report.compare import Comparer, findings
from retrofit.report.cost import cost_markdown, cost_rows, draw_cost
from retrofit.report.evaluations import OFFICIAL, XQUAD_METRICS, Evaluation
from retrofit.report.figures import draw_figures
from retrofit.report.markdown import results_markdown, training_rows
from retrofit.report.tables import plot_tables, tidy_rows, write_csv


def build_report(
    evals: Mapping[str, Evaluation], scale_points: Sequence[int], seed_runs: Sequence[str], out_dir: Path,
    results_md: Path, *, resamples: int = 1000, seed: int = 0, extra_sections: list[str] | None = None,
    arm_seeds: Mapping[str, Sequence[str]] | None = None, margin: float = 0.5,
    training: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write every output listed in the module docstring and return ``findings.json``'s content.

    Args:
        evals: From :func:`load_evaluations` (``base`` and ``scale_<n>`` for each point at least).
        scale_points: ``scale.per_language``; sweep models are named ``scale_<n>``.
        seed_runs: ``plot.seed_runs``: the top scale point retrained under other seeds.
        out_dir: Output directory for tables and figures.
        results_md: Where ``RESULTS.md`` goes (``reports/RESULTS.md``, committed to git).
        resamples: Bootstrap resamples per comparison.
        seed: Bootstrap seed.
        extra_sections: Markdown lines appended to ``RESULTS.md`` (the MMTEB table, :func:`mmteb_markdown`).
        arm_seeds: ``plot.arm_seeds``: other arms' seed replicas.
        margin: ``plot.equivalence_margin`` (nDCG@10 x100).
        training: Each trained model's mixture (:func:`retrofit.report.evaluations.load_training`): what it saw in
            training, written to ``training.json`` and stated in ``RESULTS.md``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    points = sorted(scale_points)
    top = f"scale_{points[-1]}"
    cmp = Comparer(evals, {**(arm_seeds or {}), top: list(seed_runs)}, top, resamples, seed, margin / 100)
    cells = evals["base"].beyond_cells() if "base" in evals else []
    metrics = [*XQUAD_METRICS, *OFFICIAL, *cells]
    versus_base = {m: {k: cmp.compare(m, "base", k, arms=False) for k in metrics} for m in evals if m != "base"}
    found = findings(cmp, points)
    cost = cost_rows(cmp, evals)
    summary = {"seed_models": cmp.seed_models, "seed_sd": cmp.seed_sd, "arms": cmp.arms, "margin": cmp.margin,
               "findings": found, "versus_base": versus_base, "cost": cost}
    (out_dir / "findings.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    models = {m: {k: ev.score(k) for k in metrics} for m, ev in evals.items()}
    (out_dir / "models.json").write_text(json.dumps(models, indent=2) + "\n", encoding="utf-8")
    write_csv(out_dir / "scores.csv", tidy_rows(evals, points), ["model", "scale", "benchmark", "family", "subset",
                                                                   "score"])
    rows = [c for c in [*found.values(), *(c for v in versus_base.values() for c in v.values())] if c and "a" in c]
    write_csv(out_dir / "comparisons.csv", rows,
               ["a", "b", "metric", "score_a", "score_b", "delta", "lo", "hi", "lo90", "hi90", "noise", "seeds_a",
                "seeds_b", "verdict"])
    plots = {**plot_tables(cmp, points), "cost": cost}
    for name, table in plots.items():
        write_csv(out_dir / f"{name}.csv", table, list(table[0]) if table else ["label"])
    draw_figures(plots, evals, cmp, points, out_dir / "figures")
    draw_cost(cost, out_dir / "figures" / "cost.png")
    (out_dir / "training.json").write_text(json.dumps(training_rows(training or {}), indent=2) + "\n", encoding="utf-8")
    text = results_markdown(evals, cmp, points, found, versus_base, training, cost_markdown(cost, evals, cmp.margin))
    results_md.write_text(text + ("\n".join(extra_sections) + "\n" if extra_sections else ""), encoding="utf-8")
    return summary
