"""Stage ``evaluate``: score one model on each benchmark of ``evaluate.benchmarks``.

- ``xquad`` (the embedded default): the held-out XQuAD split through mteb's retrieval machinery; writes mteb
  result JSON per task, ``metrics.json`` (nDCG@10, Recall@10, MRR@10 per language and family, plus the headline
  mean) and ``table.md`` into ``--out`` (schema in :mod:`retrofit.evaluation`).
- ``mmteb`` (paper scale): the Retrieval tasks of ``evaluate.mmteb.benchmark`` (the paper's 18 tasks of
  MTEB(Multilingual)) through ``mteb.evaluate``; writes ``--out/mmteb/`` (schema in :mod:`retrofit.paper`). Needs
  the network or a pre-populated ``HF_HOME``; an unreachable dataset fails before the model is loaded.
"""

from pathlib import Path

from retrofit import cli, evaluation, paper
from retrofit.jsonl import read_jsonl


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, type=Path, help="sentence-transformers model directory")
    p.add_argument("--name", required=True, help="unique model name for mteb's result cache")
    p.add_argument("--out", required=True, type=Path, help="output directory (rewritten completely)")
    args = p.parse_args()
    params = cli.init_stage(args)
    cfg = params.evaluate
    bf16 = params.base.bf16_inference
    if "xquad" in cfg.benchmarks:
        xq = Path("data/prepared/xquad")
        tasks = evaluation.build_tasks(
            read_jsonl(xq / "paragraphs.jsonl"),
            read_jsonl(xq / "questions.jsonl"),
            langs=cfg.languages,
            families=cfg.families,
            max_queries_per_lang=cfg.max_queries_per_lang,
            seed=params.base.seed,
        )
        metrics = evaluation.evaluate_model(
            args.model, tasks, args.out, model_name=args.name, batch_size=cfg.batch_size, bf16=bf16
        )
        print(f"evaluate: {args.name} XQuAD headline nDCG@10 = {metrics['headline']['ndcg_at_10']:.4f}")
    if "mmteb" in cfg.benchmarks:
        mm = cfg.mmteb
        metrics = paper.evaluate_mmteb(
            args.model, args.out / "mmteb", mm.tasks, batch_size=cfg.batch_size, model_name=args.name,
            benchmark=mm.benchmark, task_types=mm.task_types, bf16=bf16, max_seq_length=mm.max_seq_length,
        )
        print(f"evaluate: {args.name} {mm.benchmark} mean nDCG@10 = {metrics['headline']['ndcg_at_10']:.4f} "
              f"over {metrics['tasks_done']} task(s)")


if __name__ == "__main__":
    cli.run(main, expected=(RuntimeError, FileNotFoundError))
