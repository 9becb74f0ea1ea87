"""``reports/scale_study.md``: the CPU scale study's curves, findings and the big-brother table.

Written by ``python -m retrofit.study`` (``make scale-study``) from the study copy's evaluations
(:mod:`retrofit.study`), with the comparisons of the plot stage (:class:`retrofit.report.compare.Comparer`: every arm
with its seed replicas, seed-and-question intervals, TOST against ``plot.equivalence_margin``). Outputs:

- ``reports/scale_study.md``: the compute plan and wall time, both plateau curves (human questions; generated queries
  as far as the generator affords), the three findings with verdicts, and the big-brother table;
- ``reports/scale_study/``: ``curves.png``, ``findings.png``, ``summary.json`` (every number of the page; the README's
  headline line reads it) and ``RESULTS.md`` (the study copy's own plot-stage report: every model, every family).

Named runs of ``profiles/cpu-scale.yaml`` that this module reads: ``gen_<n>`` (generated queries, ``n`` per language)
and ``oracle_<n>`` (their human twins), besides the plot stage's ``nohard``, ``div_lang`` and ``div_task``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.config import load_params
from retrofit.eval.official import PUBLISHED_E5_BASE, PUBLISHED_E5_SMALL, TATOEBA_E5_SMALL_MTEB_1_12
from retrofit.report.compare import Comparer, findings
from retrofit.report.evaluations import LABELS, Evaluation, load_evaluations, load_training
from retrofit.report.markdown import format_diff

#: The tasks of the big-brother table, with the e5-small scores of the e5-base scores' protocol (``PUBLISHED_E5_BASE``).
BIG_BROTHER_TASKS = ("BelebeleRetrieval", "Tatoeba", "LegalBenchCorporateLobbying")
_GEN = re.compile(r"^gen_(\d+)$")


def _mean(d: Mapping[str, float]) -> float:
    return sum(d.values()) / len(d)


def published_gap(task: str) -> dict[str, float]:
    """Published e5-small and e5-base means (x100) on ``task``'s subsets, under one protocol, and their gap."""
    base = _mean(PUBLISHED_E5_BASE[task])
    small = _mean(TATOEBA_E5_SMALL_MTEB_1_12 if task == "Tatoeba" else PUBLISHED_E5_SMALL[task])
    return {"small": small, "base": base, "gap": base - small}


def big_brother_rows(cmp: Comparer, best: str) -> list[dict[str, Any]]:
    """Per task: the measured base and ``best`` (with its seeds), the difference with its interval, and the fraction
    of the published small->base gap that the difference closes (the interval divided by the same constant)."""
    rows = []
    for task in BIG_BROTHER_TASKS:
        c = cmp.compare(best, "base", task)
        if c is None:
            continue
        pub = published_gap(task)
        # no gap to close where the published big brother is not ahead (LegalBench: e5-base 0.50 below e5-small)
        frac = {k: 100 * c[k] / pub["gap"] if pub["gap"] > 0 else None for k in ("delta", "lo", "hi")}
        rows.append({"task": task, **{f"published_{k}": v for k, v in pub.items()},
                     "base_here": 100 * c["score_b"], "best_here": 100 * c["score_a"], "diff": c,
                     **{f"fraction{s}": frac[k] for s, k in (("", "delta"), ("_lo", "lo"), ("_hi", "hi"))}})
    return rows


def curve_rows(cmp: Comparer, evals: Mapping[str, Evaluation], points: Sequence[int]) -> list[dict[str, Any]]:
    """The human-question curve: each point's primary score (mean over its seeds), its gain over the first point and
    the step from the point before, each with its interval, verdict and TOST result."""
    first = f"scale_{points[0]}"
    rows = []
    for i, n in enumerate(points):
        name = f"scale_{n}"
        if name not in evals:
            continue
        runs = cmp.runs(name, "primary")
        rows.append({"n": n, "model": name, "seeds": runs, "score": sum(evals[m].score("primary") for m in runs)
                     / len(runs), "gain": cmp.compare(name, first) if i else None,
                     "step": cmp.compare(name, f"scale_{points[i - 1]}") if i else None})
    return rows


def generated_rows(cmp: Comparer, evals: Mapping[str, Evaluation], first: str) -> list[dict[str, Any]]:
    """The generated-query curve: ``gen_<n>``'s gain over the first point and the generator's cost at ``n`` (its
    human twins ``oracle_<n>`` minus it: the same passages and counts)."""
    rows = []
    for name in sorted((m for m in evals if _GEN.match(m)), key=lambda m: int(_GEN.match(m).group(1))):
        n = int(_GEN.match(name).group(1))
        rows.append({"n": n, "model": name, "score": evals[name].score("primary"), "gain": cmp.compare(name, first),
                     "oracle_gain": cmp.compare(f"oracle_{n}", first), "cost": cmp.compare(f"oracle_{n}", name)})
    return rows


