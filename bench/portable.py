"""Does the default pipeline pick fp32 by itself on a CPU without native bf16, and what does each choice cost?
(issue 13, item 1)

Runs the default ``generate`` stage and a short ``train`` stage as ``dvc repro`` would (``python stages/<stage>.py``
in a scratch copy of the workspace: ``params.yaml``, ``data/prepared``, ``data/mined``, ``models/base``), twice:
on this CPU as it is, and with ``RETROFIT_CPU_BF16=0``, which makes ``retrofit.runtime`` treat it as a CPU without
native bf16 (an AVX2-only machine). Both runs keep the params' ``auto`` values; each gets its own empty cache
(no cached LLM response, embedding or checkpoint), so the generate stage really generates. The bench reads each
stage's own record of what it chose (``runtime`` in ``reports/generate/ledger.json`` and
``reports/train/<name>/info.json``) and times it. Writes ``reports/bench/portable.{json,md}``; changes no pipeline
output. Run it on an idle machine after ``dvc repro`` (it needs ``data/prepared``, ``data/mined`` and
``models/base``).

Usage::

    python bench/portable.py                 # the default generate stage, and 5 training steps
    python bench/portable.py --steps 10 --skip-generate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"native": {}, "no native bf16": {"RETROFIT_CPU_BF16": "0"}}


def scratch(root: Path) -> Path:
    """A workspace with the inputs of generate and train, and links to the stage scripts."""
    ws = root / "ws"
    ws.mkdir()
    (ws / "stages").symlink_to(Path("stages").resolve())
    shutil.copy("params.yaml", ws / "params.yaml")
    for path in ("data/prepared", "data/mined", "models/base"):
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).symlink_to(Path(path).resolve())
    return ws


def run_stage(ws: Path, stage: str, args: list[str], env: dict[str, str]) -> float:
    """Run one stage script in ``ws``; returns its wall seconds (raises on failure)."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, f"stages/{stage}.py", *args], cwd=ws, env={**os.environ, **env},
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{stage} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="training steps per run")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/portable"))
    args = ap.parse_args()
    results = {}
    for mode, env in MODES.items():
        with tempfile.TemporaryDirectory() as tmp:
            ws = scratch(Path(tmp))
            cache = ["--set", f"base.cache_dir={Path(tmp) / 'cache'}"]
            row: dict = {"env": env}
            if not args.skip_generate:
                row["generate_s"] = round(run_stage(ws, "generate", cache, env), 1)
                ledger = json.loads((ws / "reports/generate/ledger.json").read_text())
                row["generate_runtime"] = ledger["runtime"]
                made = json.loads((ws / "data/generated/metrics.json").read_text())
                row["generate_requests"] = made["requests"]
                row["generator"] = f"{made['generator']['model']} ({made['generator'].get('runtime', 'transformers')})"
                row["generate_examples"] = made["examples"]
            train = ["--name", "bench", *cache, f"train.max_steps={args.steps}", f"train.checkpoint_every={args.steps}"]
            row["train_s"] = round(run_stage(ws, "train", train, env), 1)
            info = json.loads((ws / "reports/train/bench/info.json").read_text())
            live = json.loads((ws / "reports/train/bench/live/metrics.json").read_text())
            row["train_runtime"] = info["runtime"]
            row["train_steps"] = info["steps"]
            row["train_s_per_step"] = round(live["train"]["runtime"] / info["steps"], 2)
            results[mode] = row
            print(mode, json.dumps(row))
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor()}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def cell(row: dict, key: str) -> str:
        return str(row.get(key, "-"))

    lines = [
        "# Portable CPU defaults (bench/portable.py)", "",
        (f"Machine: {platform.platform()}. Each row runs the default stages with `auto` params; `no native bf16` sets "
         "`RETROFIT_CPU_BF16=0`, standing in for an AVX2-only CPU. `chose` is what the stage recorded itself."), "",
        ("| CPU as seen | generator | encoder: chose | generate s | requests | examples | train: chose | s/step | "
         "train stage s |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in results.items():
        gen = row.get("generate_runtime", {})
        tr = row["train_runtime"]
        chose_gen = f"{'bf16' if gen.get('bf16_inference') else 'fp32'}, {gen.get('threads')} threads" if gen else "-"
        chose_tr = f"{'bf16' if tr['train_bf16'] else 'fp32'}, {tr['threads']} threads ({tr['bf16_reason']})"
        lines.append(f"| {mode} | {cell(row, 'generator')} | {chose_gen} | {cell(row, 'generate_s')} | "
                     f"{cell(row, 'generate_requests')} | {cell(row, 'generate_examples')} | {chose_tr} | "
                     f"{row['train_s_per_step']} | {row['train_s']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
