"""Stage ``evaluate``: score one model on the held-out XQuAD split through mteb's retrieval machinery.

Writes mteb result JSON per task, ``metrics.json`` (nDCG@10, Recall@10, MRR@10 per language and family, plus the
headline mean) and ``table.md`` into ``--out``.
"""

from pathlib import Path

from retrofit import cli, evaluation
from retrofit.jsonl import read_jsonl


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, type=Path, help="sentence-transformers model directory")
    p.add_argument("--name", required=True, help="unique model name for mteb's result cache")
    p.add_argument("--out", required=True, type=Path, help="output directory (rewritten completely)")
    args = p.parse_args()
    params = cli.init_stage(args)
    cfg = params.evaluate
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
        args.model, tasks, args.out, model_name=args.name, batch_size=cfg.batch_size, bf16=params.base.bf16_inference
    )
    print(f"evaluate: {args.name} headline nDCG@10 = {metrics['headline']['ndcg_at_10']:.4f}")


if __name__ == "__main__":
    cli.run(main)
