"""The PNG figures: the scale curve with its bands and one forest plot per finding pair."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.report.compare import Comparer, forest_pairs
from retrofit.report.evaluations import LABELS, XQUAD_METRICS, Evaluation


def draw_figures(plots: Mapping[str, list[dict[str, Any]]], evals: Mapping[str, Evaluation], cmp: Comparer,
             points: Sequence[int], fig_dir: Path) -> None:
    """``scale.png`` (each point's gain over the first, with bands) and one forest plot per finding pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    first = f"scale_{points[0]}"
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for metric, style in zip(XQUAD_METRICS, ("-o", "--s", "--^", ":d"), strict=True):
        pts = [r for r in plots["scale"] if r["family"] == metric]
        if not pts:
            continue
        xs = [r["scale"] for r in pts]
        line, = ax.plot(xs, [100 * r["gain"] for r in pts], style, label=LABELS.get(metric, metric),
                        lw=2 if metric == "primary" else 1)
        ax.fill_between(xs, [100 * r["lo"] for r in pts], [100 * r["hi"] for r in pts], color=line.get_color(),
                        alpha=0.15)
    if first in evals and len(cmp.seed_models) > 1:
        ref = evals[first].score("primary")
        ax.plot([points[-1]] * len(cmp.seed_models), [100 * (evals[m].score("primary") - ref) for m in cmp.seed_models],
                "k_", ms=12, label="primary, each training seed")
    if "base" in evals and first in evals:
        ax.axhline(100 * (evals["base"].score("primary") - evals[first].score("primary")), color="grey", ls=":",
                   lw=1.5, label="primary, base model")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("synthetic examples per language")
    ax.set_ylabel(f"gain over {first}, nDCG@10 x100 (held-out XQuAD)")
    ax.set_title("Data scale: gain over English-only training (bands: 95% intervals)", fontsize=10)
    ax.set_xticks(list(points))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / "scale.png", dpi=120)
    plt.close(fig)
    for name, (title, a, b) in forest_pairs(f"scale_{points[-1]}").items():
        rows = plots.get(name) or []
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.8, 3.6))
        ys = list(range(len(rows)))[::-1]
        ax.axvspan(-100 * cmp.margin, 100 * cmp.margin, color="green", alpha=0.1,
                   label=f"equivalence margin +-{100 * cmp.margin:.2f}")
        ax.axvline(0, color="grey", ls="--", lw=1)
        for y, r in zip(ys, rows, strict=True):
            ax.plot([100 * r["lo"], 100 * r["hi"]], [y, y], color="C0", lw=2)
            ax.plot(100 * r["delta"], y, "o", color="C0", ms=7)
            b_mean = sum(evals[m].score(r["family"]) for m in cmp.runs(b, r["family"])) / len(cmp.runs(b, r["family"]))
            seeds = [100 * (evals[m].score(r["family"]) - b_mean) for m in cmp.runs(a, r["family"])]
            ax.plot(seeds, [y + 0.18] * len(seeds), "|", color="black", ms=8)
        ax.plot([], [], "|", color="black", ms=8, label=f"each seed of {a} against {b}'s mean")
        ax.set_yticks(ys, [f"{r['label']}\n({r['noise']})" for r in rows], fontsize=7)
        ax.set_xlabel(f"{a} - {b}, nDCG@10 x100 (95% interval)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="best")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(fig_dir / f"{name}.png", dpi=120)
        plt.close(fig)
