"""Which offline generator, on which runtime? Grounded yield per language, and the gain downstream (issue 13, item 2).

Candidates (``CANDIDATES``), each with its best prompt: few-shot for the base model, the chat template and an
instruction for the instruction-tuned one.

**Grounded yield** (``python bench/generators.py yield``): per language, ``--per-language`` short queries are
planned exactly as the generate stage plans them (same seeded passages, snippets and exemplars), sent once
(``max_rounds: 1``, no oversampling), validated by the stage's own checks, and ranked by the stage's round-trip
filter: the base model's rank of the query's own passage among every pool passage of its language. A query is
*grounded* when it is valid and its passage ranks first. Grounded yield is grounded queries per CPU-minute (user
plus system time of this process, so two threads count twice) spent inside the generator's ``generate``, per
language; the whole stage call's CPU time (reading passages, validation, the round trip) is reported too. One
thread for every candidate; no
response cache (a fresh one per run), so every request is really computed. Rank 1 is necessary, not sufficient:
the report shows sample queries per language next to the sentence they were written from.

**Downstream** (``python bench/generators.py downstream --candidate NAME``): the pipeline itself, in a scratch git
worktree of ``HEAD`` that shares this checkout's DVC cache and ``.cache`` (so only what the generator changes is
recomputed): ``params.yaml`` gets the candidate's ``generate.local`` settings and ``dvc repro
evaluate@<top>`` regenerates, dedupes, mines, trains and evaluates the top scale point. The report compares it
with this checkout's English-only point (``scale_0``), the base and the oracle, by the plot stage's paired
bootstrap; the same comparison of this checkout's own top point is the default generator's row.

Writes ``reports/bench/generators.{json,md}`` (yield and downstream sections are kept across runs). A benchmark,
not a stage: run it after ``dvc repro``; it changes no pipeline output.

Usage::

    python bench/generators.py yield --per-language 16
    python bench/generators.py downstream --candidate qwen2.5-coder-1.5b/llamacpp
    python bench/generators.py report          # rewrite the markdown from the json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from retrofit.cli import resolved
from retrofit.config import GenerateParams, load_params
from retrofit.errors import AssetError
from retrofit.generate import pipeline
from retrofit.generate.bundled import bundled
from retrofit.generate.ledger import Ledger
from retrofit.generate.pipeline import backend_from_params, run_generation
from retrofit.generate.roundtrip import base_embedder
from retrofit.generate.sample_report import markdown_cell
from retrofit.io import iter_jsonl
from retrofit.report.compare import Comparer
from retrofit.report.evaluations import load_evaluations
from retrofit.report.markdown import format_diff
from retrofit.runtime import set_threads

#: name -> generate.local overrides.
CANDIDATES: dict[str, dict[str, str]] = {
    "gemma-3-270m/transformers": {"model": "bundled:gemma-3-270m", "runtime": "transformers", "prompt": "few_shot"},
    "gemma-3-270m/transformers-fp32": {
        "model": "bundled:gemma-3-270m", "runtime": "transformers", "prompt": "few_shot"},
    "gemma-3-270m/llamacpp": {"model": "bundled:gemma-3-270m", "runtime": "llamacpp", "prompt": "few_shot"},
    "qwen2.5-coder-1.5b/llamacpp": {
        "model": "bundled:qwen2.5-coder-1.5b-instruct", "runtime": "llamacpp", "prompt": "instruct"},
}
#: Run in fp32 whatever the CPU offers: what the transformers runtime does on a CPU without native bf16.
FORCE_FP32 = {"gemma-3-270m/transformers-fp32"}
OUT = Path("reports/bench/generators")
SAMPLE_LANGS = ("de", "zh", "hi", "th")


def cpu_seconds() -> float:
    """User plus system CPU time of this process and its threads so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def candidate_params(base: GenerateParams, local: dict[str, str], lang: str, n: int) -> GenerateParams:
    """The stage's params for one language, ``n`` short queries, one round, every validated query kept and ranked."""
    return base.model_copy(update={
        "languages": [lang], "per_language": n, "task_types": {"short_query": 1.0}, "roundtrip_top_k": 10**6,
        "max_rounds": 1, "oversample": 1.0, "min_examples": 0,
        "local": base.local.model_copy(update=local)})


class TimedBackend:
    """A backend proxy that adds up the CPU time spent inside ``generate``."""

    def __init__(self, backend) -> None:
        self.backend, self.name, self.cpu = backend, backend.name, 0.0

    def identity(self) -> dict[str, str]:
        return self.backend.identity()

    def generate(self, requests, on_response):
        t = cpu_seconds()
        try:
            return self.backend.generate(requests, on_response)
        finally:
            self.cpu += cpu_seconds() - t


