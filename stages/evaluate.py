"""Stage ``evaluate``: score one model under the one evaluation condition every model shares.

The model is loaded once, at ``evaluate.max_seq_length`` tokens whatever length it was saved with, and its
embedding cache serves every benchmark below. Its lowest ``evaluate.trunk_layers`` layers come from the
frozen-trunk cache under ``base.cache_dir`` when another model with the same frozen layers has encoded the same
batch before (:mod:`retrofit.embed.trunk`: time only, never the numbers). ``--out`` is rewritten completely, and only on success.

- ``xquad`` (the embedded default): the held-out XQuAD families through mteb's retrieval machinery; writes mteb
  result JSON per family, ``metrics.json`` (the primary metric, nDCG@10, Recall@10 and MRR@10 per language and
  family), ``per_query.json`` (for the bootstrap) and ``table.md``; schema in :mod:`retrofit.eval.score`.
- ``evaluate.official.tasks`` (for the models of ``official.models``; and ``official.base_only`` with
  ``--base``): official mteb tasks run by mteb's
  own classes on the pinned local data (:mod:`retrofit.eval.official`), through :func:`retrofit.eval.mmteb.evaluate_mmteb`;
  writes ``--out/official/`` (per-task results, ``metrics.json``, ``per_query/``).
- ``evaluate.beyond.tasks`` (for the models of ``beyond.models``): tasks beyond retrieval and beyond the training
  languages, in the subsets of ``beyond.languages`` (:mod:`retrofit.eval.beyond`); writes ``--out/beyond/``
  (schema in :mod:`retrofit.eval.beyond_score`).
- Symmetric tasks (bitext, STS, classification, clustering) run under the prompt protocol of their published scores
  (``official.SYMMETRIC_PROMPTS``, ``beyond.SYMMETRIC_PROMPTS``).
- ``mmteb`` (paper scale): the Retrieval tasks of ``evaluate.mmteb.benchmark`` (the paper's 18 tasks of
  MTEB(Multilingual)); writes ``--out/mmteb/`` (schema in :mod:`retrofit.eval.mmteb`). Needs the network or a
  pre-populated ``HF_HOME``; an unreachable dataset fails before the model is loaded. With
  ``evaluate.mmteb.data: local`` (the rehearsal's offline stand-in) its tasks are official tasks on the pinned files.
"""

import time
from pathlib import Path

from retrofit import cli
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.eval import beyond, mmteb, official
from retrofit.eval.beyond_score import evaluate_beyond
from retrofit.eval.encoder import load_encoder
from retrofit.eval.score import evaluate_encoder, write_stage_timing
from retrofit.eval.xquad import build_tasks
from retrofit.io import atomic_dir, read_jsonl
from retrofit.models.load import check_model_dir


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, type=Path, help="sentence-transformers model directory")
    p.add_argument("--name", required=True, help="unique model name for mteb's result cache")
    p.add_argument("--out", required=True, type=Path, help="output directory (rewritten completely)")
    p.add_argument("--base", action="store_true", help="the base model: also run evaluate.official.base_only")
    args = p.parse_args()
    params = cli.init_stage(args)
    cfg = params.evaluate
    bf16 = params.base.bf16_inference
    runs_official = cfg.official.models is None or args.name in cfg.official.models
    names = [*(cfg.official.tasks if runs_official else []), *(cfg.official.base_only if args.base else [])]
    # bad data or a bad model directory fails before any work
    tasks = [official.load_task(name, "data/raw") for name in names]
    mm = cfg.mmteb
    local_mmteb = ([official.load_task(name, "data/raw") for name in mm.tasks or []]
                   if "mmteb" in cfg.benchmarks and mm.data == "local" else None)
    runs_beyond = cfg.beyond.models is None or args.name in cfg.beyond.models
    for name in cfg.beyond.tasks if runs_beyond else []:
        beyond.load_beyond_task(name, "data/raw", cfg.beyond.languages)
    check_model_dir(args.model, "base_model" if args.base else None)
    xq = Path("data/prepared/xquad")
    if "xquad" in cfg.benchmarks:
        paragraphs = read_jsonl(xq / "paragraphs.jsonl", PARAGRAPH_ROW)
        questions = read_jsonl(xq / "questions.jsonl", QUESTION_ROW)
    started = time.perf_counter()
    with atomic_dir(args.out) as out:
        if "mmteb" in cfg.benchmarks:  # first: a missing hub dataset fails before any other work
            metrics = mmteb.evaluate_mmteb(
                args.model, out / "mmteb", local_mmteb or mm.tasks, batch_size=cfg.batch_size, model_name=args.name,
                benchmark=None if local_mmteb else mm.benchmark, task_types=mm.task_types, bf16=bf16,
                max_seq_length=cfg.max_seq_length,
            )
            which = "offline stand-in" if local_mmteb else mm.benchmark
            print(f"evaluate: {args.name} {which} mean main score = {metrics['headline']['main_score']:.4f} "
                  f"over {metrics['tasks_done']} task(s)")
        encoder = load_encoder(
            args.model, args.name, batch_size=cfg.batch_size, bf16=bf16, max_seq_length=cfg.max_seq_length,
            trunk_layers=cfg.trunk_layers, cache_dir=params.base.cache_dir, backend=cfg.backend,
            symmetric_prompts={**official.SYMMETRIC_PROMPTS, **beyond.SYMMETRIC_PROMPTS},
        )
        if "xquad" in cfg.benchmarks:
            families = build_tasks(
                paragraphs, questions, langs=cfg.languages,
                families=cfg.families, max_queries_per_lang=cfg.max_queries_per_lang, seed=cfg.query_seed,
                corpus=cfg.corpus, distractors=cfg.distractors,
            )
            metrics = evaluate_encoder(encoder, families, out)
            print(f"evaluate: {args.name} XQuAD primary nDCG@10 = {metrics['primary']['ndcg_at_10']:.4f} "
                  f"at {cfg.max_seq_length} tokens")
        if tasks:
            done = mmteb.evaluate_mmteb(args.model, out / "official", tasks, model_name=args.name, benchmark=None,
                                        encoder=encoder, per_query=True)
            print(f"evaluate: {args.name} official: " + ", ".join(
                f"{n} {t['main_score']:.4f}" for n, t in done["tasks"].items()))
        beyond_s = None
        if runs_beyond and cfg.beyond.tasks:
            done = evaluate_beyond(cfg.beyond.tasks, "data/raw", cfg.beyond.languages, encoder, out / "beyond",
                                   batch_size=cfg.batch_size)
            beyond_s = round(done["eval_s"], 3)
            print(f"evaluate: {args.name} beyond: {len(done['tasks'])} task(s) in {beyond_s:.0f} s")
        write_stage_timing(out / "stage_timing.json", encoder, started, beyond_s=beyond_s)


if __name__ == "__main__":
    cli.run(main)
