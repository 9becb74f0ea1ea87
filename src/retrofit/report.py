"""The fan-in of every evaluation: tidy tables, figures and ``reports/RESULTS.md``.

Inputs are the evaluation reports ``reports/eval/<model>/metrics.json`` (schema in :mod:`retrofit.evaluation`)
of the base model, of every data-scale point (``scale_<n>``) and of the named runs. Runs with these names have a
role in the paper's findings (``params.yaml`` defines them):

- ``seed2``: the top scale point again with another training seed; ``|seed2 - top|`` is the run-to-run spread
  reported next to every difference;
- ``nohard``: the top scale point without mined hard negatives (in-batch negatives only);
- ``div_lang`` and ``div_task``: the same example budget spent on many languages with one task type, or on many
  task types (the English datasets plus several synthetic ones) in fewer languages.

Outputs (``out_dir``; every file is rewritten):

- ``scores.csv``: one tidy row per (model, family, language): ``model, scale, family, language, ndcg_at_10,
  recall_at_10, mrr_at_10``; ``language`` is ``all`` for the family mean and the family is ``headline`` for the
  headline; ``scale`` is the synthetic examples per language for sweep models, empty otherwise;
- ``scale_<family>.csv`` (``headline``, ``mono``, ``cross``, ``pooled``): the plateau curve, for DVC plots;
- ``ablation.csv`` and ``diversity.csv``: the bar comparisons (``label`` = family and variant), for DVC plots;
- ``models.json``: ``{model: {family: nDCG@10}}`` for every model (a DVC metric, so ``dvc exp show`` and
  ``dvc metrics diff`` compare every model of two runs);
- ``figures/*.png``: the same as matplotlib figures;
- ``results_md`` (``reports/RESULTS.md``): every table, the base model against each retrofitted model, and a short
  statement per finding; with paper-scale MMTEB reports (``reports/eval/<model>/mmteb/metrics.json``, :func:`load_mmteb`) also their
  table beside the published anchors.

A finding counts as reproduced only when its difference exceeds the seed spread; otherwise it is reported as not
reproduced (the difference is within noise) or reversed (it exceeds the spread the other way).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FAMILIES = ("headline", "mono", "cross", "pooled")
METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10")
ROLES = ("seed2", "nohard", "div_lang", "div_task")


def load_reports(eval_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{model: metrics.json}`` for every name whose report exists (the caller decides what a missing one means)."""
    out = {}
    for name in names:
        path = eval_dir / name / "metrics.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def load_mmteb(eval_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{model: mmteb/metrics.json}`` for every name evaluated on MMTEB (``evaluate.benchmarks`` with ``mmteb``)."""
    out = {}
    for name in names:
        path = eval_dir / name / "mmteb" / "metrics.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def mmteb_markdown(mmteb: Mapping[str, Mapping[str, Any]], anchors: Mapping[str, float]) -> list[str]:
    """The RESULTS.md section for MMTEB(Multilingual) retrieval: every model's mean main score beside the anchors.

    The leaderboard's Retrieval column (and the paper's 60.56) is the mean *main score*; a model with missing tasks
    is marked incomplete, since its mean is not comparable.
    """
    if not mmteb:
        return []
    lines = ["## MMTEB(Multilingual) retrieval (paper scale)", "",
             "Mean main score x100 over the benchmark's Retrieval tasks (nDCG@10 for 16 of the 18), as the paper and",
             "the MMTEB leaderboard report it; published anchors in italics.", "",
             "| model | mean main score | mean nDCG@10 | tasks | complete |", "|---|---:|---:|---:|---|"]
    for name, m in mmteb.items():
        h = m.get("headline", {})
        lines.append(f"| {name} | {_pct(h.get('main_score'))} | {_pct(h.get('ndcg_at_10'))} | "
                     f"{m.get('tasks_done')}/{m.get('tasks_expected')} | {'yes' if m.get('complete') else 'no'} |")
    lines += [f"| *{k}* | *{v:.2f}* | | 18/18 | published |" for k, v in anchors.items()]
    return [*lines, ""]