def measure_yield(name: str, local: dict[str, str], n: int, params, encode) -> dict:
    """Grounded yield of one candidate in every generate language (see the module docstring)."""
    spec = bundled(local["model"])
    bf16 = params.base.bf16_inference and name not in FORCE_FP32
    langs = params.generate.languages
    ledger = Ledger(0.0, 0.0)
    # One language per call (for per-language CPU time), but the language check must still tell all of the run's
    # languages apart, or an English query would pass as Hindi: the stage's identifier over every language.
    full, original = pipeline.LanguageIdentifier(langs), pipeline.LanguageIdentifier
    pipeline.LanguageIdentifier = lambda _langs: full
    try:
        return _measure(name, local, n, params, encode, spec, langs, ledger, bf16)
    finally:
        pipeline.LanguageIdentifier = original


def _measure(name, local, n, params, encode, spec, langs, ledger, bf16) -> dict:
    """The body of :func:`measure_yield`, with the language identifier already shared."""
    with tempfile.TemporaryDirectory(prefix="bench-generators-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        (cache / "llm").symlink_to(Path(params.base.cache_dir).resolve() / "llm")  # converted/joined models
        first = candidate_params(params.generate, local, langs[0], n)
        t = cpu_seconds()
        backend = TimedBackend(backend_from_params(first, ledger, cache, bf16=bf16, threads=1))
        load_cpu = cpu_seconds() - t
        rows: dict[str, dict] = {}
        for lang in langs:
            p = candidate_params(params.generate, local, lang, n)
            out = Path(tmp) / "out" / lang
            c0, g0, w0 = cpu_seconds(), backend.cpu, time.perf_counter()
            m = run_generation(p, params.base.seed, Path("data/prepared"), out, cache, encode=encode,
                               backend=backend, ledger=ledger, bf16=bf16, threads=1)
            stage_cpu, cpu, wall = cpu_seconds() - c0, backend.cpu - g0, time.perf_counter() - w0
            accepted = list(iter_jsonl(out / "examples.jsonl"))
            grounded = [r for r in accepted if r["roundtrip_rank"] == 0]
            rows[lang] = {
                "requests": m["requests"], "valid": len(accepted), "grounded": len(grounded),
                "rejected": m["rejected"], "cpu_s": round(cpu, 1), "stage_cpu_s": round(stage_cpu, 1),
                "wall_s": round(wall, 1),
                "grounded_per_cpu_min": round(len(grounded) / (cpu / 60), 2) if cpu else None,
                "median_rank": sorted(r["roundtrip_rank"] for r in accepted)[len(accepted) // 2] if accepted else None,
                "samples": [{"query": r["query"], "evidence": r["evidence"], "rank": r["roundtrip_rank"]}
                            for r in accepted[:3]],
            }
            print(f"{name} {lang}: {len(grounded)}/{m['requests']} grounded, {len(accepted)} valid, {cpu:.1f} s CPU",
                  flush=True)
    total = {k: round(sum(r[k] for r in rows.values()), 1)
             for k in ("requests", "valid", "grounded", "cpu_s", "stage_cpu_s", "wall_s")}
    total["grounded_per_cpu_min"] = round(total["grounded"] / (total["cpu_s"] / 60), 2)
    return {"local": local, "identity": backend.identity(), "sha256": spec.sha256 if spec else None,
            "load_cpu_s": round(load_cpu, 1), "per_language": rows, "total": total}


def run_yield(args) -> None:
    params = resolved(load_params("params.yaml"))
    set_threads(1)
    encode = base_embedder(Path(params.base.cache_dir), params.base.bf16_inference)
    result = load()
    previous = result.get("yield", {})
    keep = previous.get("candidates", {}) if previous.get("per_language") == args.per_language else {}
    result["yield"] = {"per_language": args.per_language, "threads": 1, "cpu": cpu_name(), "candidates": keep}
    for name in args.candidates or CANDIDATES:  # re-measured candidates replace their earlier entry
        local = CANDIDATES[name]
        try:
            out = measure_yield(name, local, args.per_language, params, encode)
        except AssetError as e:  # an optional model that is not installed
            out = {"local": local, "skipped": str(e)}
        result["yield"]["candidates"][name] = out
        save(result)
    write_markdown(result)


def run_downstream(args) -> None:
    """Reproduce the top scale point with ``args.candidate`` in a scratch worktree, then compare it."""
    local = CANDIDATES[args.candidate]
    params = load_params("params.yaml")
    top = max(params.scale.per_language)
    here = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix=".bench-generators-wt-", dir=here.parent))  # same disk: hardlinks
    subprocess.run(["git", "worktree", "add", "--detach", str(work), "HEAD"], check=True)
    try:
        (work / ".cache").symlink_to(here / ".cache")
        subprocess.run(["dvc", "cache", "dir", "--local", str(here / ".dvc" / "cache")], cwd=work, check=True)
        subprocess.run(["dvc", "config", "--local", "cache.type", "hardlink,copy"], cwd=work, check=True)
        yaml = YAML()
        doc = yaml.load((work / "params.yaml").read_text())
        for k, v in local.items():
            doc["generate"]["local"][k] = v
        for item in args.set:  # dotted.key=yaml-value, as `dvc exp run -S` takes them
            key, value = item.split("=", 1)
            *path, last = key.split(".")
            node = doc
            for part in path:
                node = node[part]
            node[last] = yaml.load(value)
        with (work / "params.yaml").open("w") as fh:
            yaml.dump(doc, fh)
        t0 = time.perf_counter()
        subprocess.run(["dvc", "repro", f"evaluate@{top}"], cwd=work, check=True,
                       env={**os.environ, "PYTHONPATH": str(work / "src")})
        seconds = time.perf_counter() - t0
        gen = json.loads((work / "data/generated/metrics.json").read_text())
        ledger = json.loads((work / "reports/generate/ledger.json").read_text())
        kept_dir = OUT.parent / "generators" / args.candidate.replace("/", "_")
        shutil.rmtree(kept_dir, ignore_errors=True)
        (kept_dir / "eval" / f"scale_{top}").mkdir(parents=True)
        shutil.copy(work / "reports/generate/sample.md", kept_dir / "sample.md")
        for name in ("metrics.json", "per_query.json"):  # what the paired bootstrap needs, kept for later runs
            shutil.copy(work / "reports/eval" / f"scale_{top}" / name, kept_dir / "eval" / f"scale_{top}" / name)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work)], check=False)
    result = load()
    result.setdefault("downstream_runs", {})[args.candidate] = {
        "set": args.set, "examples": gen["examples"], "requests": gen["requests"],
        "examples_per_language": {k: v["accepted"] for k, v in gen["per_language"].items()},
        "pipeline_seconds": round(seconds, 1), "generate_ledger": ledger, "kept": str(kept_dir)}
    result["downstream"] = compare_downstream(result["downstream_runs"], params, top, args.resamples)
    save(result)
    write_markdown(result)


