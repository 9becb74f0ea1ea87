"""Training speed of the embedded default: seconds per step and examples per second.

Trains the base model (``models/base``) for ``--steps`` steps on real pairs (``data/mined/train.jsonl`` if present,
else English pairs from ``data/prepared/english`` with random in-group negatives) in each configuration, with
sentence-transformers' trainer exactly as the ``train`` stage runs it, and reports the median step time after the
first (warm-up) step. Prints a table and writes ``reports/bench/train.json``.

Usage: ``python bench/train.py --steps 6 --configs bf16-top4-padded,bf16-top4 --threads 1``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from retrofit.config import TrainParams
from retrofit.io import read_jsonl
from retrofit.runtime import seed_everything, set_threads
from retrofit.train.trainer import train_model


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each reading."""

    def __init__(self, sync=None) -> None:
        self.times: list[float] = []
        self._t = 0.0
        self._sync = sync or (lambda: None)

    def on_step_begin(self, args, state, control, **kw):
        self._sync()
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self._sync()
        self.times.append(time.perf_counter() - self._t)


def load_rows(n: int) -> list[dict]:
    mined = Path("data/mined/train.jsonl")
    if mined.is_file():
        return read_jsonl(mined)[:n]
    rows = []
    for src in ("qed_nq", "fever_symmetric", "scitldr"):
        rows += [{**r, "negatives": []} for r in read_jsonl(Path("data/prepared/english") / f"{src}.jsonl")[: n // 3]]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", default="fp32,bf16",
                    help="any of fp32, bf16, bf16-top4 (top 4 layers trainable); a '-padded' suffix turns off "
                         "the padding-free forward (train.unpad)")
    ap.add_argument("--out", default="reports/bench/train.json")
    args = ap.parse_args()
    set_threads(args.threads)
    rows = load_rows(args.batch_size * (args.steps + 2))
    results = []
    for cfg in args.configs.split(","):
        seed_everything(0)
        params = TrainParams(
            max_steps=args.steps, batch_size=args.batch_size, max_seq_length=args.max_seq_length,
            bf16=cfg.startswith("bf16"), trainable_layers=4 if "top4" in cfg else None, unpad="padded" not in cfg,
            batch_groups="mixed", checkpoint_every=10_000, num_negatives=1,
        )
        timer = StepTimer()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            info = train_model(Path("models/base"), rows, params, Path(tmp) / "m", name=f"bench-{cfg}",
                               checkpoint_dir=Path(tmp) / "ckpt", live_dir=None, callbacks=[timer])
            total = time.perf_counter() - t0
        step = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
        results.append({
            "config": cfg, "threads": args.threads, "batch_size": args.batch_size, "steps": info["steps"],
            "median_s_per_step": round(step, 2), "examples_per_s": round(args.batch_size / step, 2),
            "total_s": round(total, 1), "trainable_parameters": info["parameters"]["trainable"],
        })
        print(results[-1], flush=True)
    print("\n| config | threads | s/step | examples/s | trainable params |\n|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['config']} | {r['threads']} | {r['median_s_per_step']} | {r['examples_per_s']} | "
              f"{r['trainable_parameters']:,} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
