"""Does mining English rows against more of their dataset change the retrofit? (issue 12, item 4, English side)

The mine stage adds ``negatives.english_pool`` (480) passages of each English dataset's prepared corpus to the
candidates of its rows (:func:`retrofit.data.english_pool.english_pool`: a nested, seeded sample that contains the rows'
own, decontaminated against the held-out XQuAD texts); before, an English row met only the other rows sampled
from its dataset (``dedupe.english_per_source``, 48 here). This benchmark mines exactly as the mine stage does
(``data/deduped`` pairs and oracle rows, the generation pool, the teacher, ``negatives`` params, the shared
embedding cache) but with ``--per-source`` passages per English dataset instead (0: the pipeline before the
English pool). It then trains the top scale point of ``params.yaml`` and evaluates held-out XQuAD as the evaluate
stage does, and compares with the pipeline's own ``scale_12`` and ``base`` (``reports/eval``) by the plot stage's
paired bootstrap, with the seed sd of ``scale_12``/``seed2``/``seed3`` for the verdict. A benchmark, not a stage:
it writes ``reports/bench/english_pool.{json,md}`` and changes no pipeline output. Run it after ``dvc repro``.

Usage::

    python bench/english_pool.py                 # 0 passages: the rows' own sample only
    python bench/english_pool.py --per-source 960
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from retrofit.config import load_params
from retrofit.data.english_pool import english_pool
from retrofit.embed.cache import EmbeddingCache
from retrofit.embed.encoder import SentenceTransformerEncoder
from retrofit.eval.encoder import load_encoder
from retrofit.eval.score import evaluate_encoder
from retrofit.eval.xquad import build_tasks
from retrofit.io import read_jsonl
from retrofit.mine import mine
from retrofit.models.load import resolve_teacher
from retrofit.report.compare import Comparer
from retrofit.report.evaluations import load_evaluations
from retrofit.report.markdown import format_diff
from retrofit.runtime import resolve_bf16, seed_everything, set_threads
from retrofit.schema import ORACLE, SYNTHETIC
from retrofit.train.mixture import select_mixture
from retrofit.train.trainer import train_model

METRICS = ("primary", "mono", "cross", "pooled")
#: The plot stage's verdicts are worded for the paper's findings; here they only say which side is higher.
VERDICT_WORDS = {"reproduced": "higher, resolved", "opposite to the paper": "lower, resolved"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-source", type=int, default=0,
                    help="English passages per dataset in the pool (the pipeline: negatives.english_pool)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", default="reports/bench/english_pool")
    args = ap.parse_args()
    set_threads(args.threads)
    params = load_params("params.yaml")
    seed_everything(params.base.seed)
    t0 = time.perf_counter()
    extra, counts = english_pool([*params.data.english, *params.data.hub_english], args.per_source, params.dedupe,
                                 seed=params.base.seed)
    pool = [{**p, "source": s} for p in read_jsonl("data/generated/pool.jsonl") for s in (SYNTHETIC, ORACLE)] + extra
    cfg = params.negatives
    encoder = SentenceTransformerEncoder(resolve_teacher("models/teacher"), batch_size=cfg.batch_size,
                                         bf16=resolve_bf16(params.base.bf16_inference))
    cache = EmbeddingCache(Path(params.base.cache_dir) / "embeddings")
    pairs = read_jsonl("data/deduped/pairs.jsonl") + read_jsonl("data/deduped/oracle.jsonl")
    mined, report = mine(pairs, encoder, cfg, cache, rank_window=cfg.rank_window,
                         search_batch_size=cfg.search_batch_size, pool=pool, seed=params.base.seed)
    t1 = time.perf_counter()
    rows = select_mixture(mined, params.train, params.base.seed)
    name = "english_pool"
    with tempfile.TemporaryDirectory(prefix="english-pool-") as tmp:
        work = Path(tmp)
        info = train_model(Path("models/base"), rows, params.train, work / "model", name=name,
                           checkpoint_dir=work / "ckpt", live_dir=None, hard_negatives=cfg.hard)
        t2 = time.perf_counter()
        ev_cfg = params.evaluate
        enc = load_encoder(work / "model", name, batch_size=ev_cfg.batch_size,
                                      bf16=resolve_bf16(params.base.bf16_inference), max_seq_length=ev_cfg.max_seq_length)
        xq = Path("data/prepared/xquad")
        tasks = build_tasks(read_jsonl(xq / "paragraphs.jsonl"), read_jsonl(xq / "questions.jsonl"),
                                       ev_cfg.languages, ev_cfg.families, ev_cfg.max_queries_per_lang,
                                       ev_cfg.query_seed, ev_cfg.corpus)
        (work / "eval" / name).mkdir(parents=True)
        evaluate_encoder(enc, tasks, work / "eval" / name)
        t3 = time.perf_counter()
        top = f"scale_{max(params.scale.per_language)}"
        evals = {**load_evaluations(Path("reports/eval"), ["base", top, *params.plot.seed_runs]),
                 **load_evaluations(work / "eval", [name])}
        comparer = Comparer(evals, [top, *params.plot.seed_runs], args.resamples, seed=0)
        keep = ("delta", "lo", "hi", "score_a", "score_b", "seed_sd", "verdict")
        compared = {f"{name} - {other}": {m: {k: c[k] for k in keep} for m in METRICS
                                           if (c := comparer.compare(name, other, m)) is not None}
                    for other in (top, "base")}
    english = {s: v for s, v in report["by_source"].items() if s not in (SYNTHETIC, ORACLE)}
    result = {
        "per_source": args.per_source, "pool": counts,
        "mined_short_english": {s: v["short"] for s, v in english.items()},
        "scores": {k: report["scores"][k] for k in ("positive", "mined_negative", "random_negative")},
        "train": {"rows": info["mixture"]["rows"], "steps": info["steps"], "loss": info["train_loss"]},
        "seconds": {"mine": round(t1 - t0, 1), "train": round(t2 - t1, 1), "evaluate": round(t3 - t2, 1)},
        "compared": compared,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# English rows mined against more or less of their dataset (`bench/english_pool.py`)", "",
             f"Up to {args.per_source} passages per English dataset join its candidate corpus, against "
             f"{params.negatives.english_pool} in the pipeline (decontaminated: "
             + (", ".join(f"{s} {v['contaminated']} of {v['sampled']} dropped" for s, v in counts.items()) or "none")
             + ").",
             (f"The top scale point retrained on the re-mined rows (one seed; loss {info['train_loss']}), against "
              "the pipeline's models; x100, paired bootstrap 95% intervals, verdict by the plot stage's rule."), "",
             "| comparison | metric | Δ [95% interval] | verdict |", "|---|---|---:|---|"]
    for pair, by_metric in compared.items():
        for m, c in by_metric.items():
            verdict = VERDICT_WORDS.get(c["verdict"], c["verdict"])
            lines.append(f"| `{pair}` | {m} | {format_diff(c)} | "
                         f"{verdict} |")
    s = result["scores"]
    lines += ["", "Teacher scores over all rows (mean): positive {:.3f}, mined negative {:.3f}, random negative {:.3f}; "
              "English rows left without a mined negative: {}.".format(
                  s["positive"]["mean"], s["mined_negative"]["mean"], s["random_negative"]["mean"],
                  sum(result["mined_short_english"].values())), ""]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
