"""Best-of-n generation: does keeping the best-ranked of n samples make the queries answerable? (issue 13, item 3)

The issue's optional lever: write several queries per planned passage and keep the one whose passage the base model
ranks best. This bench measures it before any stage pays for it. Per language, the first ``--plans`` plans of the
generate stage (same seeded passages, snippets, exemplars and greedy request) each get ``--n`` requests: the stage's
own greedy request and ``n - 1`` nucleus samples at ``--temperature`` (seeds ``seed + 1`` ... ``seed + n - 1``).
Every answer goes through the stage's validation and its round-trip filter (rank of the plan's passage among every
pool passage of the language, under the base model, with the shared embedding cache). Best-of-n keeps, per plan,
the valid query with the lowest rank (ties: the earlier sample, so the greedy one first); a plan passes when that
rank is below ``generate.roundtrip_top_k``.

It reports, per language, the plans that pass with the greedy query alone and with best-of-n, and requests per
accepted query (the cost: llama.cpp answers a Gemma 270M request in about 0.7 CPU s, ``reports/bench/generators.md``).
The rank is what best-of-n optimises, so a higher pass rate is expected and proves nothing about quality: the
report lists every plan that best-of-n accepts with a *sampled* query, beside the sentence the query was written
from and the greedy query, so a reader can judge whether the queries it adds are answerable from their passage.

Answers are cached in a bench-only response cache (``<base.cache_dir>/bench/best_of-*.jsonl``), so a rerun sends
nothing. A benchmark, not a stage: run it after ``dvc repro``; it writes ``reports/bench/best_of.{json,md}`` and
changes no pipeline output.

Usage::

    python bench/best_of.py --languages de,hi,th,zh --plans 24 --n 4 --temperature 0.8
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from retrofit.cli import resolved
from retrofit.config import GenerateParams, load_params
from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.cache import ResponseCache, answer_all
from retrofit.generate.ledger import Ledger
from retrofit.generate.pipeline import backend_from_params, response_cache_path
from retrofit.generate.planner import Planned, Planner
from retrofit.generate.roundtrip import RoundTrip, base_embedder
from retrofit.generate.sample_report import markdown_cell
from retrofit.data.passages import load_passages
from retrofit.generate.pools import load_exemplars
from retrofit.generate.validate import LanguageIdentifier, validate
from retrofit.io import write_json
from retrofit.runtime import set_threads


def samples(request: GenRequest, n: int, temperature: float) -> list[GenRequest]:
    """The plan's own request, then ``n - 1`` nucleus samples of the same prompt (seeds ``seed + 1`` on)."""
    return [request] + [dataclasses.replace(request, temperature=temperature, seed=request.seed + j)
                        for j in range(1, n)]


def pick_best(ranked: dict[int, tuple[int, str]]) -> tuple[int, int, str] | None:
    """The kept sample of one plan: ``(sample index, rank, query)`` with the lowest rank, the earliest on a tie.

    Args:
        ranked: Sample index -> (round-trip rank, query), for the samples that passed validation.

    Returns:
        The best sample, or ``None`` when no sample passed validation.
    """
    if not ranked:
        return None
    j = min(ranked, key=lambda i: (ranked[i][0], i))
    return j, *ranked[j]


def measure_language(lang: str, plans: list[Planned], answers: dict[str, GenResponse], n: int, temperature: float,
                     g: GenerateParams, langid: LanguageIdentifier, roundtrip: RoundTrip, pool: list[str]) -> dict:
    """Validate and rank every sample of ``plans``; the language's counts and its plans' greedy and best picks."""
    valid: list[tuple[int, int, str]] = []  # (plan, sample, query)
    for pi, p in enumerate(plans):
        for j, req in enumerate(samples(p.request, n, temperature)):
            resp = answers[req.key]
            v = validate(resp.text, resp.finish_reason, chat=not g.few_shot, lang=lang, passage=p.positive,
                         exemplars=p.exemplars, min_chars=g.min_chars, max_chars=g.max_chars, langid=langid)
            if v.ok:
                valid.append((pi, j, v.query))
    cands = sorted(set(pool) | {p.positive for p in plans})
    ranks = roundtrip.ranks([q for _, _, q in valid], [plans[pi].positive for pi, _, _ in valid], cands)
    ranked: list[dict[int, tuple[int, str]]] = [{} for _ in plans]
    for (pi, j, q), r in zip(valid, ranks):
        ranked[pi][j] = (r, q)
    k = g.roundtrip_top_k
    rows = []
    for p, rk in zip(plans, ranked):
        best = pick_best(rk)
        rows.append({"index": p.index, "task_type": p.task_type, "evidence": p.target,
                     "greedy": {"rank": rk[0][0], "query": rk[0][1]} if 0 in rk else None,
                     "best": {"sample": best[0], "rank": best[1], "query": best[2]} if best else None,
                     "valid_samples": len(rk)})
    greedy_ok = sum(1 for r in rows if r["greedy"] and r["greedy"]["rank"] < k)
    best_ok = sum(1 for r in rows if r["best"] and r["best"]["rank"] < k)
    return {
        "plans": len(plans), "requests_greedy": len(plans), "requests_best_of": n * len(plans),
        "greedy_pass": greedy_ok, "greedy_rank0": sum(1 for r in rows if r["greedy"] and r["greedy"]["rank"] == 0),
        "best_of_pass": best_ok, "best_of_rank0": sum(1 for r in rows if r["best"] and r["best"]["rank"] == 0),
        "best_of_pass_sampled": sum(1 for r in rows if r["best"] and r["best"]["rank"] < k and r["best"]["sample"]),
        "requests_per_accepted_greedy": round(len(plans) / greedy_ok, 2) if greedy_ok else None,
        "requests_per_accepted_best_of": round(n * len(plans) / best_ok, 2) if best_ok else None,
        "rows": rows,
    }


