"""Does a text's embedding depend on the texts encoded beside it? (the embedding cache's reproducibility)

:class:`retrofit.embed.cache.EmbeddingCache` serves an embedding to every later run, whatever batch it was computed
in, so an embedding that changes with its batch makes ``data/mined`` depend on the cache's history: a fresh clone
mined other negatives for 4 of 1003 rows. This bench encodes the first ``--n`` distinct training positives of
``data/mined/train.jsonl`` (every language, English included) with the teacher, under each dtype this CPU offers,
four ways:

- ``padded``: sentence-transformers' own batching (length-sorted, padded to the longest text of each batch), the
  encoder's behaviour before; once in order and once split among other partners (a shuffled order, 4 calls);
- ``grouped``: :class:`~retrofit.embed.encoder.SentenceTransformerEncoder`, which batches only texts of equal token
  length; in order, among other partners, and at the other thread count;
- ``alone``: each of the first ``--n-alone`` texts encoded by itself (batch size 1), the reference.

It reports, per pair, how many rows are equal bit for bit and the largest absolute difference, and the seconds of
each way. A benchmark, not a stage: it writes ``reports/bench/encoder_batching.{json,md}`` and changes no pipeline
output or cache.

Usage::

    python bench/encoder_batching.py
    python bench/encoder_batching.py --n 500 --n-alone 200
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.embed.encoder import SentenceTransformerEncoder
from retrofit.io import read_jsonl, write_json
from retrofit.models.load import resolve_teacher
from retrofit.runtime import inference_autocast, native_bf16, set_threads


def padded(enc: SentenceTransformerEncoder, texts: list[str]) -> np.ndarray:
    """The encoder's behaviour before: one sentence-transformers call, padded batches."""
    with inference_autocast(enc.bf16, "cpu"):
        return np.asarray(enc.model.encode_document(texts, prompt_name="passage", batch_size=enc.batch_size,
                                                    normalize_embeddings=True, convert_to_numpy=True),
                          dtype=np.float32)


def other_partners(fn, texts: list[str], seed: int = 0, calls: int = 4) -> np.ndarray:
    """Embed ``texts`` in a shuffled order split over ``calls`` calls, returned in the original order."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    size = -(-len(texts) // calls)
    shuffled = np.concatenate([fn([texts[i] for i in order[start : start + size]])
                               for start in range(0, len(texts), size)])  # (n, dim), in shuffled order
    out = np.empty_like(shuffled)
    out[order] = shuffled
    return out


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Rows equal bit for bit (count and share) and the largest absolute difference."""
    equal = (a == b).all(axis=1)
    return {"rows": len(a), "bitwise_equal": int(equal.sum()), "share_equal": round(float(equal.mean()), 4),
            "max_abs_diff": float(np.abs(a - b).max())}


def timed(fn, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - start, 2)


def run(model: Path, texts: list[str], n_alone: int, bf16: bool, threads: int, batch_size: int) -> dict:
    """Every comparison for one dtype."""
    set_threads(threads)
    enc = SentenceTransformerEncoder(model, batch_size=batch_size, bf16=bf16)
    enc.encode(texts[:8], "passage")  # load and warm up before timing
    pad, pad_s = timed(padded, enc, texts)
    pad_other = other_partners(lambda t: padded(enc, t), texts)
    grp, grp_s = timed(enc.encode, texts, "passage")
    grp_other = other_partners(lambda t: enc.encode(t, "passage"), texts)
    alone, alone_s = timed(lambda: np.concatenate([enc.encode([t], "passage") for t in texts[:n_alone]]))
    other_threads = 1 if threads > 1 else 2
    set_threads(other_threads)
    grp_threads = enc.encode(texts, "passage")
    set_threads(threads)
    return {
        "dtype": "bf16-autocast" if bf16 else "fp32", "threads": threads,
        "length_groups": len(enc.length_groups(texts, "passage")),
        "seconds": {"padded": pad_s, "grouped": grp_s,
                    "alone_extrapolated": round(alone_s * len(texts) / n_alone, 2)},
        "padded_vs_other_partners": compare(pad, pad_other),
        "grouped_vs_other_partners": compare(grp, grp_other),
        "grouped_vs_alone": compare(grp[:n_alone], alone),
        "padded_vs_alone": compare(pad[:n_alone], alone),
        f"grouped_vs_{other_threads}_threads": compare(grp, grp_threads),
        "grouped_vs_padded": compare(grp, pad),
    }


def markdown(result: dict) -> str:
    lines = [
        "# Batch-independent embeddings (bench/encoder_batching.py)", "",
        (f"{result['texts']} distinct training positives of `data/mined/train.jsonl` (all languages), encoded as "
         f"passages by the teacher `{result['model']}`, batch size {result['batch_size']}. `padded`: "
         "sentence-transformers' batching (the encoder before); `grouped`: batches of equal token length (the "
         f"encoder now); `alone`: batch size 1 (the first {result['n_alone']} texts). *Other partners*: the same "
         "texts shuffled over 4 calls. A row is *equal* when all its floats are equal bit for bit."), "",
        "| dtype | threads | comparison | rows equal | largest difference |", "|---|---:|---|---:|---:|",
    ]
    for r in result["runs"]:
        for key, value in r.items():
            if isinstance(value, dict) and "bitwise_equal" in value:
                lines.append(f"| {r['dtype']} | {r['threads']} | {key.replace('_', ' ')} | "
                             f"{value['bitwise_equal']}/{value['rows']} | {value['max_abs_diff']:.2g} |")
    lines += ["", "| dtype | threads | length groups | padded s | grouped s | alone s (extrapolated) |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['dtype']} | {r['threads']} | {r['length_groups']} | {r['seconds']['padded']} | "
              f"{r['seconds']['grouped']} | {r['seconds']['alone_extrapolated']} |" for r in result["runs"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="distinct training positives to encode")
    p.add_argument("--n-alone", type=int, default=100, help="of those, how many to encode one at a time")
    p.add_argument("--out", type=Path, default=Path("reports/bench/encoder_batching"))
    args = p.parse_args()
    params = resolved(load_params("params.yaml"))  # threads and bf16 as the mine stage picks them here
    model = resolve_teacher("models/teacher")
    texts = list(dict.fromkeys(r["positive"] for r in read_jsonl("data/mined/train.jsonl")))[: args.n]
    dtypes = [True, False] if native_bf16()[0] else [False]
    runs = []
    for bf16 in dtypes:
        runs.append(run(model, texts, min(args.n_alone, len(texts)), bf16, params.base.threads,
                        params.negatives.batch_size))
        print(json.dumps(runs[-1], indent=1))
    result = {"texts": len(texts), "n_alone": min(args.n_alone, len(texts)), "model": str(model),
              "batch_size": params.negatives.batch_size, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
