"""What the held-out XQuAD corpus's distractor paragraphs cost and buy (issues 25 and 26: the time budget).

The mono and cross corpora hold a language's 80 held-out paragraphs and, as distractors, its 160 training-pool
paragraphs (``evaluate.corpus: all``). The distractors are 58% of the tokens every evaluation encodes, and
evaluation is most of the default's wall time, so this bench asks what they buy: the resolution of the findings.
For each model it encodes every text once, as the evaluate stage does (the stage's encoder, frozen trunk and
backend), then scores the mono and cross families against corpora that keep 0, 40, 80 or all 160 distractors per
language (:func:`retrofit.eval.xquad.build_tasks`' ``distractors``: a nested, seeded sample, the same paragraphs in
every language) through the stage's own scorer (:func:`retrofit.eval.score.per_query_scores`). The all-160 scores
at the pipeline's own count (``evaluate.distractors``) are checked against the committed
``reports/eval/<model>/per_query.json``.

Per distractor count it reports the tokens an evaluation encodes (its time is proportional: the forward is
compute-bound, ``docs/performance.md``), every model's primary score, and each finding's difference with the plot
stage's seed-and-question interval (:class:`retrofit.report.compare.Comparer`), with its *resolution*: the
difference over the interval's half-width (above 1: resolved). Writes ``reports/bench/distractors.{json,md}``; changes
no pipeline output. Run it after ``dvc repro``.

Usage::

    python bench/distractors.py
    python bench/distractors.py --models base scale_0 scale_24 --counts 0 80
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrofit.config import load_params
from retrofit.embed.encoder import token_lengths
from retrofit.eval.encoder import load_encoder
from retrofit.eval.score import embed_tasks, per_query_scores, primary_per_question
from retrofit.eval.stats import task_score
from retrofit.eval.xquad import PRIMARY_FAMILIES, build_tasks
from retrofit.io import read_jsonl
from retrofit.report.compare import Comparer
from retrofit.report.evaluations import Evaluation
from retrofit.report.markdown import format_diff
from retrofit.runtime import resolve_bf16, set_threads

#: The comparisons behind the paper's findings in the default (RESULTS.md), and the retrofit against its base.
PAIRS = (("scale_24", "scale_0", "1. synthetic data helps"), ("scale_24", "scale_12", "1. last step"),
         ("scale_24", "nohard", "2. hard negatives"), ("div_task", "div_lang", "3. task > language"),
         ("scale_24", "base", "retrofit - base"))
MODELS = ("base", "scale_0", "scale_12", "scale_24", "seed2", "seed3", "nohard",
          "div_lang", "div_lang_seed2", "div_lang_seed3", "div_task", "div_task_seed2", "div_task_seed3")


def family_scores(per_query: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Each family's score (the mean of its subsets' means, as mteb averages) and the primary metric."""
    out = {f: task_score(subsets) for f, subsets in per_query.items()}
    out["primary"] = float(np.mean([out[f] for f in PRIMARY_FAMILIES]))
    return out


