"""Local-backend generation speed: examples per minute, before and after the speed work.

Plans ``--n`` requests over a few languages with the real planner (3-shot prompts from data/prepared), then answers
them with the local backend (Gemma 3 270M by default) in each configuration:

- ``fp32``: float32 weights (the plain transformers load; the "before");
- ``bf16``: bfloat16 weights (AMX on this CPU; the "after");
- a ``-b<N>`` suffix (``bf16-b32``) sets the batch size (default: ``generate.local.batch_size``).

Both use length-sorted batches and per-row newline stopping. Prints a table and writes
``reports/bench/generate.json``. Needs ``data/prepared`` (run ``dvc repro prepare``).

Usage: ``python bench/generate.py --n 48 --threads 2 --configs bf16,bf16-b32``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from retrofit.config import GenerateParams
from retrofit.generate.local_backend import LocalBackend
from retrofit.generate.planner import Planner
from retrofit.data.passages import load_passages
from retrofit.generate.pools import load_exemplars
from retrofit.generate.validate import LanguageIdentifier, validate
from retrofit.runtime import set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="requests per configuration")
    ap.add_argument("--langs", default="de,zh,th", help="comma-separated languages")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", default="fp32,bf16")
    ap.add_argument("--out", default="reports/bench/generate.json")
    args = ap.parse_args()
    set_threads(args.threads)
    langs = args.langs.split(",")
    params = GenerateParams.model_validate(
        {"languages": langs, "task_types": {"short_query": 0.6, "title": 0.2, "paraphrase": 0.2}}
    )
    prepared = Path("data/prepared")
    planner = Planner(params, 0, load_passages(prepared, params.passage_sources, langs),
                      load_exemplars(prepared, langs, params.local.snippet_chars))
    plans = [planner.plan(langs[i % len(langs)], i // len(langs)) for i in range(args.n)]
    langid = LanguageIdentifier(langs)
    results = []
    for cfg in args.configs.split(","):
        batch = int(cfg.split("-b", 1)[1]) if "-b" in cfg else params.local.batch_size
        backend = LocalBackend(params.local.model, batch, bf16=cfg.startswith("bf16"), progress=False,
                               cache_root=Path(".cache/retrofit/llm"))
        t0 = time.perf_counter()
        backend._load()
        load_s = time.perf_counter() - t0
        answers = {}
        t0 = time.perf_counter()
        backend.generate([p.request for p in plans], lambda req, resp: answers.__setitem__(req.key, resp))
        gen_s = time.perf_counter() - t0
        ok = sum(
            validate(answers[p.request.key].text, answers[p.request.key].finish_reason, chat=False, lang=p.lang,
                     passage=p.positive, exemplars=p.exemplars, min_chars=params.min_chars,
                     max_chars=params.max_chars, langid=langid).ok
            for p in plans
        )
        out_tokens = sum(a.completion_tokens for a in answers.values())
        results.append({
            "config": cfg, "batch_size": batch, "threads": args.threads, "requests": len(plans), "load_s": round(load_s, 1), "generate_s": round(gen_s, 1),
            "requests_per_min": round(60 * len(plans) / gen_s, 1), "s_per_request": round(gen_s / len(plans), 3),
            "valid": ok, "valid_per_min": round(60 * ok / gen_s, 1), "output_tokens": out_tokens,
        })
        print(results[-1], flush=True)
    print("\n| config | req/min | s/req | valid/min | load s |\n|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['config']} | {r['requests_per_min']} | {r['s_per_request']} | {r['valid_per_min']} | {r['load_s']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": {"platform": platform.platform(), "threads": args.threads}, "langs": langs, "results": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
