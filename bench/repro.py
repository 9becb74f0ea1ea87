"""Wall time of a clean ``dvc repro``, stage by stage.

Runs every stage of the pipeline once, in DVC's topological order, with ``dvc repro --single-item --force``, and
times each. Writes ``reports/timings.json`` and ``reports/timings.md``. Run it on an idle machine: it measures
this machine, not the code alone.

Usage::

    python bench/repro.py            # every stage
    python bench/repro.py fetch prepare   # only these
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def stage_order() -> list[str]:
    """Stage names in execution order, as a forced ``dvc repro --dry`` lists them."""
    dry = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--dry", "--force"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage '")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="*", help="stages to time (default: all, in order)")
    ap.add_argument("--out", default="reports/timings", help="output path without extension")
    ap.add_argument("--note", default="", help="a line on the conditions of the measurement, kept with the numbers")
    args = ap.parse_args()
    stages = args.stages or stage_order()
    rows = []
    total = 0.0
    for name in stages:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", "--force", name])
        dt = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(f"stage {name} failed (exit {res.returncode})")
        total += dt
        rows.append({"stage": name, "seconds": round(dt, 1)})
        print(f"{name}: {dt:.1f} s", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "stages": rows,
        "total_seconds": round(total, 1),
        "note": args.note,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Wall time of a clean `dvc repro`",
        "",
        f"Measured by `bench/repro.py` on {report['machine']['cpus']} CPUs ({report['machine']['platform']}).",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {r['stage']} | {r['seconds']} |" for r in rows],
        f"| **total** | **{report['total_seconds']}** |",
        "",
        *([f"Conditions: {args.note}", ""] if args.note else []),
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
