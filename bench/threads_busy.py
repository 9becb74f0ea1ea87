"""Does llama.cpp slow down on a busy core as torch does? Threads against a core that another process holds (issue 25).

torch with 2 threads on a 2-core host where another process holds a core ran 4-12x slower than with 1, which is why
``base.threads: auto`` steps aside for a busy core. This measures the same for both runtimes of the default
pipeline, on this machine:

- llama.cpp (the generate stage's backend) answering the stage's first ``--requests`` plans;
- torch encoding ``--texts`` XQuAD passages with the base model (the round trip's and mining's encoder).

It also checks that llama.cpp's greedy answers are the same at 1 and 2 threads (the generate stage decides an
``auto`` thread count again each round, so an answer must not depend on it).

Each at 1 and 2 threads, on an idle machine and with one core held by a spinning process (a stand-in for a
neighbour). Writes ``reports/bench/threads_busy.{json,md}``.

Usage::

    python bench/threads_busy.py --requests 24 --texts 128
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.embed.encoder import SentenceTransformerEncoder
from retrofit.generate.bundled import resolve_gguf
from retrofit.generate.llamacpp_backend import LlamaCppBackend
from retrofit.generate.planner import Planner
from retrofit.data.passages import load_passages
from retrofit.generate.pools import load_exemplars
from retrofit.io import read_jsonl
from retrofit.runtime import set_threads


def _spin(stop: Any) -> None:
    """Hold one core until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def measure(fn: Any, busy: bool) -> float:
    """Wall seconds of ``fn()``, with one core held by another process when ``busy``."""
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,)) if busy else None
    if spinner:
        spinner.start()
        time.sleep(0.5)
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if spinner:
            stop.set()
            spinner.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--texts", type=int, default=128)
    p.add_argument("--out", type=Path, default=Path("reports/bench/threads_busy"))
    args = p.parse_args()
    params = resolved(load_params("params.yaml"))
    gen = params.generate
    langs = gen.languages
    planner = Planner(gen, params.base.seed, load_passages(Path("data/prepared"), gen.passage_sources, langs),
                      load_exemplars(Path("data/prepared"), langs, gen.local.snippet_chars))
    plans = [planner.plan(langs[i % len(langs)], i // len(langs)) for i in range(args.requests)]
    gguf, sha = resolve_gguf(gen.local.model, Path(params.base.cache_dir) / "llm")
    texts = [r["text"] for r in read_jsonl("data/prepared/xquad/paragraphs.jsonl")][: args.texts]
    rows = []
    answers: dict[int, dict[str, str]] = {}
    for threads in (1, 2):
        set_threads(threads)
        backend = LlamaCppBackend(gguf, gen.local.model, sha, threads, gen.local.repetition_penalty, gen.local.top_p,
                                  progress=False)
        got: dict[str, str] = {}
        backend.generate([q.request for q in plans], lambda r, a: got.__setitem__(r.key, a.text))  # and load
        answers[threads] = got
        encoder = SentenceTransformerEncoder("models/base", batch_size=64, bf16=params.base.bf16_inference)
        encoder.encode(texts[:8], "passage")
        for busy in (False, True):
            for runtime, fn in (("llama.cpp generate", lambda: backend.generate([q.request for q in plans],
                                                                                 lambda r, a: None)),
                                ("torch encode", lambda: encoder.encode(texts, "passage"))):
                rows.append({"runtime": runtime, "threads": threads, "other core busy": busy,
                             "seconds": round(measure(fn, busy), 2)})
                print(rows[-1], flush=True)
    base = {(r["runtime"], r["threads"]): r["seconds"] for r in rows if not r["other core busy"]}
    for r in rows:
        r["vs idle 1 thread"] = round(r["seconds"] / base[(r["runtime"], 1)], 2)
    same = sum(answers[1][k] == answers[2][k] for k in answers[1])
    lines = ["# Threads against a busy core: llama.cpp and torch", "",
             f"Written by `bench/threads_busy.py`: {args.requests} generate requests (Gemma 3 270M, llama.cpp) and "
             f"{args.texts} XQuAD passages encoded by the base model (torch, bf16 {params.base.bf16_inference}); "
             "busy: another process spins on one of the 2 cores.", "",
             f"llama.cpp's greedy answers at 1 and 2 threads: {same} of {len(plans)} identical.", "",
             "| runtime | threads | other core busy | seconds | x idle 1 thread |", "|---|---:|---|---:|---:|"]
    lines += [f"| {r['runtime']} | {r['threads']} | {r['other core busy']} | {r['seconds']} | {r['vs idle 1 thread']} |"
              for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"rows": rows, "answers_equal_1_vs_2_threads": same,
                                                     "requests": len(plans)}, indent=2) + "\n")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
