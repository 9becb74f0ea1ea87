"""Stage ``dedupe``: one training pool from synthetic and English task pairs, decontaminated and deduplicated.

Reads ``data/generated/examples.jsonl`` and ``data/prepared/english/<source>.jsonl`` for every ``data.english`` and
``data.hub_english`` source (a nested, seeded sample of ``dedupe.english_per_source`` pairs per dataset), drops
anything overlapping a text of any evaluation task (``data/prepared/heldout.jsonl``, :mod:`retrofit.data.heldout`),
then exact and near duplicates. Writes
``data/deduped/pairs.jsonl`` (schema in :mod:`retrofit.filter.dedupe`), ``data/deduped/report.json`` (counts before/after
each step, a DVC metric), ``data/deduped/dropped.json``, ``data/deduped/oracle.jsonl`` (a human XQuAD question
in place of every kept synthetic row, :mod:`retrofit.data.oracle`) and ``data/deduped/cross.jsonl`` (each non-English
query with the English version of its passage, :mod:`retrofit.data.cross_lingual`) and, with ``dedupe.human``,
``data/deduped/human.jsonl`` (every training-pool XQuAD question as a row, :func:`retrofit.data.oracle.human_rows`).
"""

from pathlib import Path

from retrofit import cli
from retrofit.data.cross_lingual import cross_rows, english_passages
from retrofit.data.english import ENGLISH_ROW
from retrofit.data.heldout import HELDOUT_ROW, eval_texts
from retrofit.data.oracle import human_rows, oracle_rows
from retrofit.data.sampling import nested_sample_by
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.errors import InputError
from retrofit.filter.dedupe import dedupe
from retrofit.generate.pipeline import EXAMPLE_ROW
from retrofit.io import atomic_dir, read_jsonl, write_json, write_jsonl
from retrofit.schema import SYNTHETIC


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    # every input is read and checked against its producer's schema before any work
    english = []
    for source in [*params.data.english, *params.data.hub_english]:
        path = Path("data/prepared/english") / f"{source}.jsonl"
        if not (rows := read_jsonl(path, ENGLISH_ROW)):
            raise InputError(f"{path}: the English source {source!r} is empty; rerun `prepare` or drop it from "
                             "data.english")
        english += rows
    english = nested_sample_by(english, lambda r: r["source"], params.dedupe.english_per_source, params.base.seed)
    rows = read_jsonl("data/generated/examples.jsonl", EXAMPLE_ROW) + english
    xq = Path("data/prepared/xquad")
    paragraphs = read_jsonl(xq / "paragraphs.jsonl", PARAGRAPH_ROW)
    questions = read_jsonl(xq / "questions.jsonl", QUESTION_ROW)
    heldout = read_jsonl("data/prepared/heldout.jsonl", HELDOUT_ROW)  # every text of every evaluation task
    result = dedupe(rows, eval_texts(heldout), params.dedupe, seed=params.base.seed)
    synthetic = [r for r in result.rows if r["source"] == SYNTHETIC]
    oracle = oracle_rows(synthetic, paragraphs, questions, params.base.seed)
    cross = cross_rows(synthetic, english_passages("data/prepared"))
    with atomic_dir("data/deduped") as out:
        write_jsonl(out / "pairs.jsonl", result.rows)
        write_json(out / "report.json", result.report)
        write_json(out / "dropped.json", result.examples)
        write_jsonl(out / "oracle.jsonl", oracle)
        write_jsonl(out / "cross.jsonl", cross)
        if params.dedupe.human:  # absent otherwise: the default's output (and its hash) does not change
            write_jsonl(out / "human.jsonl", human_rows(paragraphs, questions, params.base.languages))
    c = result.report["counts"]["overall"]
    print(f"dedupe: {c['input']} rows -> {result.report['kept']} kept ({result.report['dropped']['overall']})")


if __name__ == "__main__":
    cli.run(main)
