"""How far is each heavy stage from what this CPU can do? A roofline per stage (issue 25).

Measures this machine's ceilings at the stages' thread count:

- the compute peak: a large fp32 matmul, a bf16 one where the CPU has bf16 natively (each the faster of torch's and
  OpenVINO's), and an int8 one (``torch._int_mm``), the ceiling of llama.cpp's quantised dot products;
- the memory bandwidth: a large copy (bytes read plus bytes written per second).

Then reads what the last ``dvc repro`` did (run it first, with empty caches for a clean measurement) and sets each
heavy stage's work against its time:

- **generate**: the LLM's prompt and answer tokens (``reports/generate/ledger.json``), at 2 x the parameters that
  run per token (the tied output projection only for answer tokens: llama.cpp computes logits for the last prompt
  token alone), plus the bytes of every weight read once per decoded token (the GGUF's tensors), plus the round
  trip's encoder work; decoding is bound by memory, prompts by int8 compute;
- **mine**, **evaluate**: the encoder work each counted (:mod:`retrofit.embed.work`) as floating-point operations
  (:func:`retrofit.embed.work.encoder_flops`), at the bf16 or fp32 peak the stage ran at;
- **train**: the forward work counted, plus the backward through the trainable top layers (2 x their forward).

The *ceiling time* is the work at the binding ceiling; the *fraction* is ceiling time over the stage's measured
wall time (``--timings``, default ``reports/timings.json``, which includes start-up). Writes
``reports/bench/roofline.json`` and the
generated page ``docs/performance.md``, with the generation's requests per accepted example by language beside
those of an earlier revision (``--before``).

Usage::

    python bench/repro.py && python bench/roofline.py --before 0775b2e
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.embed.work import encoder_flops
from retrofit.runtime import _cpu_flags, native_bf16


def _best_rate(fn: Any, work: float, repeats: int = 12) -> float:
    """``work`` per second of ``fn``, best of ``repeats`` timed calls after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return work / best


def _openvino_matmul_rate(n: int, threads: int, precision: str) -> float:
    """FLOP/s of an ``n x n`` matmul compiled by OpenVINO (the evaluation's fp32 runtime) at ``precision``."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([n, n], ov.Type.f32)
    w = ops.constant(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "INFERENCE_NUM_THREADS": threads}
    request = ov.Core().compile_model(ov.Model([ops.matmul(x, w, False, False)], [x]), "CPU", config)
    infer = request.create_infer_request()
    data = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return _best_rate(lambda: infer.infer({0: data}), 2 * n**3)


def ceilings(threads: int) -> dict[str, float]:
    """Measured peaks at ``threads`` threads: GFLOP/s per dtype and GB/s of copy bandwidth."""
    torch.set_num_threads(threads)
    n = 3072  # best of 12: a neighbour on a shared host only ever lowers a measured peak
    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and not native_bf16()[0]:
            continue
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        rates = [_best_rate(lambda a=a, b=b: a @ b, 2 * n**3), _openvino_matmul_rate(n, threads, name)]
        out[f"{name}_gflops"] = round(max(rates) / 1e9, 1)  # the faster library's GEMM: what a stage can reach
    a8 = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    out["int8_gops"] = round(_best_rate(lambda: torch._int_mm(a8, b8), 2 * n**3) / 1e9, 1)
    src = torch.empty(128 * 2**20, dtype=torch.float32)  # 512 MiB: far beyond every cache
    dst = torch.empty_like(src)
    out["copy_gbs"] = round(_best_rate(lambda: dst.copy_(src), 2 * src.numel() * 4) / 1e9, 1)
    return out


def gguf_sizes(path: Path) -> dict[str, float]:
    """Parameters of a GGUF model: all of them, the token embedding's, and the weights' bytes."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    total = embed = nbytes = 0
    for t in reader.tensors:
        count = int(t.n_elements)
        total += count
        nbytes += int(t.n_bytes)
        if t.name == "token_embd.weight":
            embed = count
    return {"params": total, "embedding_params": embed, "weight_bytes": nbytes}


def encoder_shape(model_dir: Path) -> dict[str, int]:
    """Hidden size, feed-forward size and layers of a local BERT-family model."""
    cfg = json.loads((model_dir / "config.json").read_text())
    return {"hidden": cfg["hidden_size"], "intermediate": cfg["intermediate_size"], "layers": cfg["num_hidden_layers"]}


def stage_seconds(path: Path) -> dict[str, float]:
    """Wall seconds per stage of the last clean run (``bench/repro.py``'s JSON)."""
    report = json.loads(path.read_text())
    return {row["stage"]: row["seconds"] for row in report["stages"]}


