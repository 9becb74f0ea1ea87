"""How the results moved between two revisions: every finding and every model's scores, old beside new.

Reads ``reports/results/findings.json`` and ``models.json`` at two git revisions (or a revision and the workspace) and
prints a markdown report: each finding's difference, interval and verdict before and after, with every verdict that
changed called out, then each model's scores (x100) before and after. A change to the training data or the recipe
must say how the results moved, and no verdict may change silently: this is that account.

Usage::

    python tools/results_diff.py HEAD~1                 # that revision against the workspace
    python tools/results_diff.py v1 v2 --out notes.md   # two revisions
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = "reports/results"
FINDINGS = ("gain_from_synthetic", "plateau_last_step", "hard_negatives", "task_over_language_diversity",
            "generated_vs_oracle")


def read(rev: str | None, name: str) -> dict[str, Any]:
    """``reports/results/<name>`` at git revision ``rev`` (``None``: the workspace), from DVC's cache or remote."""
    path = f"{RESULTS}/{name}"
    if rev is None:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    import dvc.api

    try:
        return json.loads(dvc.api.read(path, rev=rev, encoding="utf-8"))
    except Exception as exc:  # an unknown revision, or its outputs neither cached here nor on a remote
        sys.exit(f"{rev}:{path}: {type(exc).__name__}: {exc} (run `dvc pull` for that revision first)")


def _diff(f: dict[str, Any] | None) -> str:
    return "-" if not f else f"{100 * f['delta']:+.2f} [{100 * f['lo']:+.2f}, {100 * f['hi']:+.2f}]"


def report(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], labels: tuple[str, str]) -> str:
    """Markdown: findings old and new (verdict changes marked), then every model's scores old and new.

    Args:
        old, new: ``{"findings": findings.json, "models": models.json}`` of each side.
        labels: What to call the two sides.
    """
    a, b = labels
    lines = [f"# Results: {a} -> {b}", "", "## Findings (primary metric, x100)", "",
             f"| finding | {a} | {b} | verdict {a} | verdict {b} |", "|---|---:|---:|---|---|"]
    changed = []
    for key in FINDINGS:
        fa, fb = old["findings"]["findings"].get(key), new["findings"]["findings"].get(key)
        va, vb = (f["verdict"] if f else "not run" for f in (fa, fb))
        mark = " **(changed)**" if va != vb else ""
        changed += [key] if mark else []
        lines.append(f"| {key} | {_diff(fa)} | {_diff(fb)} | {va} | {vb}{mark} |")
    pa, pb = old["findings"]["findings"]["plateau"]["verdict"], new["findings"]["findings"]["plateau"]["verdict"]
    lines += ["", f"Plateau, {a}: {pa}", "", f"Plateau, {b}: {pb}", ""]
    lines += [f"**Verdicts that changed: {', '.join(changed)}.**" if changed else "No verdict changed.", ""]
    metrics = sorted({m for side in (old, new) for scores in side["models"].values() for m in scores},
                     key=lambda m: (m != "primary", m))
    lines += ["## Every model (x100)", "", "| model | metric | " + f"{a} | {b} | change |", "|---|---|---:|---:|---:|"]
    for model in sorted(set(old["models"]) | set(new["models"])):
        for metric in metrics:
            sa = old["models"].get(model, {}).get(metric)
            sb = new["models"].get(model, {}).get(metric)
            if sa is None and sb is None:
                continue
            change = f"{100 * (sb - sa):+.2f}" if sa is not None and sb is not None else "-"
            cells = ["-" if s is None else f"{100 * s:.2f}" for s in (sa, sb)]
            lines.append(f"| {model} | {metric} | {cells[0]} | {cells[1]} | {change} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="git revision of the earlier results")
    ap.add_argument("new", nargs="?", help="git revision of the later results (default: the workspace)")
    ap.add_argument("--out", type=Path, help="write the markdown here as well as to stdout")
    args = ap.parse_args()
    sides = [{"findings": read(rev, "findings.json"), "models": read(rev, "models.json")} for rev in (args.old, args.new)]
    text = report(sides[0], sides[1], (args.old, args.new or "workspace"))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
