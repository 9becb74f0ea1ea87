"""Stage ``plot``: the fan-in of every evaluation into intervals, verdicts, tidy CSVs, figures and ``RESULTS.md``.

Depends on the whole ``reports/eval`` directory, each trained model's ``reports/train/<model>/info.json`` (what it saw
in training) and the mine stage's report (the teacher scores of positives, mined and random negatives); writes
``reports/results/`` (``scores.csv``, ``comparisons.csv``, the plot CSVs that ``dvc plots show`` draws,
``figures/*.png``, ``models.json``, ``findings.json``, ``training.json``) and ``reports/RESULTS.md`` (with an MMTEB
table beside the published anchors when the paper-scale profile ran MMTEB).
"""

import json
from pathlib import Path

from retrofit import cli
from retrofit.io import atomic_dir
from retrofit.report.build import build_report
from retrofit.report.evaluations import load_evaluations, load_mmteb, load_training
from retrofit.report.markdown import ANCHORS, mining_markdown, mmteb_markdown


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    names = ["base", *(f"scale_{n}" for n in sorted(params.scale.per_language)), *params.runs]
    evals = load_evaluations(Path("reports/eval"), names)
    mmteb = mmteb_markdown(load_mmteb(Path("reports/eval"), names), ANCHORS)
    mined = mining_markdown(json.loads(Path("data/mined/report.json").read_text(encoding="utf-8")))
    with atomic_dir("reports/results") as out:
        summary = build_report(
            evals, params.scale.per_language, params.plot.seed_runs, out, Path("reports/RESULTS.md"),
            resamples=params.plot.bootstrap_resamples, seed=params.plot.bootstrap_seed,
            extra_sections=mined + mmteb, arm_seeds=params.plot.arm_seeds, margin=params.plot.equivalence_margin,
            training=load_training(Path("reports/train"), names),
        )
    for name, f in summary["findings"].items():
        print(f"plot: {name}: {f['verdict'] if f else 'not run'}")


if __name__ == "__main__":
    cli.run(main)