def rows(params: Any, peaks: dict[str, float], shape: dict[str, int], seconds: dict[str, float]) -> list[dict]:
    """One row per heavy stage: work, ceiling time, measured time and the fraction."""
    out: list[dict[str, Any]] = []
    bf16 = params.base.bf16_inference
    enc_peak = peaks["bf16_gflops"] if bf16 and "bf16_gflops" in peaks else peaks["fp32_gflops"]

    def flops(work: dict[str, int]) -> float:
        return encoder_flops(work, shape["hidden"], shape["intermediate"])

    ledger = json.loads(Path("reports/generate/ledger.json").read_text())
    if ledger.get("prompt_tokens") or ledger.get("completion_tokens"):
        from retrofit.generate.bundled import resolve_gguf

        gguf, _ = resolve_gguf(params.generate.local.model, Path(params.base.cache_dir) / "llm")
        g = gguf_sizes(gguf)
        body = g["params"] - g["embedding_params"]
        prompt, answer = ledger["prompt_tokens"], ledger["completion_tokens"]
        llm_flops = 2 * body * prompt + 2 * g["params"] * answer
        decode_bytes = g["weight_bytes"] * answer
        enc = flops(ledger.get("round_trip_work") or {"layer_tokens": 0, "layer_attention": 0})
        t_prompt = 2 * body * prompt / (peaks["int8_gops"] * 1e9)
        t_decode = max(2 * g["params"] * answer / (peaks["int8_gops"] * 1e9), decode_bytes / (peaks["copy_gbs"] * 1e9))
        t_enc = enc / (enc_peak * 1e9)
        out.append({
            "stage": "generate", "work": f"{prompt:,} prompt + {answer:,} answer tokens; {decode_bytes / 1e9:.0f} GB "
            f"of weights read; round trip {enc / 1e12:.2f} TFLOP",
            "gflop": round((llm_flops + enc) / 1e9, 1), "gbytes": round(decode_bytes / 1e9, 1),
            "binding": "memory (decode)" if decode_bytes / (peaks["copy_gbs"] * 1e9) > t_prompt else "int8 compute",
            "ceiling_s": round(t_prompt + t_decode + t_enc, 1), "seconds": seconds.get("generate"),
        })
    mine = Path("reports/mine/work.json")
    if mine.is_file():
        work = json.loads(mine.read_text())["work"]
        out.append({"stage": "mine", "work": f"{work['tokens']:,} tokens encoded", "gflop": round(flops(work) / 1e9, 1),
                    "gbytes": None, "binding": "bf16 compute" if bf16 else "fp32 compute",
                    "ceiling_s": round(flops(work) / (enc_peak * 1e9), 1), "seconds": seconds.get("mine")})
    train_peak = peaks["bf16_gflops"] if params.train.bf16 and "bf16_gflops" in peaks else peaks["fp32_gflops"]
    top = params.train.trainable_layers / shape["layers"]
    for info in sorted(Path("reports/train").glob("*/info.json")):
        data = json.loads(info.read_text())
        if "work" not in data:
            continue
        stage = f"train@{info.parent.name.removeprefix('scale_')}" if info.parent.name.startswith("scale_") \
            else f"train_run@{info.parent.name}"
        total = flops(data["work"]) * (1 + 2 * top)
        out.append({"stage": stage, "work": f"{data['work']['tokens']:,} tokens forward, backward through "
                    f"{params.train.trainable_layers} layers", "gflop": round(total / 1e9, 1), "gbytes": None,
                    "binding": "bf16 compute" if params.train.bf16 else "fp32 compute",
                    "ceiling_s": round(total / (train_peak * 1e9), 1), "seconds": seconds.get(stage)})
    for timing in sorted(Path("reports/eval").glob("*/stage_timing.json")):
        data = json.loads(timing.read_text())
        name = timing.parent.name
        stage = "evaluate_base" if name == "base" else (
            f"evaluate@{name.removeprefix('scale_')}" if name.startswith("scale_") else f"evaluate_run@{name}")
        f = flops(data["work"])
        hits = data.get("trunk_cache") or {}
        out.append({"stage": stage, "work": f"{data['work']['tokens']:,} tokens; trunk hits {hits.get('hits')}/"
                    f"{(hits.get('hits') or 0) + (hits.get('misses') or 0)} ({data['backend']})",
                    "gflop": round(f / 1e9, 1), "gbytes": None, "binding": "bf16 compute" if bf16 else "fp32 compute",
                    "ceiling_s": round(f / (enc_peak * 1e9), 1), "seconds": seconds.get(stage)})
    for row in out:
        row["fraction"] = round(row["ceiling_s"] / row["seconds"], 3) if row.get("seconds") else None
    return out


def generation_yield(before_rev: str | None) -> list[dict[str, Any]]:
    """Requests per accepted example by language now (``data/generated/metrics.json``) and at ``before_rev``
    (that revision's committed ``reports/generate/sample.md`` table)."""
    import subprocess

    now = json.loads(Path("data/generated/metrics.json").read_text())["per_language"]
    before: dict[str, tuple[int, int]] = {}
    if before_rev:
        sample = subprocess.run(["git", "show", f"{before_rev}:reports/generate/sample.md"], capture_output=True,
                                text=True, check=True).stdout
        for line in sample.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 3 and cells[0] in now and cells[1].isdigit() and cells[2].isdigit():
                before[cells[0]] = (int(cells[1]), int(cells[2]))
    rows = []
    for lang, m in now.items():
        req, acc = before.get(lang, (None, None))
        rows.append({"lang": lang, "requested": m["requested"], "accepted": m["accepted"],
                     "per_accepted": m.get("requests_per_accepted"), "before_requested": req, "before_accepted": acc,
                     "before_per_accepted": round(req / acc, 2) if req and acc else None,
                     "stopped_early": bool(m.get("stopped_early"))})
    return rows


