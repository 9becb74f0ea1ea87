"""Benchmark: throughput of :func:`retrofit.filter.dedupe.dedupe` on 100K+ multilingual rows with planted duplicates.

Rows are built deterministically from real text in the data mirror (``$RETROFIT_DATA_MIRROR``, default
``/work/shared/data``):

- every NTREX-128 line of the 26 languages of ``retrofit.schema.NTREX_CODES`` (news; Chinese, Thai, Arabic, Hindi
  and more) becomes a query, cut to ``--max-query-chars``, with its line and the next two as the positive;
- every question of the XQuAD *train* articles (article index >= 24, all 12 languages) becomes a query with its
  paragraph as the positive;
- copies are planted: an *exact* variant (upper case, doubled whitespace, full-width Latin, or zero-width spaces)
  of ``--exact-rate`` of the base rows, a *near* variant (one or two characters replaced, deleted or inserted) of
  ``--near-rate``, and a *contaminated* copy (one character changed) of 2% of the XQuAD *test* questions;
- the eval texts are every question and paragraph of the XQuAD test articles (article index < 24), 12 languages.

Row ids are assigned in a seeded random order so that the planted copy is as often the smaller id as the original.
For a smaller ``--rows`` the rows are a seeded sample of the full set.

It times the whole :func:`dedupe` call (and its phases), and separately its two kernels: datasketch's MinHash as
the near-duplicate step uses it (``MinHash.bulk`` with ``hashfunc=hash_gram32``) against datasketch's default SHA-1
n-gram hash, and the decontamination index. It also reports the recall of the planted near-duplicates whose Jaccard similarity reaches the threshold (caught = not
both copies kept). It prints a table and writes ``reports/bench/dedupe.json``.

Usage::

    .venv/bin/python bench/dedupe.py                 # full run, 100K+ rows
    .venv/bin/python bench/dedupe.py --rows 10000    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import unicodedata
from pathlib import Path
from typing import Any

from datasketch import MinHash

from retrofit.config import DedupeParams, default_params
from retrofit.filter.decontaminate import ContaminationIndex
from retrofit.filter.dedupe import dedupe
from retrofit.filter.text import char_ngrams, hash_gram32, jaccard, normalize
from retrofit.io import write_json
from retrofit.schema import NTREX_CODES, XQUAD_LANGUAGES

DEFAULT_DATA = Path(os.environ.get("RETROFIT_DATA_MIRROR", "/work/shared/data"))
N_TEST_ARTICLES = 24


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars].rstrip()


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def exact_variant(text: str, rng: random.Random) -> str:
    """A copy that differs only in case, whitespace, compatibility forms or zero-width characters."""
    kind = rng.randrange(4)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return "  " + text.replace(" ", " \t ") + " \n"
    if kind == 2:
        return _fullwidth(text)
    pos = sorted(rng.sample(range(len(text) + 1), min(3, len(text) + 1)))
    return "".join(text[a:b] + "\u200b" for a, b in zip([0, *pos], pos)) + text[pos[-1]:]


def near_variant(text: str, rng: random.Random) -> str:
    """A copy with one or two characters replaced, deleted or inserted (a plausible near-duplicate)."""
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars[i] = rng.choice(chars)
        elif op == 1 and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, rng.choice(chars))
    return "".join(chars)


def load_sources(
    data: Path, max_query_chars: int
) -> tuple[list[dict[str, Any]], dict[str, str], list[tuple[str, str]]]:
    """Base rows, eval texts and the XQuAD test questions (for planting contamination)."""
    base: list[dict[str, Any]] = []
    for lang, code in sorted(NTREX_CODES.items()):
        path = data / "ntrex128" / f"NTREX-128__newstest2019-ref.{code}.txt"
        raw = path.read_text("utf-8").split("\n")
        lines = [ln for ln in (unicodedata.normalize("NFC", x.strip().lstrip("\ufeff")) for x in raw) if ln]
        sep = "" if lang in ("zh", "ja") else " "
        for i, line in enumerate(lines):
            base.append({"lang": lang, "query": _cut(line, max_query_chars), "positive": sep.join(lines[i : i + 3]),
                         "source": None if lang != "en" else "ntrex_en", "source_id": f"ntrex-l{i}"})
    eval_texts: dict[str, str] = {}
    test_questions: list[tuple[str, str]] = []
    for lang in XQUAD_LANGUAGES:
        doc = json.loads((data / "xquad" / f"xquad.{lang}.json").read_text("utf-8"))
        for ai, art in enumerate(doc["data"]):
            for pi, par in enumerate(art["paragraphs"]):
                pid = f"a{ai:02d}p{pi}"
                if ai < N_TEST_ARTICLES:
                    eval_texts[f"xquad-{lang}-{pid}"] = par["context"]
                for qa in par["qas"]:
                    if ai < N_TEST_ARTICLES:
                        eval_texts[f"xquad-{lang}-{qa['id']}"] = qa["question"]
                        test_questions.append((lang, qa["question"]))
                    else:
                        base.append({"lang": lang, "query": qa["question"], "positive": par["context"],
                                     "source": None, "source_id": pid})
    return base, eval_texts, test_questions


def build_rows(
    data: Path, n_rows: int | None, exact_rate: float, near_rate: float, max_query_chars: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, int], list[tuple[str, str]]]:
    """The benchmark rows (synthetic and English-task schemas), the eval texts, the planted counts and the planted
    near-duplicate pairs ``(original id, copy id)`` (both in the returned rows)."""
    rng = random.Random(seed)
    base, eval_texts, test_questions = load_sources(data, max_query_chars)
    planted = {"base": len(base), "exact": 0, "near": 0, "contaminated": 0}
    rows = list(base)
    near_pairs: list[tuple[int, int]] = []  # positions in ``rows``
    for pos, r in enumerate(base):
        if rng.random() < exact_rate:
            rows.append({**r, "query": exact_variant(r["query"], rng)})
            planted["exact"] += 1
        if rng.random() < near_rate:
            near_pairs.append((pos, len(rows)))
            rows.append({**r, "query": near_variant(r["query"], rng)})
            planted["near"] += 1
    for lang, q in test_questions:
        if rng.random() < 0.02:
            rows.append({"lang": lang, "query": near_variant(q, rng), "positive": "unrelated passage " + q[::-1],
                         "source": None, "source_id": None})
            planted["contaminated"] += 1
    ids = [f"b{k:07d}" for k in rng.sample(range(len(rows)), len(rows))]
    out = []
    for rid, r in zip(ids, rows):
        if r["source"] is None:
            out.append({"id": rid, "lang": r["lang"], "task_type": "qa", "query": r["query"],
                        "positive": r["positive"], "negative": None, "source_id": r["source_id"],
                        "generator": {"backend": "bench"}, "prompt_version": "bench", "seed": seed})
        else:
            out.append({"id": rid, "source": r["source"], "task_type": "title", "lang": r["lang"],
                        "query": r["query"], "positive": r["positive"], "negative": None})
    out.sort(key=lambda r: r["id"])
    if n_rows is not None and n_rows < len(out):
        out = random.Random(seed + 1).sample(out, n_rows)
    present = {r["id"] for r in out}
    pairs = [(ids[a], ids[b]) for a, b in near_pairs if ids[a] in present and ids[b] in present]
    return out, eval_texts, planted, pairs


def near_recall(rows: list[dict[str, Any]], kept_ids: set[str], pairs: list[tuple[str, str]],
                params: DedupeParams) -> dict[str, float]:
    """Planted near-duplicate pairs whose exact Jaccard reaches the threshold, and the share caught."""
    query = {r["id"]: normalize(r["query"]) for r in rows}
    eligible = [(a, b) for a, b in pairs
                if query[a] != query[b] and jaccard(query[a], query[b], params.ngram) >= params.threshold]
    caught = sum(1 for a, b in eligible if not (a in kept_ids and b in kept_ids))
    return {"planted_pairs": len(pairs), "pairs_at_or_above_threshold": len(eligible),
            "caught": caught, "recall": round(caught / max(len(eligible), 1), 4)}


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data mirror (ntrex128/, xquad/)")
    ap.add_argument("--rows", type=int, default=None, help="sample this many rows (default: all, ~105K)")
    ap.add_argument("--exact-rate", type=float, default=0.35, help="fraction of base rows given an exact copy")
    ap.add_argument("--near-rate", type=float, default=0.35, help="fraction of base rows given a near copy")
    ap.add_argument("--max-query-chars", type=int, default=160, help="NTREX lines are cut to this query length")
    ap.add_argument("--reference-sample", type=int, default=3000, help="texts for the datasketch MinHash.bulk run")
    ap.add_argument("--big-eval", type=int, default=100_000,
                    help="also index this many distinct training texts as eval texts (0: skip)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/dedupe.json"))
    args = ap.parse_args()
    params = default_params().dedupe  # params.yaml's values (config has no defaults)

    (rows, eval_texts, planted, pairs), t_build = _timed(
        build_rows, args.data, args.rows, args.exact_rate, args.near_rate, args.max_query_chars, args.seed
    )
    n_chars = sum(len(r["query"]) + len(r["positive"]) for r in rows)
    print(f"built {len(rows)} rows ({n_chars / 1e6:.1f}M chars of query+positive), {len(eval_texts)} eval texts "
          f"in {t_build:.1f}s; planted {planted}")

    # Kernel 1: MinHash signatures with datasketch, with our n-gram hash (as dedupe() computes them) and with
    # datasketch's default SHA-1 n-gram hash (as one would use it out of the box), on the same sample.
    queries = sorted({normalize(r["query"]) for r in rows})
    sample = queries[: args.reference_sample]

    def bulk(texts: list[str], **kwargs: Any) -> list[MinHash]:
        return MinHash.bulk(texts, num_perm=params.num_perm, seed=args.seed, scheme="affine32", **kwargs)

    _, t_ours_sample = _timed(bulk, [char_ngrams(t, params.ngram) for t in sample], hashfunc=hash_gram32)
    _, t_ds = _timed(bulk, [[g.encode("utf-8") for g in char_ngrams(t, params.ngram)] for t in sample])
    _, t_ours_all = _timed(bulk, [char_ngrams(t, params.ngram) for t in queries], hashfunc=hash_gram32)

    # Kernel 2: decontamination index build and lookup of every distinct training text.
    index, t_index = _timed(ContaminationIndex, eval_texts, params.decontam_ngram)
    texts = sorted({normalize(r[f]) for r in rows for f in ("query", "positive")})
    _, t_lookup = _timed(index.contamination, texts, params.decontam_threshold)

    # Kernel 2b: the eval side at scale. Index up to --big-eval distinct training texts as if they were eval
    # texts and look the remaining ones up (many are planted copies of indexed ones, so scoring runs too).
    big = []
    if args.big_eval:
        shuffled_texts = random.Random(args.seed + 3).sample(texts, len(texts))
        big_eval, big_query = shuffled_texts[: args.big_eval], shuffled_texts[args.big_eval :]
        big_index, t_big_index = _timed(ContaminationIndex, {f"e{i}": t for i, t in enumerate(big_eval)},
                                        params.decontam_ngram)
        big_hits, t_big_lookup = _timed(big_index.contamination, big_query, params.decontam_threshold)
        n_big_hits = sum(1 for h in big_hits if h.eval_index >= 0 and h.containment >= params.decontam_threshold)
        big = [
            ("decontam index build, large eval set", "eval texts", len(big_eval), t_big_index),
            ("decontam lookup, large eval set", "distinct texts", len(big_query), t_big_lookup),
        ]
        print(f"large eval set: {len(big_eval)} texts, {len(big_index._keys)} postings; "
              f"{n_big_hits} of {len(big_query)} looked-up texts reach the threshold")

    # End to end, twice: the input in file order and shuffled; the outputs must agree.
    cpu0 = time.process_time()
    result, t_total = _timed(dedupe, rows, eval_texts, params, seed=args.seed)
    cpu_total = time.process_time() - cpu0
    shuffled = list(rows)
    random.Random(args.seed + 2).shuffle(shuffled)
    result2, t_total2 = _timed(dedupe, shuffled, eval_texts, params, seed=args.seed)
    deterministic = result.rows == result2.rows and result.report == result2.report
    recall = near_recall(rows, {r["id"] for r in result.rows}, pairs, params)

    c = result.report["counts"]["overall"]
    d = result.report["dropped"]["overall"]
    table = [
        ("minhash datasketch, hash_gram32 (sample)", "queries", len(sample), t_ours_sample),
        ("minhash datasketch, sha1 (sample)", "queries", len(sample), t_ds),
        ("minhash datasketch, hash_gram32 (all)", "queries", len(queries), t_ours_all),
        ("decontam index build", "eval texts", len(eval_texts), t_index),
        ("decontam lookup", "distinct texts", len(texts), t_lookup),
        *big,
        *((f"  dedupe() phase: {phase}", "", len(rows), sec) for phase, sec in result.seconds.items()),
        ("dedupe() end to end", "rows", len(rows), t_total),
        ("dedupe() end to end, shuffled input", "rows", len(rows), t_total2),
    ]
    print()
    print(f"{'step':<42}{'unit':>15}{'items':>9}{'seconds':>9}{'items/s':>10}")
    print("-" * 85)
    for name, unit, n, t in table:
        rate = "" if name.startswith("  ") else f"{n / max(t, 1e-9):.0f}"  # a phase's rate means little alone
        print(f"{name:<42}{unit:>15}{n:>9}{t:>9.2f}{rate:>10}")
    print()
    print(f"dedupe() CPU time {cpu_total:.1f}s for {t_total:.1f}s wall (the host is shared: wall > CPU means waiting)")
    print(f"shuffled input gives identical output: {deterministic}")
    print(f"rows: input {c['input']} -> empty {c['empty']} -> decontam {c['decontam']} -> exact {c['exact']} "
          f"-> near {c['near']}   (dropped {d});  LSH {result.report['near']}")
    print(f"planted near-duplicates: {recall}")

    write_json(args.out, {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "params": params.model_dump(), "seed": args.seed,
        "data": {"rows": len(rows), "eval_texts": len(eval_texts), "chars": n_chars, "planted": planted},
        "timings": [{"step": name.strip(), "unit": unit, "items": n, "seconds": round(t, 3),
                     "items_per_s": round(n / max(t, 1e-9), 1)} for name, unit, n, t in table],
        "dedupe_cpu_seconds": round(cpu_total, 3),
        "near_duplicate_recall": recall,
        "deterministic_under_shuffle": deterministic,
        "minhash_hash_gram32_speedup_vs_sha1": round(t_ds / max(t_ours_sample, 1e-9), 2),
        "report": result.report,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
