"""Where the generate stage's sequential loop spends its time, and what ik_llama.cpp's CPU options change (issue 25).

On the generate stage's own first plans (``bench/generate_server.py``'s ``stage_plans``), each request's time is split
into the prompt's prefill (the first ``llama_decode``, at position 0), the answer's decoding (one token per call) and
the rest (Python: sampling, the repetition penalty, detokenising). Then the same requests run under ik_llama.cpp's
run-time options, each loading the model anew:

- ``repack``: ``repack_tensors`` (llama_model_params), the weights repacked into interleaved rows for the CPU's
  matrix kernels;
- ``repack+fused``: also ``fused_up_gate`` (llama_context_params), the feed-forward's up and gate in one kernel.

For each: wall and CPU seconds and how many greedy answers equal the default loop's. The stage adopts an option only
if it is faster and keeps its answers (or the change in every score is measured and reported).
Writes ``reports/bench/generate_split.{json,md}``. A benchmark: it changes no pipeline output.

Usage::

    python bench/generate_split.py --per-language 4
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from generate_server import cpu_seconds, stage_plans, write_outputs
from retrofit.generate import llamacpp_backend

#: option name -> (llama_model_params fields, llama_context_params fields) set to True.
OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "repack": (("repack_tensors",), ()),
    "repack+fused": (("repack_tensors",), ("fused_up_gate",)),
}


@contextmanager
def llama_options(model_fields: tuple[str, ...], context_fields: tuple[str, ...]) -> Iterator[None]:
    """ik_llama.cpp's default model and context params with ``*_fields`` set, for models loaded inside the block."""
    from ik_llama_cpp import _ctypes_api as C

    model_default, context_default = C.llama_model_default_params, C.llama_context_default_params

    def with_fields(default: Any, fields: tuple[str, ...]) -> Any:
        def make() -> Any:
            params = default()
            for field in fields:
                setattr(params, field, True)
            return params
        return make

    C.llama_model_default_params = with_fields(model_default, model_fields)
    C.llama_context_default_params = with_fields(context_default, context_fields)
    try:
        yield
    finally:
        C.llama_model_default_params, C.llama_context_default_params = model_default, context_default


@contextmanager
def decode_timer(split: dict[str, float]) -> Iterator[None]:
    """Add each ``LlamaCppModel._decode`` call's seconds and tokens to ``split`` (position 0: the prefill)."""
    decode = llamacpp_backend.LlamaCppModel._decode

    def timed(self: Any, tokens: list[int], pos: int) -> Any:
        start = time.perf_counter()
        out = decode(self, tokens, pos)
        part = "prefill" if pos == 0 else "decode"
        split[f"{part}_s"] += time.perf_counter() - start
        split[f"{part}_tokens"] += len(tokens)
        return out

    llamacpp_backend.LlamaCppModel._decode = timed
    try:
        yield
    finally:
        llamacpp_backend.LlamaCppModel._decode = decode


def run(option: str, plans: list[Any], params: Any, gguf: Path, sha: str) -> tuple[dict[str, Any], dict[str, str]]:
    """One option's row and its answers by request key."""
    gen = params.generate
    with llama_options(*OPTIONS[option]):
        backend = llamacpp_backend.LlamaCppBackend(gguf, gen.local.model, sha, params.base.threads,
                                                   gen.local.repetition_penalty, gen.local.top_p, progress=False)
        backend.generate([plans[0].request], lambda r, a: None)  # load the model outside the timing
    answers: dict[str, str] = {}
    split = dict.fromkeys(("prefill_s", "prefill_tokens", "decode_s", "decode_tokens"), 0.0)
    with decode_timer(split):
        wall, cpu = time.perf_counter(), cpu_seconds()
        backend.generate([p.request for p in plans], lambda r, a: answers.__setitem__(r.key, a.text))
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    row = {"option": option, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "prefill_s": round(split["prefill_s"], 2), "prefill_tokens": int(split["prefill_tokens"]),
           "prefill_tokens_per_s": round(split["prefill_tokens"] / split["prefill_s"], 1),
           "decode_s": round(split["decode_s"], 2), "decode_tokens": int(split["decode_tokens"]),
           "decode_ms_per_token": round(1000 * split["decode_s"] / max(1, split["decode_tokens"]), 2),
           "other_s": round(wall - split["prefill_s"] - split["decode_s"], 2)}
    return row, answers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-language", type=int, default=4)
    p.add_argument("--langs", nargs="+", default=None, help="default: generate.languages")
    p.add_argument("--out", type=Path, default=Path("reports/bench/generate_split"))
    args = p.parse_args()
    params, langs, plans, gguf, sha = stage_plans(args.per_language, args.langs)
    rows, reference = [], None
    for option in OPTIONS:
        row, answers = run(option, plans, params, gguf, sha)
        reference = reference or answers
        row["answers_equal"] = sum(answers[k] == reference[k] for k in reference)
        rows.append(row)
        print(row, flush=True)
    report = {"requests": len(plans), "langs": langs, "threads": params.base.threads, "cpus": os.cpu_count(),
              "rows": rows}
    n = len(plans)
    lines = ["# Generation: where the sequential loop's time goes, and ik_llama.cpp's CPU options", "",
             f"Written by `bench/generate_split.py`: the generate stage's first {args.per_language} plans in each of "
             f"{len(langs)} languages ({n} requests), Gemma 3 270M Q4_K_M, greedy, {params.base.threads} threads. "
             "Prefill: the prompt's first decode call; decode: one answer token per call; other: Python (sampling, "
             "penalty, detokenising). Equal: the same answer text as the default loop.", "",
             "| option | wall s | CPU s | prefill s (tokens/s) | decode s (ms/token) | other s | answers equal |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['option']} | {r['wall_s']} | {r['cpu_s']} | {r['prefill_s']} ({r['prefill_tokens_per_s']}) | "
              f"{r['decode_s']} ({r['decode_ms_per_token']}) | {r['other_s']} | {r['answers_equal']}/{n} |"
              for r in rows]
    write_outputs(args.out, report, lines)


if __name__ == "__main__":
    main()
