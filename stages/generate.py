"""Stage ``generate``: LLM-written multilingual training examples, validated and round-trip filtered.

Writes ``data/generated/`` (``examples.jsonl``, ``metrics.json``, ``rejected.jsonl``; schema in
:mod:`retrofit.generate.pipeline`), ``reports/generate/sample.md`` (a few rows per language, committed so a
reader can judge quality) and ``reports/generate/ledger.json`` (requests, cache hits, tokens and cost of this
run, its wall time, thread decisions and the round-trip embedder's work). Raw responses are cached in
``data/responses/`` before anything parses them, so a killed run resumes without re-sending finished requests; that
folder is a DVC output (``persist: true``), so ``dvc push`` shares it and a collaborator's larger run pays only for
the new requests.
"""

from pathlib import Path

from retrofit import cli
from retrofit.embed.work import WORK
from retrofit.generate.pipeline import run_generation
from retrofit.generate.roundtrip import base_embedder
from retrofit.generate.sample_report import write_sample
from retrofit.io import write_json
from retrofit.models.load import check_model_dir
from retrofit.runtime import runtime_choices


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    check_model_dir("models/base", "base_model")  # the round-trip filter's embedder, before any request
    cache_dir = Path(params.base.cache_dir)
    metrics = run_generation(
        params.generate,
        params.base.seed,
        Path("data/prepared"),
        Path("data/generated"),
        cache_dir,
        encode=base_embedder(cache_dir, params.base.bf16_inference),
        bf16=params.base.bf16_inference,
        threads=params.base.threads,
        responses=Path("data/responses"),
    )
    gen = Path("data/generated")
    write_sample(gen / "examples.jsonl", Path("reports/generate/sample.md"), per_language=5,
                 rejected=gen / "rejected.jsonl", metrics=gen / "metrics.json")
    write_json(Path("reports/generate/ledger.json"), {**metrics["ledger"], "runtime": runtime_choices(),
                                                      "wall_seconds": metrics["wall_seconds"],
                                                      "round_trip_work": WORK.to_json()})
    print(
        f"generate: {metrics['examples']} examples ({metrics['shortfall']} short of {metrics['target']}) "
        f"from {metrics['requests']} requests in {metrics['wall_seconds']} s"
    )


if __name__ == "__main__":
    cli.run(main)
