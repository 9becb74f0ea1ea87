"""llama.cpp's own server with parallel slots against today's one-request-at-a-time loop (issue 25, generation).

The generate stage answers its requests one at a time through ik_llama.cpp (``retrofit.generate.llamacpp_backend``).
llama.cpp's server decodes several requests together (``n_parallel`` slots, continuous batching), so the weights
read for one decoded token serve every slot. ``xllamacpp`` (PyPI, MIT) runs that server inside the Python process.

On the generate stage's own first plans (few-shot prompts of ``--langs``, planned exactly as the stage plans
them), this measures for the sequential loop and for the server at each ``--slots``:

- requests per CPU-second (user plus system time of this process) and per wall second;
- whether the greedy answers equal the sequential ones, and how many validation verdicts change.

The server gets the stage's sampling: greedy, the repetition penalty over the whole context (``repeat_last_n``
2048, a slot's context; the API refuses -1), the answer cut at the first newline, no prompt cache (an answer must not depend on the request before it).
Writes ``reports/bench/generate_server.{json,md}``. A benchmark: it changes no pipeline output.

Usage::

    python bench/generate_server.py --per-language 8 --slots 1 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.generate.bundled import resolve_gguf
from retrofit.generate.llamacpp_backend import LlamaCppBackend
from retrofit.generate.planner import Planner
from retrofit.data.passages import load_passages
from retrofit.generate.pools import load_exemplars
from retrofit.generate.validate import LanguageIdentifier, validate


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far."""
    t = os.times()
    return t.user + t.system


def sequential(backend: LlamaCppBackend, plans: list[Any]) -> tuple[dict[str, str], float, float]:
    """Answers by request key, wall seconds and CPU seconds of the stage's own loop."""
    answers: dict[str, str] = {}
    backend.generate([plans[0].request], lambda r, a: None)  # load the model outside the timing
    wall, cpu = time.perf_counter(), cpu_seconds()
    backend.generate([p.request for p in plans], lambda r, a: answers.__setitem__(r.key, (a.text, a.finish_reason)))
    return answers, time.perf_counter() - wall, cpu_seconds() - cpu


