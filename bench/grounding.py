"""Where should the round-trip filter's cut be? Human questions against noise and the generator (issue 13, item 3).

The generate stage keeps a query when the base model ranks its own passage within ``generate.roundtrip_top_k`` of
every candidate of its language (the generation pool plus the planned positives; :class:`RoundTrip`). This bench
scores, with that very filter and embedder (the shared embedding cache included), three kinds of query per
language:

- **human**: XQuAD training-pool questions whose paragraph is in the pool (up to ``--per-language``, seeded): the
  queries the filter must keep;
- **noise**: the same questions, each paired with another pool passage of its language (a seeded derangement): a
  grounded-looking query for the wrong passage, which the filter must drop;
- **generated**: every query the stage validated, accepted (``examples.jsonl``) or rejected by the round trip
  (``rejected.jsonl``, reason ``roundtrip``), at the rank the stage gave it (both files record it): the stage's own
  filter decisions, not a re-ranking.

It reports, per language and overall, the share of each kind whose passage ranks within k for k in 1, 3, 5, 10, and
the median rank. A cut calibrated on human questions keeps most of them and little noise. A benchmark, not a stage:
run it after ``dvc repro``; it writes ``reports/bench/grounding.{json,md}`` and changes no pipeline output.

Usage::

    python bench/grounding.py
    python bench/grounding.py --per-language 200
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.generate.pipeline import EXAMPLE_ROW, POOL_ROW
from retrofit.generate.roundtrip import RoundTrip, base_embedder
from retrofit.io import read_jsonl

KS = (1, 3, 5, 10)
KINDS = ("human", "noise", "generated")


def summary(ranks: list[int]) -> dict:
    """Pass rate at each k and the median rank of a list of ranks (0 = first)."""
    r = np.asarray(ranks)
    return {"n": len(ranks), **{f"top{k}": round(float((r < k).mean()), 3) if len(r) else None for k in KS},
            "median_rank": float(np.median(r)) if len(r) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-language", type=int, default=100, help="human questions per language")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/grounding"))
    args = ap.parse_args()
    params = resolved(load_params("params.yaml"))
    roundtrip = RoundTrip(base_embedder(Path(params.base.cache_dir), params.base.bf16_inference),
                          params.generate.roundtrip_top_k)

    pool = defaultdict(list)
    for row in read_jsonl("data/generated/pool.jsonl", POOL_ROW):
        pool[row["lang"]].append(row)
    examples = read_jsonl("data/generated/examples.jsonl", EXAMPLE_ROW)
    rejected = [r for r in read_jsonl("data/generated/rejected.jsonl") if r["reason"] == "roundtrip"]
    xq = Path("data/prepared/xquad")
    paragraphs = {(r["lang"], r["id"]): r["text"] for r in read_jsonl(xq / "paragraphs.jsonl", PARAGRAPH_ROW)}
    questions = read_jsonl(xq / "questions.jsonl", QUESTION_ROW)

    ranks: dict[str, dict[str, list[int]]] = {}
    for lang in params.generate.languages:
        texts = [p["text"] for p in pool[lang]]
        in_pool = {p["source_id"] for p in pool[lang]}
        accepted = [e for e in examples if e["lang"] == lang]
        generated = [e["roundtrip_rank"] for e in accepted] + [r["roundtrip_rank"] for r in rejected
                                                                 if r["lang"] == lang]
        candidates = list(dict.fromkeys(texts + [e["positive"] for e in accepted]))  # as the stage: pool + positives
        human = [(q["text"], paragraphs[(lang, q["paragraph_id"])]) for q in questions
                 if q["lang"] == lang and q["split"] == "train" and f"xquad:{q['paragraph_id']}" in in_pool]
        human = random.Random(f"{params.base.seed}:grounding:{lang}").sample(human, min(args.per_language, len(human)))
        rng = random.Random(f"{params.base.seed}:noise:{lang}")
        noise = []
        for query, own in human:  # another passage of the pool: grounded-looking, wrong
            noise.append((query, rng.choice([t for t in texts if t != own])))
        ranks[lang] = {
            kind: roundtrip.ranks([q for q, _ in pairs], [p for _, p in pairs], candidates)
            for kind, pairs in (("human", human), ("noise", noise))
        }
        ranks[lang]["generated"] = generated
        print(lang, {kind: summary(r)["top1"] for kind, r in ranks[lang].items()}, flush=True)

    table = {lang: {kind: summary(r) for kind, r in by_kind.items()} for lang, by_kind in ranks.items()}
    overall = {kind: summary([x for by_kind in ranks.values() for x in by_kind[kind]]) for kind in KINDS}
    report = {"roundtrip_top_k": params.generate.roundtrip_top_k, "per_language": table, "overall": overall,
              "candidates": "the generation pool of the language plus every accepted positive, as the stage"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Round-trip cut calibrated on human questions (bench/grounding.py)", "",
        (f"Share of queries whose own passage the base model ranks within k among every candidate of its language "
         f"(the generate stage's filter; today `generate.roundtrip_top_k: {params.generate.roundtrip_top_k}`). "
         "human: XQuAD training-pool questions; noise: the same questions paired with another pool passage; "
         "generated: every query the stage validated, accepted or round-trip-rejected, at the stage's own rank "
         "(so its top-k share at today's k is the stage's round-trip pass rate)."), "",
        "| language | kind | n | top-1 | top-3 | top-5 | top-10 | median rank |", "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lang, by_kind in [*table.items(), ("all", overall)]:
        for kind in KINDS:
            s = by_kind[kind]
            lines.append(f"| {lang} | {kind} | {s['n']} | " + " | ".join(str(s[f'top{k}']) for k in KS)
                         + f" | {s['median_rank']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