def _fraction(r: Mapping[str, Any]) -> str:
    """``43% [12%, 74%]``, or why there is none."""
    if r["fraction"] is None:
        return "no gap: e5-base is not ahead"
    return f"{100 * r['fraction']:.0f}% [{100 * r['fraction_lo']:.0f}%, {100 * r['fraction_hi']:.0f}%]"


def _row(label: str, c: Mapping[str, Any] | None) -> str:
    if c is None:
        return f"| {label} | - | - | - | not run |"
    tost = "inside" if c["equivalent"] else "not inside"
    return (f"| {label} | {format_diff(c)} | [{100 * c['lo90']:+.2f}, {100 * c['hi90']:+.2f}] ({tost}) | "
            f"{c['noise']} | {c['verdict']} |")


def draw(curve: list[dict], generated: list[dict], found: Mapping[str, Any], cmp: Comparer,
         evals: Mapping[str, Evaluation], fig_dir: Path) -> None:
    """``curves.png`` (both curves as gains over the first point, bands and each seed) and ``findings.png`` (each
    finding's difference with its interval, the zero line and the equivalence margin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    pts = [r for r in curve if r["gain"]]
    ref = curve[0]["score"]
    xs = [0, *(r["n"] for r in pts)]
    ax.plot(xs, [0, *(100 * r["gain"]["delta"] for r in pts)], "-o", color="C0",
            label="human XQuAD questions (3 seeds a point)")
    ax.fill_between(xs, [0, *(100 * r["gain"]["lo"] for r in pts)], [0, *(100 * r["gain"]["hi"] for r in pts)],
                    color="C0", alpha=0.15, label="95% interval (seeds and questions)")
    for r in curve:
        ax.plot([r["n"]] * len(r["seeds"]), [100 * (evals[m].score("primary") - ref) for m in r["seeds"]], "_",
                color="black", ms=10)
    ax.plot([], [], "_", color="black", ms=10, label="each training seed")
    for key, style, label in (("gain", "s", "generated queries (1 seed)"), ("oracle_gain", "^", "their human twins")):
        got = [r for r in generated if r[key]]
        if got:
            ax.errorbar([r["n"] for r in got], [100 * r[key]["delta"] for r in got],
                        yerr=[[100 * (r[key]["delta"] - r[key]["lo"]) for r in got],
                              [100 * (r[key]["hi"] - r[key]["delta"]) for r in got]], fmt=style, capsize=3,
                        label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("symlog", linthresh=50)
    ticks = sorted({*xs, *(r["n"] for r in generated)})
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("multilingual examples per language (12 languages), with all English task data")
    ax.set_ylabel(f"gain over {curve[0]['model']}, primary nDCG@10 x100")
    ax.set_title("CPU scale study: the plateau curve at equal steps", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(fig_dir / "curves.png", dpi=120)
    plt.close(fig)

    rows = [(label, found.get(key)) for key, label in FINDING_LABELS.items() if found.get(key)]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7.2, 0.7 * len(rows) + 1.4))
    ax.axvspan(-100 * cmp.margin, 100 * cmp.margin, color="green", alpha=0.1,
               label=f"equivalence margin +-{100 * cmp.margin:.2f}")
    ax.axvline(0, color="grey", ls="--", lw=1)
    for y, (label, c) in zip(range(len(rows))[::-1], rows, strict=True):
        ax.plot([100 * c["lo"], 100 * c["hi"]], [y, y], color="C0", lw=2)
        ax.plot([100 * c["lo90"], 100 * c["hi90"]], [y, y], color="C1", lw=5, alpha=0.5)
        ax.plot(100 * c["delta"], y, "o", color="C0", ms=7)
        b_mean = sum(evals[m].score("primary") for m in c["runs_b"]) / len(c["runs_b"])
        ax.plot([100 * (evals[m].score("primary") - b_mean) for m in c["runs_a"]], [y + 0.2] * len(c["runs_a"]), "|",
                color="black", ms=8)
    ax.plot([], [], color="C0", lw=2, label="95% interval")
    ax.plot([], [], color="C1", lw=5, alpha=0.5, label="90% interval (TOST)")
    ax.plot([], [], "|", color="black", ms=8, label="each seed of A against B's mean")
    ax.set_yticks(range(len(rows))[::-1], [f"{label}\n({c['noise']})" for label, c in rows], fontsize=7)
    ax.set_xlabel("A - B, primary nDCG@10 x100 (held-out XQuAD)")
    ax.set_title("CPU scale study: the findings", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(fig_dir / "findings.png", dpi=120)
    plt.close(fig)


#: The findings drawn and tabled, in order (keys of :func:`retrofit.report.compare.findings`, plus the generator's).
FINDING_LABELS = {"gain_from_synthetic": "1. top point - first point", "plateau_last_step": "1. last step",
                  "hard_negatives": "2. top point - nohard", "task_over_language_diversity": "3. div_task - div_lang",
                  "generator_cost": "generator's cost: oracle - gen"}


def write_scale_study(repo: Path, study: Mapping[str, Any], reports: Path) -> Path:
    """Write ``reports/scale_study.md`` and ``reports/scale_study/`` from the study copy ``repo``.

    Args:
        repo: The study copy (``.cache/scale-study/repo``) after its ``dvc repro``.
        study: ``study.json`` of :mod:`retrofit.study` (wall time of each run).
        reports: This repository's ``reports/``.
    """
    params = load_params(repo / "params.yaml")
    points = sorted(params.scale.per_language)
    names = ["base", *(f"scale_{n}" for n in points), *params.runs]
    # a study still running (or cut short) reports what it has evaluated and names the rest
    missing = [n for n in names if not (repo / "reports" / "eval" / n / "per_query.json").is_file()]
    evals = load_evaluations(repo / "reports" / "eval", [n for n in names if n not in missing])
    top, first = f"scale_{points[-1]}", f"scale_{points[0]}"
    cmp = Comparer(evals, {**params.plot.arm_seeds, top: list(params.plot.seed_runs)}, top,
                   params.plot.bootstrap_resamples, params.plot.bootstrap_seed, params.plot.equivalence_margin / 100)
    found: dict[str, Any] = findings(cmp, points)
    curve = curve_rows(cmp, evals, points)
    generated = generated_rows(cmp, evals, first)
    if generated:
        found["generator_cost"] = generated[-1]["cost"]
    brother = big_brother_rows(cmp, top)
    training = load_training(repo / "reports" / "train", names)
    out = reports / "scale_study"
    out.mkdir(parents=True, exist_ok=True)
    draw(curve, generated, found, cmp, evals, out)
    if not missing:  # the copy's plot stage ran after the last evaluation
        shutil.copyfile(repo / "reports" / "RESULTS.md", out / "RESULTS.md")
    summary = {"missing": missing, "wall_seconds": sum(r["seconds"] for r in study.get("runs", [])),
               "runs": study.get("runs", []),
               "trainings": len(training), "max_steps": params.train.max_steps, "points": points,
               "curve": curve, "generated": generated, "findings": found, "big_brother": brother,
               "headline": headline(found, brother, len(training), study)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    md = reports / "scale_study.md"
    md.write_text("\n".join(markdown(summary, params, training, cmp)) + "\n", encoding="utf-8")
    return md


def headline(found: Mapping[str, Any], brother: list[dict[str, Any]], trainings: int,
             study: Mapping[str, Any]) -> str:
    """One sentence for the README's results block."""
    minutes = sum(r["seconds"] for r in study.get("runs", [])) / 60
    parts = [f"CPU scale study ({trainings} trainings, {minutes:.0f} min on {study.get('cpus', '?')} cores): "
             f"plateau (finding 1) {found['plateau']['verdict'].split(':')[0]}"]
    for key, label in (("hard_negatives", "hard negatives"), ("task_over_language_diversity", "task > language")):
        c = found.get(key)
        parts.append(f"{label} {format_diff(c)} {c['verdict'] if c else 'not run'}")
    for r in brother:
        if r["fraction"] is not None:
            parts.append(f"{LABELS.get(r['task'], r['task'])}: the top point closes {_fraction(r)} of the "
                         "e5-small->e5-base gap")
    return "; ".join(parts)