def _family_langs(report: Mapping[str, Any], family: str) -> dict[str, dict[str, float]]:
    """Per-language scores of one family (cross averages a language's X->en and en->X subsets)."""
    subsets = report["subsets"].get(family, {})
    by_lang: dict[str, list[dict[str, float]]] = {}
    for subset, scores in subsets.items():
        if family == "cross":
            a, b = subset.split("-")
            lang = a if b == "en" else b
        else:
            lang = subset
        by_lang.setdefault(lang, []).append(scores)
    return {
        lang: {m: sum(s[m] for s in rows) / len(rows) for m in METRICS} for lang, rows in sorted(by_lang.items())
    }


def tidy_rows(reports: Mapping[str, Mapping[str, Any]], scales: Mapping[str, int]) -> list[dict[str, Any]]:
    """The rows of ``scores.csv`` (see the module docstring)."""
    rows = []
    for model, rep in reports.items():
        scale = scales.get(model, "")
        rows.append({"model": model, "scale": scale, "family": "headline", "language": "all",
                     **{m: rep["headline"][m] for m in METRICS}})
        for fam in ("mono", "cross", "pooled"):
            if fam not in rep["families"]:
                continue
            rows.append({"model": model, "scale": scale, "family": fam, "language": "all",
                         **{m: rep["families"][fam][m] for m in METRICS}})
            for lang, scores in _family_langs(rep, fam).items():
                rows.append({"model": model, "scale": scale, "family": fam, "language": lang, **scores})
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k in fields})


def score(reports: Mapping[str, Mapping[str, Any]], model: str, family: str = "headline") -> float | None:
    """nDCG@10 of ``model`` for ``family`` (``headline`` or a family name), ``None`` if absent."""
    rep = reports.get(model)
    if rep is None:
        return None
    block = rep["headline"] if family == "headline" else rep["families"].get(family)
    return None if block is None else float(block["ndcg_at_10"])


