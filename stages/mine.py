"""Stage ``mine``: hard negatives from a teacher model, with NV-Retriever's positive-aware false-negative filter.

Reads ``data/deduped/pairs.jsonl``, ``oracle.jsonl``, ``cross.jsonl`` and ``human.jsonl`` where ``dedupe.human``
wrote it (mined alike), the generation pool
(``data/generated/pool.jsonl``: synthetic queries are mined against every passage of their language's pool, and
cross-lingual twins against the English pool), up to
``negatives.english_pool`` prepared passages of each English dataset (``data/prepared/english/<source>.jsonl``, a
nested sample containing the rows' own, decontaminated against ``data/prepared/xquad``'s test split,
:mod:`retrofit.data.english_pool`: English queries are mined against them besides the other rows of their dataset) and
the teacher (``models/teacher``, from the ``teacher`` stage); writes ``data/mined/train.jsonl`` (schema in
:mod:`retrofit.mine`) and ``data/mined/report.json`` (score distributions, candidates dropped per filter, the
English pool's counts; a DVC metric) and ``reports/mine/work.json`` (this run's encoder work, threads and embedding
cache hits, for ``bench/roofline.py``: about the run, not the data). With ``negatives.hard: false`` rows keep no mined negatives (in-batch
negatives only), no model is loaded and no English pool is read. Embeddings are cached under ``base.cache_dir``
keyed by model and text, so changing a mining param re-encodes nothing.
"""

from pathlib import Path

from retrofit import cli
from retrofit.data.english_pool import english_pool
from retrofit.embed.cache import EmbeddingCache
from retrofit.embed.encoder import SentenceTransformerEncoder
from retrofit.embed.work import WORK
from retrofit.filter.dedupe import PAIR_ROW
from retrofit.generate.pipeline import POOL_ROW
from retrofit.io import atomic_dir, read_jsonl, write_json, write_jsonl
from retrofit.mine import mine
from retrofit.models.load import check_model_dir, resolve_teacher
from retrofit.runtime import runtime_choices
from retrofit.schema import CROSS, HUMAN, ORACLE, SYNTHETIC


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    cfg = params.negatives
    # every input is read and checked against its producer's schema before any work
    pool_rows = read_jsonl("data/generated/pool.jsonl", POOL_ROW)
    pairs = [*read_jsonl("data/deduped/pairs.jsonl", PAIR_ROW), *read_jsonl("data/deduped/oracle.jsonl", PAIR_ROW),
             *read_jsonl("data/deduped/cross.jsonl", PAIR_ROW)]
    human = Path("data/deduped/human.jsonl")  # written with dedupe.human (the scale study) only
    pairs += read_jsonl(human, PAIR_ROW) if human.exists() else []
    english, english_counts = [], {}
    if cfg.hard and cfg.english_pool > 0:  # each English dataset's passages join its own rows' partition
        english, english_counts = english_pool([*params.data.english, *params.data.hub_english], cfg.english_pool,
                                               params.dedupe, seed=params.base.seed)
    teacher = resolve_teacher("models/teacher")  # the teacher stage's output: models/base or its own copy
    if cfg.hard:
        check_model_dir(teacher, "teacher" if teacher == Path("models/teacher") else "base_model")
    encoder = SentenceTransformerEncoder(teacher, batch_size=cfg.batch_size, bf16=params.base.bf16_inference)
    cache = EmbeddingCache(Path(params.base.cache_dir) / "embeddings")
    # the generation pool joins the synthetic, oracle (and human) rows' partitions of its language
    sources = (SYNTHETIC, ORACLE, HUMAN) if human.exists() else (SYNTHETIC, ORACLE)
    pool = [{**p, "source": s} for p in pool_rows for s in sources] + english
    # a cross-lingual twin's candidates are English: the English generation pool joins every query language's
    cross_langs = sorted({r["lang"] for r in pairs if r["source"] == CROSS})
    pool += [{**p, "lang": lang, "source": CROSS} for p in pool_rows if p["lang"] == "en" for lang in cross_langs]
    rows, report = mine(pairs, encoder, cfg, cache, rank_window=cfg.rank_window,
                        search_batch_size=cfg.search_batch_size, pool=pool, seed=params.base.seed)
    report["english_pool"] = english_counts  # passages sampled and dropped as contaminated, per dataset
    # Cache hits describe this run, not the data: logged, kept out of the output (and its hash).
    encoding = report.pop("encoding", {})
    print(f"mine: embeddings {encoding}")
    with atomic_dir("data/mined") as out:
        write_jsonl(out / "train.jsonl", rows)
        write_json(out / "report.json", report)
    # The encoder work and threads of this run (the roofline bench's input): about the run, not the data
    write_json(Path("reports/mine/work.json"), {"work": WORK.to_json(), "runtime": runtime_choices(),
                                                "encoding": encoding})
    print(f"mine: {len(rows)} rows, hard negatives {'on' if cfg.hard else 'off'}")


if __name__ == "__main__":
    cli.run(main)
