"""What does the frozen-trunk cache save, and are the embeddings really unchanged? (issue 11: official tasks for every model)

Encodes the held-out XQuAD passages of ``--langs`` (every paragraph of each language, as the evaluate stage's
``corpus: all``) with the base model and a retrofitted model, at ``evaluate.max_seq_length`` under the evaluate
stage's dtype and threads, three ways: the plain padding-free forward (``trunk_layers: 0``), the trunk cache cold
(computing and storing the lower layers) and warm (the retrofit reading what the base stored). It reports the
time of each and whether the warm and cold embeddings equal the plain ones bit for bit. A benchmark, not a stage:
it writes ``reports/bench/trunk.{json,md}``, uses a private cache directory and changes no pipeline output.

Usage::

    python bench/trunk.py                                   # models/base, then models/scale_12, 3 languages
    python bench/trunk.py --model models/oracle --langs de zh
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from mteb.types import PromptType

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.eval.encoder import load_encoder
from retrofit.io import read_jsonl


def encode(model: Path, texts: list[str], layers: int, cache: Path, params) -> tuple[np.ndarray, float, dict]:
    """Embed ``texts`` as the evaluate stage would; returns the embeddings, seconds and trunk hits/misses."""
    cfg = params.evaluate
    encoder = load_encoder(model, model.name, batch_size=cfg.batch_size, bf16=params.base.bf16_inference,
                           max_seq_length=cfg.max_seq_length, trunk_layers=layers, cache_dir=cache)
    encoder.show_progress_bar = False
    start = time.perf_counter()
    emb = encoder.encode_texts(texts, PromptType.document)
    seconds = time.perf_counter() - start
    trunk = encoder.trunk
    return emb, seconds, ({"hits": trunk.hits, "misses": trunk.misses} if trunk else {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=Path("models/base"))
    p.add_argument("--model", type=Path, default=Path("models/scale_12"))
    p.add_argument("--langs", nargs="+", default=["de", "th", "zh"])
    p.add_argument("--out", type=Path, default=Path("reports/bench/trunk"))
    args = p.parse_args()
    params = resolved(load_params("params.yaml"))  # threads and bf16 as the evaluate stage picks them here
    layers = params.evaluate.trunk_layers
    texts = [r["text"] for r in read_jsonl("data/prepared/xquad/paragraphs.jsonl") if r["lang"] in args.langs]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for name, model in (("base", args.base), ("retrofit", args.model)):
            plain, t_plain, _ = encode(model, texts, 0, cache, params)
            cached, t_cached, counts = encode(model, texts, layers, cache, params)
            rows[name] = {
                "model": str(model), "plain_s": round(t_plain, 2), "trunk_s": round(t_cached, 2), **counts,
                "identical": bool(np.array_equal(plain, cached)),
            }
            print(name, rows[name])
    result = {"texts": len(texts), "langs": args.langs, "trunk_layers": layers,
              "threads": params.base.threads, "max_seq_length": params.evaluate.max_seq_length, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Frozen-trunk cache (bench/trunk.py)", "",
        (f"{len(texts)} held-out XQuAD paragraphs ({', '.join(args.langs)}), {params.evaluate.max_seq_length} tokens, "
         f"{params.base.threads} threads, `evaluate.trunk_layers: {layers}`. `base` runs first and fills the cache "
         "(misses); the retrofit then reads it (hits). `identical`: embeddings equal to the plain forward's, bit for "
         "bit."), "",
        "| model | plain s | trunk s | hits | misses | identical |", "|---|---|---|---|---|---|",
        *[f"| {n} (`{r['model']}`) | {r['plain_s']} | {r['trunk_s']} | {r.get('hits', 0)} | {r.get('misses', 0)} "
          f"| {r['identical']} |" for n, r in rows.items()],
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
