"""Stage ``plot``: the fan-in of every evaluation into tidy CSVs, figures and ``reports/RESULTS.md``.

Depends on the whole ``reports/eval`` directory; writes ``reports/results/`` (``scores.csv``, the plot CSVs that
``dvc plots show`` draws, ``figures/*.png``, ``findings.json``) and ``reports/RESULTS.md`` (with an MMTEB table
beside the published anchors when the paper-scale profile evaluated on MMTEB).
"""

from pathlib import Path

from retrofit import cli
from retrofit.paper import ANCHORS
from retrofit.report import build_report, load_mmteb, load_reports, mmteb_markdown
from retrofit.runtime import atomic_dir


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    names = ["base", *(f"scale_{n}" for n in sorted(params.scale.per_language)), *params.runs]
    reports = load_reports(Path("reports/eval"), names)
    missing = sorted(set(names) - set(reports))
    if missing:
        raise FileNotFoundError(
            f"no XQuAD evaluation report for {missing}; run their evaluate stages first (the findings are drawn "
            "from XQuAD, so evaluate.benchmarks must include xquad)"
        )
    mmteb = mmteb_markdown(load_mmteb(Path("reports/eval"), names), ANCHORS)
    with atomic_dir("reports/results") as out:
        summary = build_report(reports, params.scale.per_language, out, Path("reports/RESULTS.md"), mmteb)
    for name, f in summary["findings"].items():
        print(f"plot: {name}: {f['verdict']}")


if __name__ == "__main__":
    cli.run(main, expected=(FileNotFoundError,))