def run_compare(args) -> None:
    params = load_params("params.yaml")
    result = load()
    result["downstream"] = compare_downstream(result["downstream_runs"], params, max(params.scale.per_language),
                                              args.resamples)
    save(result)
    write_markdown(result)


def compare_downstream(runs: dict, params, top: int, resamples: int) -> dict:
    """Every kept candidate's top point, the pipeline's and the oracle's, against English-only, base and pipeline."""
    evals = load_evaluations(Path("reports/eval"), ["base", "scale_0", f"scale_{top}", "oracle", *params.plot.seed_runs])
    for name, run in runs.items():
        evals[name] = load_evaluations(Path(run["kept"]) / "eval", [f"scale_{top}"])[f"scale_{top}"]
    comparer = Comparer(evals, [f"scale_{top}", *params.plot.seed_runs], resamples, seed=0)
    made = json.loads(Path("data/generated/metrics.json").read_text())["generator"]  # the pipeline's own generator
    pipeline_label = f"{made['model'].split(':')[-1]}/{made.get('runtime', 'transformers')} (pipeline scale_{top})"
    out = {}
    for label, model in (*((n, n) for n in runs), (pipeline_label, f"scale_{top}"), ("oracle", "oracle")):
        out[label] = {
            "model": model, "per_language": top, **{k: runs[label][k] for k in ("set", "examples") if label in runs},
            "gain_over_english_only": pick(comparer.compare(model, "scale_0", "primary")),
            "over_base": pick(comparer.compare(model, "base", "primary")),
            "over_pipeline": pick(comparer.compare(model, f"scale_{top}", "primary")) if model != f"scale_{top}" else None,
            "requests": runs[label]["requests"] if label in runs else None,
        }
    names = list(runs)
    for i, a in enumerate(names):  # candidate against candidate, same conditions
        out[a]["over_candidates"] = {b: pick(comparer.compare(a, b, "primary")) for b in names[i + 1 :]}
    return out


