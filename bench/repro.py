"""Wall time of a clean ``dvc repro``, stage by stage: the project's time budget in one place.

Runs every stage of the pipeline once, in DVC's topological order, with ``dvc repro --single-item --force``, and
times each. Writes ``reports/timings.json`` and ``reports/timings.md``: each stage's seconds and share of the
total, the CPU's flags, and every thread and dtype decision the stages recorded (``reports/generate/ledger.json``,
``reports/mine/work.json``, ``reports/train/*/info.json``, ``reports/eval/*/stage_timing.json``). Run it on an
idle machine with empty caches (a fresh clone): it measures this machine, not the code alone.

The budget: the full default ``dvc repro`` takes at most 45 minutes on 2 cores with ``RETROFIT_CPU_BF16=0``
(``RETROFIT_CPU_BF16=0 python bench/repro.py --out reports/timings_fp32``).

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
from typing import Any

BUDGET_S = 45 * 60  # the project's time budget for the full default, on 2 cores without native bf16


def stage_order() -> list[str]:
    """Stage names in execution order, as a forced ``dvc repro --dry`` lists them."""
    dry = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--dry", "--force"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage '")]


def stage_record(stage: str) -> dict[str, Any] | None:
    """The runtime record (threads, thread decisions, bf16, backend) that ``stage`` wrote about its own run."""
    name = stage.split("@", 1)[1] if "@" in stage else None
    paths = {"generate": ["reports/generate/ledger.json"], "mine": ["reports/mine/work.json"],
             "evaluate_base": ["reports/eval/base/stage_timing.json"]}
    if stage.startswith("train"):
        folder = f"scale_{name}" if stage.startswith("train@") else name
        paths[stage] = [f"reports/train/{folder}/info.json"]
    elif stage.startswith("evaluate"):
        folder = f"scale_{name}" if stage.startswith("evaluate@") else name
        paths.setdefault(stage, [f"reports/eval/{folder}/stage_timing.json"])
    for path in paths.get(stage, []):
        if Path(path).is_file():
            data = json.loads(Path(path).read_text())
            run = data.get("runtime") or {}
            decisions = run.get("thread_decisions", [])
            return {"threads": [d["threads"] for d in decisions] or run.get("threads"),
                    "busy": [{"at": d["at"], "busy_cores": d["busy_cores"]} for d in decisions
                             if (d.get("busy_cores") or 0) >= 0.5],
                    "bf16_inference": run.get("bf16_inference"), "train_bf16": run.get("train_bf16"),
                    "bf16_reason": run.get("bf16_reason"), "fp32_linear": run.get("fp32_linear"),
                    "backend": data.get("backend"),
                    "trunk_cache": data.get("trunk_cache") or data.get("frozen_trunk")}
    return None


def cpu_flags() -> str:
    """The vector-extension flags of this CPU (what decides bf16 and the kernels)."""
    from retrofit.runtime import _cpu_flags

    return " ".join(sorted(f for f in _cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse4"))))


def markdown(report: dict[str, Any]) -> str:
    """``reports/timings.md``."""
    total = report["total_seconds"]
    partial = report.get("partial")
    budget = (f"Total of these {len(report['stages'])} stages only: **{total:.0f} s ({total / 60:.1f} min)**, not a "
              f"full run; the project's budget ({BUDGET_S // 60} min on 2 cores with `RETROFIT_CPU_BF16=0`) is for the "
              "full default." if partial else
              f"Total: **{total:.0f} s ({total / 60:.1f} min)**; the project's budget is {BUDGET_S // 60} min on 2 "
              "cores with `RETROFIT_CPU_BF16=0`.")
    lines = [
        "# Wall time of some stages of `dvc repro`" if partial else "# Wall time of a clean `dvc repro`",
        "",
        f"Measured by `bench/repro.py` on {report['machine']['cpus']} CPUs ({report['machine']['platform']}).",
        f"CPU flags: {report['machine']['flags']}. `RETROFIT_CPU_BF16`: {report['machine']['bf16_env']}.",
        "",
        budget,
        "",
        "| stage | seconds | share | threads (decisions) | bf16 inference / training | fp32 linear | encoder "
        "| trunk cache hits (evaluate: batches; train: texts) |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    if "full_run_total_seconds" in report:
        full = report["full_run_total_seconds"]
        reason = report.get("retimed_reason") or ("were disturbed there and measured again alone, with empty caches, "
                                                  "on the idle machine (their outputs identical)")
        lines[6:6] = ["", f"The full run itself took {full:.0f} s ({full / 60:.1f} min); the rows marked *re-timed* "
                      f"{reason}, and the total above uses those."]
    for r in report["stages"]:
        rec = r.get("record") or {}
        trunk = rec.get("trunk_cache") or {}
        hits = f"{trunk.get('hits')}/{(trunk.get('hits') or 0) + (trunk.get('misses') or 0)}" if trunk else "-"
        bf16 = "-" if not rec else f"{rec.get('bf16_inference')} / {rec.get('train_bf16')} ({rec.get('bf16_reason')})"
        seconds = f"{r['seconds']} (re-timed; full run {r['full_run_seconds']})" if r.get("retimed") else r["seconds"]
        lines.append(f"| {r['stage']} | {seconds} | {100 * r['seconds'] / total:.1f}% | "
                     f"{rec.get('threads', '-') if rec else '-'} | {bf16} | {rec.get('fp32_linear') or '-'} | "
                     f"{rec.get('backend') or '-'} | {hits} |")
    lines += [f"| **total** | **{total}** | 100% | | | | | |", ""]
    busy = [f"{r['stage']} ({d['at']}: {d['busy_cores']} busy core(s))" for r in report["stages"]
            for d in (r.get("record") or {}).get("busy", [])]
    if busy:
        lines += ["Another process held a core when these thread decisions were made (the run was not idle there): "
                  + "; ".join(busy) + ".", ""]
    if report["note"]:
        lines += [f"Conditions: {report['note']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="*", help="stages to time (default: all, in order)")
    ap.add_argument("--out", default="reports/timings", help="output path without extension")
    ap.add_argument("--note", default="", help="a line on the conditions of the measurement, kept with the numbers")
    ap.add_argument("--render", action="store_true",
                    help="run nothing: re-read every stage's record beside --out's json and rewrite both files")
    ap.add_argument("--retimed", default=None,
                    help="with --render: a json of this script holding stages re-timed alone (on an idle machine) "
                         "after the full run was disturbed; they replace the full run's rows, which are kept beside")
    ap.add_argument("--retimed-reason", default=None,
                    help="with --retimed: why those stages were measured again (default: the full run was disturbed)")
    args = ap.parse_args()
    if args.render:
        report = json.loads(Path(f"{args.out}.json").read_text())
        retimed = {r["stage"]: r for r in json.loads(Path(args.retimed).read_text())["stages"]} if args.retimed else {}
        for row in report["stages"]:
            if row["stage"] in retimed and "full_run_seconds" not in row:
                row["full_run_seconds"], row["seconds"] = row["seconds"], retimed[row["stage"]]["seconds"]
                row["retimed"] = True
            row["record"] = stage_record(row["stage"])
        if retimed:
            report.setdefault("full_run_total_seconds", report["total_seconds"])
            if args.retimed_reason:
                report["retimed_reason"] = args.retimed_reason
            report["total_seconds"] = round(sum(r["seconds"] for r in report["stages"]), 1)
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
        Path(f"{args.out}.md").write_text(markdown(report))
        return
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
        rows.append({"stage": name, "seconds": round(dt, 1), "record": stage_record(name)})
        print(f"{name}: {dt:.1f} s", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "flags": cpu_flags(), "bf16_env": os.environ.get("RETROFIT_CPU_BF16", "unset")},
        "stages": rows,
        "total_seconds": round(total, 1),
        "partial": bool(args.stages),
        "note": args.note,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