def score_model(name: str, params: Any, data: tuple[list, list], counts: list[int | None]) -> dict[str, Any]:
    """Encode ``name``'s texts once and score mono and cross at every distractor count."""
    cfg = params.evaluate
    started = time.perf_counter()
    encoder = load_encoder(Path("models") / name, name, batch_size=cfg.batch_size,
                           bf16=resolve_bf16(params.base.bf16_inference), max_seq_length=cfg.max_seq_length,
                           trunk_layers=cfg.trunk_layers, cache_dir=params.base.cache_dir, backend=cfg.backend)
    out: dict[str, Any] = {"per_query": {}, "tokens": {}}
    # every distractor first, in the batches an evaluate stage with all of them makes (every family's texts at once),
    # whose frozen-trunk entries such a run left; the smaller counts' texts are subsets, already embedded
    embed_tasks(encoder, build_tasks(*data, langs=cfg.languages, families=cfg.families,
                                     max_queries_per_lang=cfg.max_queries_per_lang, seed=cfg.query_seed,
                                     corpus=cfg.corpus))
    for count in counts:
        tasks = build_tasks(*data, langs=cfg.languages, families=list(PRIMARY_FAMILIES),
                            max_queries_per_lang=cfg.max_queries_per_lang, seed=cfg.query_seed, corpus=cfg.corpus,
                            distractors=count)
        embed_tasks(encoder, tasks)
        key = "all" if count is None else str(count)
        out["per_query"][key] = {task.family: per_query_scores(task, encoder) for task in tasks}
        texts = {(kind, t) for task in tasks for kind, ts in task.texts_by_prompt_type().items() for t in ts}
        out["tokens"][key] = sum(int(token_lengths(encoder.model, [t for k, t in texts if k == kind],
                                                   encoder.prompt_for(kind)).sum()) for kind in {k for k, _ in texts})
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--counts", nargs="+", type=int, default=[0, 40, 80], help="distractors per language (all: always)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--work", default=".cache/retrofit/bench/distractors", help="per-model results, kept for reruns")
    ap.add_argument("--out", default="reports/bench/distractors")
    args = ap.parse_args()
    set_threads(args.threads)
    params = load_params("params.yaml")
    xq = Path("data/prepared/xquad")
    data = (read_jsonl(xq / "paragraphs.jsonl"), read_jsonl(xq / "questions.jsonl"))
    counts: list[int | None] = [None, *sorted(set(args.counts) | ({params.evaluate.distractors} - {None}))]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    scored: dict[str, dict[str, Any]] = {}
    for name in args.models:
        path = work / f"{name}.json"
        if path.is_file() and set(json.loads(path.read_text())["tokens"]) >= {str(c) if c is not None else "all"
                                                                             for c in counts}:
            scored[name] = json.loads(path.read_text())
            continue
        scored[name] = score_model(name, params, data, counts)
        path.write_text(json.dumps(scored[name]))
        print(f"{name}: {scored[name]['seconds']} s", flush=True)

    own = "all" if params.evaluate.distractors is None else str(params.evaluate.distractors)
    check = {}
    for name, s in scored.items():  # at the pipeline's count, the scores are the committed evaluation's
        committed = json.loads((Path("reports/eval") / name / "per_query.json").read_text())["ndcg_at_10"]
        check[name] = max(abs(v - committed[f][sub][q]) for f, subs in s["per_query"][own].items()
                          for sub, vals in subs.items() for q, v in vals.items())
    keys = ["all", *(str(c) for c in counts[1:])]
    seeds = {arm: list(runs) for arm, runs in params.plot.arm_seeds.items()}
    top = f"scale_{max(params.scale.per_language)}"
    seeds[top] = list(params.plot.seed_runs)
    result: dict[str, Any] = {"counts": keys, "pipeline_count": own, "per_query_check_max_abs": check,
                              "by_count": {}}
    for key in keys:
        evals = {}
        for name, s in scored.items():
            pq = s["per_query"][key]
            fam = family_scores(pq)
            evals[name] = Evaluation(name, {"primary": {"ndcg_at_10": fam["primary"]},
                                            "families": {f: {"ndcg_at_10": fam[f]} for f in PRIMARY_FAMILIES}},
                                     {"primary": primary_per_question(pq), "ndcg_at_10": pq})
        cmp = Comparer(evals, {a: [r for r in runs if r in evals] for a, runs in seeds.items()}, top,
                       args.resamples, params.plot.bootstrap_seed, params.plot.equivalence_margin / 100)
        pairs = {}
        for a, b, label in PAIRS:
            c = cmp.compare(a, b) if a in evals and b in evals else None
            if c is not None:
                half = (c["hi"] - c["lo"]) / 2
                pairs[label] = {"a": a, "b": b, "delta": c["delta"], "lo": c["lo"], "hi": c["hi"],
                                "resolution": round(abs(c["delta"]) / half, 2) if half else None,
                                "seeds": f"{len(c['runs_a'])} vs {len(c['runs_b'])}", "verdict": c["verdict"]}
        result["by_count"][key] = {
            "tokens_per_model": next(iter(scored.values()))["tokens"][key],
            "primary": {n: round(100 * e.score("primary"), 2) for n, e in evals.items()},
            "pairs": pairs,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    full = result["by_count"]["all"]["tokens_per_model"]
    lines = ["# The held-out XQuAD corpus's distractors: what they cost and what they buy (`bench/distractors.py`)", "",
             "Mono and cross corpora with the 80 held-out paragraphs of a language and 0, 40, 80 or all 160 of its "
             "training-pool paragraphs as distractors (a nested seeded sample, the same in every language); every "
             "model encoded once by the evaluate stage's encoder and scored by its scorer. x100; intervals: the plot "
             "stage's (seeds and questions where both arms have seeds). Resolution: |Δ| over the interval's "
             f"half-width (above 1: resolved). At the pipeline's own count ({own}, `evaluate.distractors`) the "
             f"per-query values match the committed evaluations within {max(check.values()):.1e}.", "",
             "| distractors per language | tokens per evaluation | share of all 160's | "
             + " | ".join(f"{label}: Δ [95%] (resolution)" for _, _, label in PAIRS) + " |",
             "|---|---:|---:|" + "---:|" * len(PAIRS)]
    for key in keys:
        row = result["by_count"][key]
        cells = [f"{format_diff(p)} ({p['resolution']})" if (p := row["pairs"].get(label)) else "-"
                 for _, _, label in PAIRS]
        lines.append(f"| {'160 (all)' if key == 'all' else key} | {row['tokens_per_model']:,} | "
                     f"{row['tokens_per_model'] / full:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "Primary score of each model:", "", "| model | " + " | ".join(keys) + " |",
              "|---|" + "---:|" * len(keys)]
    for name in scored:
        scores = [f"{result['by_count'][k]['primary'][name]:.2f}" for k in keys]
        lines.append(f"| `{name}` | " + " | ".join(scores) + " |")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