#: The measuring tools, for the page's reader (no numbers: those come from the runs).
HOW = (
    "`bench/repro.py` times a clean `dvc repro` stage by stage with each stage's share, the CPU's flags and every "
    "thread, dtype and encoder decision the stages recorded (`reports/timings.md`); `bench/roofline.py` then "
    "measures this CPU's ceilings (fp32, bf16 and int8 matmul peaks, copy bandwidth) and sets each heavy stage's "
    "counted work against them (`docs/performance.md`, generated). `bench/eval_backends.py` compares the "
    "evaluation's runtimes (torch, ONNX Runtime, OpenVINO) on its own texts, checks that the trunk is bit-"
    "identical at 1 and 2 threads, and scores the base model under each (`reports/bench/eval_backends.md`). "
    "`bench/generate_server.py` measures llama.cpp's own server with parallel slots (`xllamacpp`) against the "
    "stage's sequential loop, and `bench/threads_busy.py` both runtimes against a core another process holds "
    "(`pip install -e .[bench]` for the extra runtimes)."
)


def markdown(report: dict[str, Any]) -> str:
    """``docs/performance.md``: the ceilings, then the table."""
    p = report["peaks"]
    lines = [
        "# Performance: each heavy stage against what the CPU can do",
        "",
        f"Generated by `bench/roofline.py` from the last clean `dvc repro` (`{report['timings']}`) and the work each "
        "stage recorded; do not edit by hand.",
        "",
        f"Machine: {report['machine']}; {report['threads']} threads; flags: {report['flags']}.",
        "",
        "| ceiling | measured |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in p.items()],
        "",
        "How it is measured: " + HOW,
        "",
        "A stage's *ceiling time* is its work at the binding ceiling; *fraction* = ceiling time / measured wall time "
        "(start-up, tokenisation, mteb's scoring and Python included, so no stage reaches 1).",
        "",
        "| stage | work | GFLOP | GB read | binding | ceiling s | measured s | fraction |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in report["stages"]:
        lines.append(f"| {r['stage']} | {r['work']} | {r['gflop']} | {r['gbytes'] if r['gbytes'] is not None else '-'} "
                     f"| {r['binding']} | {r['ceiling_s']} | {r['seconds']} | {r['fraction']} |")
    ranked = sorted((r for r in report["stages"] if r["fraction"] is not None), key=lambda r: r["fraction"])
    if ranked:
        lines += ["", "Farthest from the ceiling: " + ", ".join(f"{r['stage']} ({r['fraction']})" for r in ranked[:3])
                  + "; closest: " + ", ".join(f"{r['stage']} ({r['fraction']})" for r in ranked[-3:]) + "."]
    gy = report.get("generation_yield") or []
    if gy:
        rev = report.get("before_rev")
        lines += ["", "## Generation: requests per accepted example, by language", "",
                  f"Now (`data/generated/metrics.json`) and before (`{rev}`'s `reports/generate/sample.md`); "
                  "a language "
                  "that stopped early is marked.", "",
                  "| language | requested | accepted | requests / accepted | before: requested | accepted | "
                  "requests / accepted | stopped early |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in gy:
            lines.append(f"| {r['lang']} | {r['requested']} | {r['accepted']} | {r['per_accepted']} | "
                         f"{r['before_requested']} | {r['before_accepted']} | {r['before_per_accepted']} | "
                         f"{'yes' if r['stopped_early'] else ''} |")
        tot = lambda k: sum(r[k] or 0 for r in gy)  # noqa: E731
        lines.append(f"| all | {tot('requested')} | {tot('accepted')} | "
                     f"{round(tot('requested') / max(tot('accepted'), 1), 2)} | {tot('before_requested')} | "
                     f"{tot('before_accepted')} | {round(tot('before_requested') / max(tot('before_accepted'), 1), 2)} "
                     "| |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports/bench/roofline.json"))
    p.add_argument("--doc", type=Path, default=Path("docs/performance.md"))
    p.add_argument("--timings", type=Path, default=Path("reports/timings.json"), help="bench/repro.py's JSON")
    p.add_argument("--before", default=None, help="a git revision whose generation yield to show beside today's")
    args = p.parse_args()
    params = resolved(load_params("params.yaml"))
    peaks = ceilings(params.base.threads)
    flags = sorted(f for f in _cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c")))
    report = {
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, {native_bf16()[1]}",
        "threads": params.base.threads, "flags": " ".join(flags), "peaks": peaks,
        "stages": rows(params, peaks, encoder_shape(Path("models/base")), stage_seconds(args.timings)),
        "timings": str(args.timings), "before_rev": args.before, "generation_yield": generation_yield(args.before),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