def verdict(delta: float | None, spread: float | None) -> str:
    """``reproduced`` / ``reversed`` / ``not reproduced (within the seed spread)`` for an expected-positive delta."""
    if delta is None:
        return "not run"
    if spread is None:
        return "no seed spread available (run `seed2`)"
    if delta > spread:
        return "reproduced"
    if delta < -spread:
        return "reversed"
    return "not reproduced (within the seed spread)"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def build_report(
    reports: Mapping[str, Mapping[str, Any]], scale_points: list[int], out_dir: Path, results_md: Path,
    extra_sections: list[str] | None = None,
) -> dict[str, Any]:
    """Write every output listed in the module docstring and return the findings.

    Args:
        reports: ``{model: metrics.json}``, from :func:`load_reports`.
        scale_points: ``scale.per_language``; sweep models are named ``scale_<n>``.
        out_dir: Output directory for tables and figures.
        results_md: Where ``RESULTS.md`` goes (``reports/RESULTS.md``, committed to git).
        extra_sections: Markdown lines appended to ``RESULTS.md`` (the MMTEB table, :func:`mmteb_markdown`).

    Returns:
        ``{"spread": ..., "findings": {name: {"delta": ..., "verdict": ...}}}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    points = sorted(scale_points)
    scales = {f"scale_{n}": n for n in points}
    rows = tidy_rows(reports, scales)
    fields = ["model", "scale", "family", "language", *METRICS]
    _write_csv(out_dir / "scores.csv", rows, fields)
    for fam in FAMILIES:
        curve = [r for r in rows if r["family"] == fam and r["language"] == "all" and r["model"] in scales]
        curve.sort(key=lambda r: r["scale"])
        _write_csv(out_dir / f"scale_{fam}.csv", curve, ["scale", *METRICS])

    per_model = {m: {fam: score(reports, m, fam) for fam in FAMILIES} for m in reports}
    (out_dir / "models.json").write_text(json.dumps(per_model, indent=2) + "\n", encoding="utf-8")

    top = f"scale_{points[-1]}"
    spread = {
        fam: (abs(score(reports, "seed2", fam) - score(reports, top, fam))
              if score(reports, "seed2", fam) is not None and score(reports, top, fam) is not None else None)
        for fam in FAMILIES
    }

    def diff(a: str, b: str, fam: str = "headline") -> float | None:
        x, y = score(reports, a, fam), score(reports, b, fam)
        return None if x is None or y is None else x - y

    ablation = [{"label": f"{fam}: {v}", "variant": v, "model": m, "family": fam,
                 "ndcg_at_10": score(reports, m, fam)}
                for v, m in (("hard negatives", top), ("in-batch only", "nohard"))
                for fam in FAMILIES if score(reports, m, fam) is not None]
    _write_csv(out_dir / "ablation.csv", ablation, ["label", "variant", "model", "family", "ndcg_at_10"])
    diversity = [{"label": f"{fam}: {v}", "variant": v, "model": m, "family": fam,
                  "ndcg_at_10": score(reports, m, fam)}
                 for v, m in (("(L) languages", "div_lang"), ("(T) tasks", "div_task"))
                 for fam in FAMILIES if score(reports, m, fam) is not None]
    _write_csv(out_dir / "diversity.csv", diversity, ["label", "variant", "model", "family", "ndcg_at_10"])

    findings = {
        "gain_from_synthetic": {"delta": diff(top, f"scale_{points[0]}")},
        "plateau_last_step": {"delta": diff(top, f"scale_{points[-2]}") if len(points) > 1 else None},
        "hard_negatives": {"delta": diff(top, "nohard")},
        "task_over_language_diversity": {"delta": diff("div_task", "div_lang")},
    }
    s = spread["headline"]
    for name, f in findings.items():
        f["verdict"] = verdict(f["delta"], s)
    # The plateau holds when synthetic data helps at all but the last step adds less than the spread.
    gain, last = findings["gain_from_synthetic"]["delta"], findings["plateau_last_step"]["delta"]
    if gain is None or last is None or s is None:
        plateau = "not run"
    elif gain < -s:
        plateau = "reversed: synthetic data lowered the score beyond the seed spread, so there is no curve to plateau"
    elif gain <= s:
        plateau = "not reproduced: synthetic data gave no gain beyond the seed spread"
    elif abs(last) <= s:
        plateau = "reproduced: gains stop within the seed spread at the largest points"
    else:
        plateau = "not reproduced: still rising at the largest point" if last > 0 else "reversed: falls at the top"
    findings["plateau"] = {"verdict": plateau}

    _figures(rows, ablation, diversity, points, out_dir / "figures")
    text = _markdown(reports, rows, points, spread, findings)
    results_md.write_text(text + ("\n".join(extra_sections) + "\n" if extra_sections else ""), encoding="utf-8")
    summary = {"spread": spread, "findings": findings}
    (out_dir / "findings.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _figures(rows, ablation, diversity, points, fig_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for fam, style in zip(FAMILIES, ("-o", "--s", "--^", "--d")):
        pts = sorted((r["scale"], r["ndcg_at_10"]) for r in rows
                     if r["family"] == fam and r["language"] == "all" and r["scale"] != "")
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, label=fam, lw=2 if fam == "headline" else 1)
    base = [r["ndcg_at_10"] for r in rows if r["model"] == "base" and r["family"] == "headline"]
    if base:
        ax.axhline(100 * base[0], color="grey", ls=":", lw=1.5, label="headline, base model")
    ax.set_xlabel("synthetic examples per language")
    ax.set_ylabel("nDCG@10 (held-out XQuAD)")
    ax.set_title("Data scale: gains from synthetic data")
    ax.set_xticks(points)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "scale.png", dpi=120)
    plt.close(fig)
    for name, data, title in (("ablation", ablation, "Hard negatives vs in-batch negatives only"),
                              ("diversity", diversity, "Task diversity (T) vs language diversity (L)")):
        if not data:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        variants = list(dict.fromkeys(r["variant"] for r in data))
        width = 0.8 / len(variants)
        for i, v in enumerate(variants):
            vals = {r["family"]: r["ndcg_at_10"] for r in data if r["variant"] == v}
            xs = [j + i * width for j in range(len(FAMILIES))]
            ax.bar(xs, [100 * vals.get(f, 0) for f in FAMILIES], width, label=v)
        ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(FAMILIES))], FAMILIES)
        ax.set_ylabel("nDCG@10 (held-out XQuAD)")
        ax.set_title(title)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(fig_dir / f"{name}.png", dpi=120)
        plt.close(fig)


def _markdown(reports, rows, points, spread, findings) -> str:
    top = f"scale_{points[-1]}"
    s = spread["headline"]
    lines = [
        "# Results on the embedded default",
        "",
        "Generated by the `plot` stage from `reports/eval/*/metrics.json`; do not edit by hand.",
        "All scores are nDCG@10 x100 on the held-out XQuAD articles (see README, Evaluation). The headline is the",
        "unweighted mean of the mono, cross-lingual and pooled family means.",
        "",
        f"Seed spread (|`seed2` - `{top}`|, headline): **{_pct(s)}** points; per family: "
        + ", ".join(f"{f} {_pct(spread[f])}" for f in FAMILIES[1:]) + ".",
        "A difference counts only when it exceeds this spread.",
        "",
        "## Findings",
        "",
        "| finding (paper) | here | difference | verdict |",
        "|---|---|---:|---|",
        f"| 1. gains plateau with more synthetic data | `{top}` vs `scale_{points[0]}`; last step "
        f"`scale_{points[-2] if len(points) > 1 else points[0]}` -> `{top}` | "
        f"{_signed(findings['gain_from_synthetic']['delta'])}; last step {_signed(findings['plateau_last_step']['delta'])} | "
        f"{findings['plateau']['verdict']} |",
        f"| 2. hard negatives are essential | `{top}` vs `nohard` | {_signed(findings['hard_negatives']['delta'])} | "
        f"{findings['hard_negatives']['verdict']} |",
        f"| 3. task diversity beats language diversity | `div_task` vs `div_lang` | "
        f"{_signed(findings['task_over_language_diversity']['delta'])} | "
        f"{findings['task_over_language_diversity']['verdict']} |",
        "",
        "## Every model",
        "",
        "| model | headline | mono | cross | pooled | Δ headline vs base |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = score(reports, "base")
    for m in reports:
        d = None if base is None or m == "base" else score(reports, m) - base
        lines.append(f"| {m} | " + " | ".join(_pct(score(reports, m, f)) for f in FAMILIES) + f" | {_signed(d)} |")
    lines += ["", "## Data-scale curve (headline and families)", "", "| synthetic / language | "
              + " | ".join(FAMILIES) + " |", "|---:|" + "---:|" * len(FAMILIES)]
    for n in points:
        lines.append(f"| {n} | " + " | ".join(_pct(score(reports, f'scale_{n}', f)) for f in FAMILIES) + " |")
    lines += ["", f"## Per language: `{top}` against the base model (Δ nDCG@10 x100)", "",
              "| language | mono | cross | pooled |", "|---|---:|---:|---:|"]
    per = {(r["model"], r["family"], r["language"]): r["ndcg_at_10"] for r in rows}
    langs = sorted({r["language"] for r in rows if r["language"] != "all"})
    for lang in langs:
        cells = []
        for fam in ("mono", "cross", "pooled"):
            a, b = per.get((top, fam, lang)), per.get(("base", fam, lang))
            cells.append(_signed(None if a is None or b is None else a - b))
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines += ["", "Figures: `reports/results/figures/scale.png`, `ablation.png`, `diversity.png`;"
              " interactive: `dvc plots show`.", ""]
    return "\n".join(lines)