def pick(c: dict | None) -> dict | None:
    return None if c is None else {k: c[k] for k in ("delta", "lo", "hi", "score_a", "score_b", "seed_sd", "verdict")}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load() -> dict:
    path = OUT.with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def save(result: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def write_markdown(result: dict) -> None:
    """``reports/bench/generators.md`` from the json."""
    lines = ["# Offline generators compared (`bench/generators.py`)", ""]
    y = result.get("yield")
    if y:
        cands = {k: v for k, v in y["candidates"].items() if "skipped" not in v}
        lines += [f"## Grounded yield: {y['per_language']} short queries per language, one thread, {y['cpu']}", "",
                  ("Grounded = valid and the base model ranks the query's own passage first among every pool passage "
                   "of its language. Per language: grounded / requests, and grounded queries per CPU-minute."), ""]
        langs = list(next(iter(cands.values()))["per_language"]) if cands else []
        lines += ["| lang | " + " | ".join(f"`{c}`" for c in cands) + " |", "|---|" + "---:|" * len(cands)]
        for lang in [*langs, "all"]:
            cells = []
            for c in cands.values():
                r = c["total"] if lang == "all" else c["per_language"][lang]
                cells.append(f"{r['grounded']}/{r['requests']} · {r['grounded_per_cpu_min']}/min")
            lines.append(f"| {'**all**' if lang == 'all' else lang} | " + " | ".join(cells) + " |")
        lines += ["", ("| candidate | valid | grounded | generator CPU s | CPU s per request | stage CPU s | "
                       "model load CPU s |"), "|---|---:|---:|---:|---:|---:|---:|"]
        for name, c in cands.items():
            t = c["total"]
            lines.append(f"| `{name}` | {t['valid']}/{t['requests']} | {t['grounded']}/{t['requests']} | {t['cpu_s']} "
                         f"| {t['cpu_s'] / t['requests']:.2f} | {t['stage_cpu_s']} | {c['load_cpu_s']} |")
        for name, c in y["candidates"].items():
            if "skipped" in c:
                lines.append(f"\n`{name}` skipped: {c['skipped']}")
        lines += ["", "### Sample queries (first three per language; rank 0 = own passage first)", ""]
        for lang in SAMPLE_LANGS:
            lines += [f"**{lang}**", "", "| candidate | query | written from | rank |", "|---|---|---|---:|"]
            for name, c in cands.items():
                for s in c["per_language"].get(lang, {}).get("samples", []):
                    lines.append(f"| `{name}` | {markdown_cell(s['query'], 80)} | "
                                 f"{markdown_cell(s['evidence'], 110)} | {s['rank']} |")
            lines.append("")
    d = result.get("downstream")
    if d:
        lines += ["## Downstream: the top scale point retrained on each generator's data", "",
                  ("Primary metric (held-out XQuAD nDCG@10, x100), paired bootstrap 95% intervals; the English-only "
                   "point is `scale_0`."), "",
                  "| generator | Δ over English-only | Δ over base | Δ over the pipeline's | examples | requests |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, r in d.items():
            lines.append(f"| `{label}` | {format_diff(r['gain_over_english_only'])} | {format_diff(r['over_base'])} | "
                         f"{format_diff(r.get('over_pipeline'))} | {r.get('examples') or '-'} | {r.get('requests') or '-'} |")
        pairs = [(a, b, c) for a, r in d.items() for b, c in (r.get("over_candidates") or {}).items()]
        if pairs:
            lines += ["", "| candidate - candidate | Δ primary [95% interval] |", "|---|---:|"]
            lines += [f"| `{a}` - `{b}` | {format_diff(c)} |" for a, b, c in pairs]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    y = sub.add_parser("yield")
    y.add_argument("--per-language", type=int, default=16)
    y.add_argument("--candidates", nargs="*", choices=list(CANDIDATES))
    d = sub.add_parser("downstream")
    d.add_argument("--candidate", required=True, choices=list(CANDIDATES))
    d.add_argument("--resamples", type=int, default=1000)
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another params.yaml change for this run (e.g. generate.max_rounds=1); recorded in the report")
    c = sub.add_parser("compare", help="recompute the downstream comparisons from the kept evaluations (only while "
                       "reports/eval is the pipeline state the runs were compared with)")
    c.add_argument("--resamples", type=int, default=1000)
    sub.add_parser("report")
    args = ap.parse_args()
    {"yield": run_yield, "downstream": run_downstream, "compare": run_compare,
     "report": lambda a: write_markdown(load())}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