def write_markdown(result: dict, out: Path) -> None:
    """``best_of.md``: the pass-rate table, then every plan accepted only through a sampled query."""
    s = result["settings"]
    k = s["roundtrip_top_k"]
    lines = [f"# Best-of-{s['n']} generation (`bench/best_of.py`)", "",
             (f"Generator `{s['generator']}`, the first {s['plans']} plans per language of the generate stage; per plan "
              f"the greedy request and {s['n'] - 1} samples at temperature {s['temperature']} (top-p "
              f"{s['top_p']}). Pass: the plan's passage ranks within {k} of every pool passage of its language for "
              "the kept query (best-of-n keeps the best-ranked valid sample). Requests per accepted query is the "
              "cost."), ""]
    table = [["language", "plans", "greedy pass", "greedy rank 0", f"best-of-{s['n']} pass", "rank 0",
              "of which a sampled query", "requests / accepted (greedy)", f"requests / accepted (best-of-{s['n']})"]]
    for lang, m in result["languages"].items():
        table.append([lang, m["plans"], m["greedy_pass"], m["greedy_rank0"], m["best_of_pass"], m["best_of_rank0"],
                      m["best_of_pass_sampled"], m["requests_per_accepted_greedy"] or "-",
                      m["requests_per_accepted_best_of"] or "-"])
    lines += _table(table, "l" + "r" * 8) + [""]
    lines += ["## What best-of-n adds: plans accepted only through a sampled query", "",
              "Judge each against the sentence it was written from: is the query answerable from its passage?", ""]
    for lang, m in result["languages"].items():
        added = [r for r in m["rows"] if r["best"] and r["best"]["rank"] < k and r["best"]["sample"]
                 and not (r["greedy"] and r["greedy"]["rank"] < k)]
        if not added:
            continue
        lines += [f"### {lang}", ""]
        table = [["task", "written from", "greedy query (rank)", "kept sample (rank)"]]
        for r in added:
            greedy = f"{markdown_cell(r['greedy']['query'], 140)} ({r['greedy']['rank']})" if r["greedy"] else "invalid"
            kept = f"{markdown_cell(r['best']['query'], 140)} ({r['best']['rank']})"
            table.append([r["task_type"], markdown_cell(r["evidence"], 140), greedy, kept])
        lines += _table(table, "llll") + [""]
    out.write_text("\n".join(lines), encoding="utf-8")


def _table(rows: list[list], align: str) -> list[str]:
    """Markdown table lines: the header row, the alignment row (``l``/``r`` per column), the body."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(str(c) for c in rows[0]) + " |", rule] + [
        "| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--languages", default="de,hi,th,zh")
    ap.add_argument("--plans", type=int, default=24, help="plans per language (the stage's first plan indices)")
    ap.add_argument("--n", type=int, default=4, help="requests per plan: the greedy one and n-1 samples")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/best_of"))
    args = ap.parse_args()
    if args.n < 2:
        ap.error("--n must be at least 2")
    params = resolved(load_params("params.yaml"))
    set_threads(1)
    g = params.generate
    cache_dir = Path(params.base.cache_dir)
    passages = load_passages(Path("data/prepared"), g.passage_sources, g.languages)
    exemplars = load_exemplars(Path("data/prepared"), g.languages, g.local.snippet_chars) if g.few_shot else {}
    planner = Planner(g, params.base.seed, passages, exemplars)
    ledger = Ledger(g.openai.price_per_1m_input, g.openai.price_per_1m_output)
    backend = backend_from_params(g, ledger, cache_dir, params.base.bf16_inference, 1)
    identity = backend.identity()
    roundtrip = RoundTrip(base_embedder(cache_dir, params.base.bf16_inference), g.roundtrip_top_k)
    langid = LanguageIdentifier(g.languages)
    cache_path = response_cache_path(identity, cache_dir / "bench", "best_of")
    result = {"settings": {"generator": identity.get("model", identity.get("backend")), "plans": args.plans,
                           "n": args.n, "temperature": args.temperature, "top_p": g.local.top_p,
                           "roundtrip_top_k": g.roundtrip_top_k}, "languages": {}}
    with ResponseCache(cache_path) as cache:
        for lang in args.languages.split(","):
            plans = [planner.plan(lang, i) for i in range(args.plans)]
            requests = [r for p in plans for r in samples(p.request, args.n, args.temperature)]
            answers, failures = answer_all(backend, requests, cache, ledger)
            if failures:
                raise SystemExit(f"{lang}: {len(failures)} requests failed; rerun to retry them (answers are cached)")
            m = measure_language(lang, plans, answers, args.n, args.temperature, g, langid, roundtrip,
                                 [x.text for x in planner.pool[lang]])
            result["languages"][lang] = m
            print(f"{lang}: greedy {m['greedy_pass']}/{m['plans']} pass, best-of-{args.n} {m['best_of_pass']}/"
                  f"{m['plans']} ({m['best_of_pass_sampled']} through a sampled query)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