def server(gguf: Path, plans: list[Any], slots: int, threads: int, penalty: float) -> tuple[dict, float, float]:
    """Answers by request key, wall and CPU seconds of llama.cpp's server with ``slots`` parallel slots."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.n_ctx = 2048 * slots  # each slot gets the sequential loop's context
    params.cont_batching = True
    params.cache_prompt = False
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    srv = xlc.Server(params)

    def ask(plan: Any) -> tuple[str, tuple[str, str]]:
        req = plan.request
        out = srv.handle_completions({
            "prompt": req.prompt, "max_tokens": req.max_tokens, "temperature": 0.0, "repeat_penalty": penalty,
            "repeat_last_n": 2048, "stop": ["\n"], "cache_prompt": False, "seed": req.seed,
        })
        if "choices" not in out:
            raise RuntimeError(f"llama.cpp server refused the request: {out.get('error', out)}")
        choice = out["choices"][0]
        text = choice["text"].strip().split("\n")[0].strip()
        return req.key, (text, "stop" if choice.get("finish_reason") == "stop" else "length")

    ask(plans[0])
    wall, cpu = time.perf_counter(), cpu_seconds()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        answers = dict(pool.map(ask, plans))
    return answers, time.perf_counter() - wall, cpu_seconds() - cpu


def write_outputs(out: Path, report: dict[str, Any], lines: list[str]) -> None:
    """``<out>.json`` (the report) and ``<out>.md`` (its lines), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def stage_plans(per_language: int, langs: list[str] | None) -> tuple[Any, list[str], list[Any], Path, str]:
    """The generate stage's first ``per_language`` plans in each language, planned as the stage plans them.

    Returns:
        ``(params, languages, plans, gguf path, its sha256)``.
    """
    params = resolved(load_params("params.yaml"))
    gen = params.generate
    langs = langs or gen.languages
    prepared = Path("data/prepared")
    planner = Planner(gen, params.base.seed, load_passages(prepared, gen.passage_sources, langs),
                      load_exemplars(prepared, langs, gen.local.snippet_chars))
    plans = [planner.plan(lang, i) for lang in langs for i in range(per_language)]
    gguf, sha = resolve_gguf(gen.local.model, Path(params.base.cache_dir) / "llm")
    return params, langs, plans, gguf, sha


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-language", type=int, default=8)
    p.add_argument("--langs", nargs="+", default=None, help="default: generate.languages")
    p.add_argument("--slots", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--out", type=Path, default=Path("reports/bench/generate_server"))
    args = p.parse_args()
    params, langs, plans, gguf, sha = stage_plans(args.per_language, args.langs)
    gen = params.generate
    threads = params.base.threads
    backend = LlamaCppBackend(gguf, gen.local.model, sha, threads, gen.local.repetition_penalty, gen.local.top_p,
                              progress=False)
    langid = LanguageIdentifier(langs)

    def verdicts(answers: dict) -> dict[str, str | None]:
        return {pl.request.key: validate(*answers[pl.request.key], chat=False, lang=pl.lang, passage=pl.positive,
                                         exemplars=pl.exemplars, min_chars=gen.min_chars, max_chars=gen.max_chars,
                                         langid=langid).reason for pl in plans}

    ref, wall, cpu = sequential(backend, plans)
    ref_verdicts = verdicts(ref)
    rows = [{"runtime": "ik_llama.cpp, one request at a time", "slots": 1, "wall_s": round(wall, 1),
             "cpu_s": round(cpu, 1), "requests_per_cpu_s": round(len(plans) / cpu, 3),
             "requests_per_wall_s": round(len(plans) / wall, 3), "answers_equal": len(plans), "verdicts_equal":
             len(plans), "valid": sum(v is None for v in ref_verdicts.values())}]
    print(rows[-1], flush=True)
    for slots in args.slots:
        answers, wall, cpu = server(gguf, plans, slots, threads, gen.local.repetition_penalty)
        got = verdicts(answers)
        rows.append({"runtime": "llama.cpp server (xllamacpp)", "slots": slots, "wall_s": round(wall, 1),
                     "cpu_s": round(cpu, 1), "requests_per_cpu_s": round(len(plans) / cpu, 3),
                     "requests_per_wall_s": round(len(plans) / wall, 3),
                     "answers_equal": sum(answers[k][0] == ref[k][0] for k in ref),
                     "verdicts_equal": sum(got[k] == ref_verdicts[k] for k in ref),
                     "valid": sum(v is None for v in got.values())})
        print(rows[-1], flush=True)
    import xllamacpp

    report = {"requests": len(plans), "langs": langs, "threads": threads, "xllamacpp": xllamacpp.__version__,
              "rows": rows}
    lines = ["# Generation: llama.cpp's server with parallel slots against the sequential loop", "",
             f"Written by `bench/generate_server.py`: the generate stage's first {args.per_language} plans in each "
             f"of {len(langs)} languages ({len(plans)} requests), Gemma 3 270M Q4_K_M, greedy, {threads} threads; "
             f"xllamacpp {report['xllamacpp']}. Equal: the same answer text (verdict) as the sequential loop.", "",
             "| runtime | slots | wall s | CPU s | requests / CPU s | requests / wall s | answers equal | verdicts equal "
             "| valid |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['runtime']} | {r['slots']} | {r['wall_s']} | {r['cpu_s']} | {r['requests_per_cpu_s']} | "
              f"{r['requests_per_wall_s']} | {r['answers_equal']}/{len(plans)} | {r['verdicts_equal']}/{len(plans)} "
              f"| {r['valid']} |" for r in rows]
    write_outputs(args.out, report, lines)


if __name__ == "__main__":
    main()
