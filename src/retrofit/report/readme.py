"""The README's results block, regenerated from the plot stage's ``models.json`` and ``findings.json``."""

from __future__ import annotations

import json
from pathlib import Path

from retrofit.errors import InputError
from retrofit.report.evaluations import LABELS, OFFICIAL, XQUAD_METRICS
from retrofit.report.markdown import MULTILINGUAL_SOURCES, format_diff, pct

README_START, README_END = "<!-- results:start (python -m retrofit.report readme) -->", "<!-- results:end -->"


def readme_table(results_dir: Path) -> str:
    """The README's results block, from the plot stage's ``models.json`` and ``findings.json``.

    Returns:
        Markdown: every model's scores (x100) with its primary-metric difference from the base model and interval,
        then the seed sd and each finding's verdict.
    """
    models = json.loads((Path(results_dir) / "models.json").read_text(encoding="utf-8"))
    summary = json.loads((Path(results_dir) / "findings.json").read_text(encoding="utf-8"))
    cols = [*XQUAD_METRICS, *OFFICIAL]
    lines = ["| model | " + " | ".join(LABELS.get(c, c) for c in cols) + " | primary Δ vs base [95%] |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for name, scores in models.items():
        vs = summary["versus_base"].get(name, {}).get("primary")
        lines.append(f"| `{name}` | " + " | ".join(pct(scores.get(c)) for c in cols) + f" | {format_diff(vs)} |")
    sd = summary["seed_sd"].get("primary")
    lines += ["", f"Seed sd of the primary metric over {', '.join(f'`{m}`' for m in summary['seed_models'])}: "
              f"{pct(sd)}. A finding is resolved when its 95% interval excludes zero; the interval carries seed noise "
              "only where both arms have 2 or more seeds (the noise column).", "",
              "| finding | Δ primary [95%] | noise | verdict |", "|---|---:|---|---|"]
    names = {"gain_from_synthetic": "1. synthetic data helps", "plateau_last_step": "1. plateau (last step)",
             "hard_negatives": "2. hard negatives are essential",
             "task_over_language_diversity": "3. task diversity beats language diversity"}
    for key, label in names.items():
        f = summary["findings"].get(key)
        lines.append(f"| {label} | {format_diff(f)} | {f['noise'] if f else '-'} | {f['verdict'] if f else 'not run'} |")
    lines.append(f"| 1. plateau (overall) | | | {summary['findings']['plateau']['verdict']} |")
    study = Path(results_dir).parent / "scale_study" / "summary.json"  # make scale-study (retrofit.report.scale_study)
    if study.is_file():
        headline = json.loads(study.read_text(encoding="utf-8"))["headline"]
        lines += ["", f"{headline} ([reports/scale_study.md](reports/scale_study.md))."]
    cost = summary.get("cost") or []
    if cost:
        cells = list(dict.fromkeys(r["cell"] for r in cost))
        lines += ["", "The cost of retrofitting (each retrofit minus the base, x100, 95% interval and verdict; RESULTS.md "
                  "names the subsets):", "", "| model | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
        for model in dict.fromkeys(r["model"] for r in cost):
            got = {r["cell"]: r for r in cost if r["model"] == model}
            seeds = next(iter(got.values()))["seeds"]
            lines.append(f"| `{model}` ({seeds} seed{'s' if seeds > 1 else ''}) | " + " | ".join(
                f"{format_diff(got[c])} {got[c]['verdict']}" if c in got else "-" for c in cells) + " |")
    training = Path(results_dir) / "training.json"
    trained = json.loads(training.read_text(encoding="utf-8")) if training.is_file() else []
    if trained:
        lines += ["", "What each model saw in training (English task data is English only; no row overlaps any "
                  "evaluation text):", "", "| model | English task datasets (languages) | multilingual rows (languages) |",
                  "|---|---|---|"]
        for r in trained:
            multi = "; ".join(f"{label}: {' '.join(r[label.replace(' ', '_')])}"
                              for label in MULTILINGUAL_SOURCES.values() if r.get(label.replace(" ", "_")))
            english = f"{len(r['english_datasets'])} ({' '.join(r['english_languages']) or '-'})"
            lines.append(f"| `{r['model']}` | {english} | {multi or '-'} |")
    return "\n".join(lines)


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` with :func:`readme_table`.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: The README has no such block.
    """
    text = Path(readme).read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise InputError(f"{readme}: no results block; add the lines {README_START!r} and {README_END!r}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{readme_table(results_dir)}\n{README_END}{tail}"
    Path(readme).write_text(new, encoding="utf-8")
    return new != text