def markdown(summary: Mapping[str, Any], params: Any, training: Mapping[str, Any], cmp: Comparer) -> list[str]:
    """The page (see the module docstring), its sections in reading order: longer than 80 lines because the page
    reads top to bottom here, and split into functions it would not."""
    found, curve, generated = summary["findings"], summary["curve"], summary["generated"]
    m = 100 * cmp.margin
    rows_top = training.get(curve[-1]["model"], {}).get("rows", "?") if curve else "?"
    lines = [
        "# CPU scale study: the findings at the largest scale a 2-core CPU affords",
        "",
        "Generated by `make scale-study` (`python -m retrofit.study`: `profiles/cpu-scale.yaml` in a copy of the "
        "repository, then this page from its evaluations); the default's outputs are untouched. Every difference is "
        "on held-out XQuAD's primary metric (nDCG@10 x100, mean of mono and cross), with a 95% interval that carries "
        "seed noise and question noise where both arms have 3 seeds (the noise column), and a 90% interval for TOST "
        f"against the equivalence margin +-{m:.2f} declared in `params.yaml` before the run "
        "(`plot.equivalence_margin`).",
        "",
        "## Plan and cost",
        "",
        f"- **Wall time:** {summary['wall_seconds'] / 60:.1f} min for {summary['trainings']} trainings and their "
        "evaluations, over the runs of `make scale-study` that did the work: " + "; ".join(
            f"{r['seconds'] / 60:.1f} min from {r['started']}" + (f" ({r['note']})" if r.get("note") else "")
            for r in summary["runs"]) + ".",
        f"- **Data:** all English task data that dedupe keeps (six datasets) plus human XQuAD questions "
        f"per language at {', '.join(str(n) for n in summary['points'])} (799 = every training-pool question); the "
        f"top point trains on {rows_top} rows.",
        f"- **Compute:** every training runs {summary['max_steps']} steps at batch {params.train.batch_size} "
        f"({summary['max_steps'] * params.train.batch_size} rows seen): equal steps, so the curve asks what a larger "
        "pool of multilingual data is worth at fixed compute. One pass over the top point's rows would be about "
        f"{round(rows_top / params.train.batch_size) if isinstance(rows_top, int) else '?'} steps a training; "
        "`profiles/cpu-scale.yaml` gives the arithmetic and what was cut.",
        f"- **Layers:** the top {params.train.trainable_layers} of 12 train (the default's choice; measured cheaper "
        f"per step, and the evaluation reuses the frozen trunk), learning rate {params.train.learning_rate:g} "
        "(the default's sweep, `reports/recipe_sweep.md`).",
        "- **Human questions, not generated ones.** The plateau curve uses XQuAD's human questions as the stand-in "
        "for generated queries: generating 799 per language on 2 cores would take about 9 hours. The generated "
        "curve goes as far as the default's generator affords (24 per language), beside the human twins of exactly "
        "its rows: their difference is the generator's cost at that size.",
        "",
        "![curves](scale_study/curves.png)",
        "",
        "## Finding 1: the plateau curve (human questions)",
        "",
        f"| examples per language | seeds | primary | gain over {curve[0]['model'] if curve else '-'} [95%] | "
        "step from the point before [95%] | step verdict |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in curve:
        step = r["step"]
        lines.append(f"| {r['n']} | {len(r['seeds'])} | {100 * r['score']:.2f} | {format_diff(r['gain'])} | "
                     f"{format_diff(step)} | {step['verdict'] if step else '-'} |")
    if generated:
        lines += ["", "The generated-query curve, one seed a point (query noise only):", "",
                  "| examples per language | generated: gain [95%] | human twins: gain [95%] | generator's cost "
                  "(twins - generated) [95%] |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['n']} | {format_diff(r['gain'])} | {format_diff(r['oracle_gain'])} | "
                  f"{format_diff(r['cost'])} |" for r in generated]
    lines += ["", f"**Plateau verdict:** {found['plateau']['verdict']}.", "",
              "## The findings", "", "| finding | Δ primary [95%] | 90% interval (TOST) | noise | verdict |",
              "|---|---:|---:|---|---|"]
    lines += [_row(label, found.get(key)) for key, label in FINDING_LABELS.items()]
    lines += ["", "![findings](scale_study/findings.png)", "",
              "## Beside the published big brother", "",
              f"The study's top point (`{curve[-1]['model'] if curve else '-'}`, chosen before the run, not by its "
              "score, with its 3 seeds) against the base measured here, beside the published multilingual-e5-small "
              "(118M, the base) and multilingual-e5-base (278M). The fraction of the small->base gap closed is the "
              "measured difference over the published gap, so its interval is the difference's interval over the "
              "same constant. Published scores: the MTEB results repository (`retrofit.eval.official`); Tatoeba's "
              "gap is taken under one protocol (mteb 1.12.75 for both models: e5-base has no later run), while the "
              "difference is measured under the newer protocol of the e5-small scores the instrument check uses.", "",
              "| task | e5-small published | e5-base published | gap | base here | top point here | Δ [95%] | "
              "gap closed [95%] |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["big_brother"]:
        lines.append(f"| {LABELS.get(r['task'], r['task'])} | {r['published_small']:.2f} | {r['published_base']:.2f} "
                     f"| {r['published_gap']:+.2f} | {r['base_here']:.2f} | {r['best_here']:.2f} | "
                     f"{format_diff(r['diff'])} | {_fraction(r)} |")
    if summary["missing"]:
        lines += ["", "**Not evaluated yet** (the study was cut short; rerun `make scale-study` to resume): "
                  + ", ".join(f"`{m}`" for m in summary["missing"]) + "."]
    else:
        lines += ["", "Every model and family, with the plot stage's tables: "
                  "[scale_study/RESULTS.md](scale_study/RESULTS.md)."]
    lines += ["", f"Headline (the README's line): {summary['headline']}."]
    return lines


