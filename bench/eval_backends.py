"""Which runtime should encode the evaluation, and does it change any score? (issue 25: evaluation at hardware speed)

Three measurements, on this machine, of the evaluate stage's own model and texts:

1. **Throughput.** The same sample of evaluation texts (held-out XQuAD passages and questions, Tatoeba sentences),
   encoded by the base model at ``evaluate.max_seq_length`` in padded, length-sorted batches of
   ``evaluate.batch_size``, by: torch's padding-free forward (today's path), ONNX Runtime (fp32, the graph
   sentence-transformers' ``backend="onnx"`` runs) and OpenVINO (the graph of ``backend="openvino"``), each in fp32
   and, where the CPU has it natively, bf16. Tokens per second and the smallest cosine to torch fp32.
2. **Thread invariance of the trunk.** The lower ``evaluate.trunk_layers`` layers of every batch of the sample at 1
   and at 2 threads, compared bit for bit, for torch and OpenVINO at each precision: the frozen-trunk cache keys
   entries without the thread count only because these are equal.
3. **Scores.** The evaluate stage run on the base model under each backend at each precision (a full stage each:
   XQuAD families and every official task), and every task's main score compared with torch at the same precision.
   The adoption rule: each main score within 0.01 (x100) of torch's. Stage outputs go to
   ``reports/bench/eval_backends/<backend>-<precision>/`` (not DVC outputs); ``--reuse`` keeps finished ones.

Writes ``reports/bench/eval_backends.{json,md}``. A benchmark, not a stage: run it on an idle machine.

Usage::

    python bench/eval_backends.py              # all three
    python bench/eval_backends.py --no-scores  # throughput and thread invariance only (about 4 minutes)
    python bench/eval_backends.py --scores-only --reuse   # rewrite the scores from finished stage runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrofit.cli import resolved
from retrofit.config import load_params
from retrofit.embed.openvino import OpenVINOStack
from retrofit.embed.unpad import Packing, embed_packed, run_layers, unpadded_hidden_states
from retrofit.io import read_jsonl
from retrofit.runtime import native_bf16

OUT = Path("reports/bench/eval_backends")
TOLERANCE = 0.01  # points (x100) of a task's main score: the adoption rule


def sample_texts(n_passages: int, n_queries: int, n_sentences: int) -> list[str]:
    """Prompted evaluation texts: XQuAD paragraphs and held-out questions, and Tatoeba sentences."""
    paragraphs = [r["text"] for r in read_jsonl("data/prepared/xquad/paragraphs.jsonl")]
    questions = [r["text"] for r in read_jsonl("data/prepared/xquad/questions.jsonl") if r["split"] == "test"]
    sentences: list[str] = []
    files = sorted(Path("data/raw/tatoeba").glob("tatoeba.*"))  # one sentence per line, per language side
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        sentences += [t for t in lines[: max(1, n_sentences // len(files))] if t.strip()]
    step_p, step_q = max(1, len(paragraphs) // n_passages), max(1, len(questions) // n_queries)
    return ([f"passage: {t}" for t in paragraphs[::step_p][:n_passages]]
            + [f"query: {t}" for t in questions[::step_q][:n_queries]]
            + [f"query: {t}" for t in sentences[:n_sentences]])


def batches(tokenizer: Any, texts: list[str], batch_size: int, max_len: int) -> list[dict[str, Any]]:
    """Length-sorted padded batches, as the evaluation encodes them."""
    texts = sorted(texts, key=lambda t: (-len(t), t))
    return [tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt") for i in range(0, len(texts), batch_size)]


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised mean pooling (multilingual-e5's pooling)."""
    m = mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((h.float() * m).sum(1) / m.sum(1), dim=-1)  # (batch, hidden)


def timed(fn: Any, data: list[dict[str, Any]]) -> tuple[float, torch.Tensor]:
    """Seconds for one pass of ``fn`` over ``data`` after a warm-up batch, and the pooled embeddings."""
    fn(data[-1])
    start = time.perf_counter()
    out = [mean_pool(fn(b), b["attention_mask"]) for b in data]
    return time.perf_counter() - start, torch.cat(out)


def throughput(backbone: Any, data: list[dict[str, Any]], threads: int, precisions: list[str]) -> list[dict]:
    """Tokens per second of each runtime and precision, and the smallest cosine to torch fp32."""
    tokens = sum(int(b["attention_mask"].sum()) for b in data)
    rows, ref = [], None

    def torch_fn(bf16: bool) -> Any:
        def run(b: dict[str, Any]) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return unpadded_hidden_states(backbone, b["input_ids"], b["attention_mask"])
        return run

    def onnx_fn() -> Any:
        import onnxruntime as ort

        path = Path(tempfile.mkdtemp()) / "model.onnx"

        class Wrap(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.b = backbone

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return self.b(input_ids=ids, attention_mask=mask).last_hidden_state

        ex = data[0]
        torch.onnx.export(Wrap(), (ex["input_ids"], ex["attention_mask"]), str(path), input_names=["ids", "mask"],
                          output_names=["h"], dynamic_axes={n: {0: "b", 1: "l"} for n in ("ids", "mask", "h")},
                          dynamo=False, opset_version=17)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda b: torch.from_numpy(session.run(None, {"ids": b["input_ids"].numpy(),
                                                              "mask": b["attention_mask"].numpy()})[0])

    candidates: list[tuple[str, str, Any]] = []
    for prec in precisions:
        candidates.append(("torch (padding-free)", prec, lambda p=prec: torch_fn(p == "bf16")))
        if prec == "f32":
            candidates.append(("onnxruntime", prec, onnx_fn))
        candidates.append(("openvino", prec, lambda p=prec: (lambda s: lambda b: s.hidden_states(
            backbone, b["input_ids"], b["attention_mask"]))(OpenVINOStack(backbone, 0, p == "bf16", threads))))
    for name, prec, make in candidates:
        try:
            fn = make()
        except Exception as err:  # an optional runtime that is missing or cannot export: report, do not fail
            rows.append({"runtime": name, "precision": prec, "error": f"{type(err).__name__}: {err}"[:200]})
            continue
        seconds, emb = timed(fn, data)
        if ref is None:
            ref = emb
        rows.append({"runtime": name, "precision": prec, "seconds": round(seconds, 2),
                     "tokens_per_s": round(tokens / seconds), "min_cos_to_torch_f32": float((emb * ref).sum(1).min())})
        print(rows[-1], flush=True)
    return rows


def thread_invariance(backbone: Any, data: list[dict[str, Any]], depth: int, precisions: list[str]) -> list[dict]:
    """Whether the trunk's states are bit-identical at 1 and 2 threads, per runtime and precision."""
    rows = []
    for prec in precisions:
        for runtime in ("torch", "openvino"):
            states = {}
            for n in (1, 2):
                torch.set_num_threads(n)
                if runtime == "openvino":
                    stack = OpenVINOStack(backbone, depth, prec == "bf16", n)
                    states[n] = [stack.lower_packed(b["input_ids"], b["attention_mask"],
                                                    Packing.of(b["attention_mask"])) for b in data]
                    continue
                out = []
                for b in data:
                    packing = Packing.of(b["attention_mask"])
                    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                        h = embed_packed(backbone, packing, b["input_ids"])
                        out.append(run_layers(backbone.encoder.layer[:depth], h, packing).float())
                states[n] = out
            same = sum(torch.equal(a, b) for a, b in zip(states[1], states[2], strict=True))
            rows.append({"runtime": runtime, "precision": prec, "batches": len(data), "bit_identical": same})
            print(rows[-1], flush=True)
    return rows


def stage_scores(backend: str, precision: str, reuse: bool) -> dict[str, float]:
    """Main score (x100) of every task of the evaluate stage on the base model, under ``backend``/``precision``."""
    out = OUT / f"{backend}-{precision}"
    if not (reuse and (out / "official" / "metrics.json").is_file()):
        env = {**os.environ, "RETROFIT_CPU_BF16": "1" if precision == "bf16" else "0"}
        subprocess.run([sys.executable, "stages/evaluate.py", "--model", "models/base", "--name", "base", "--base",
                        "--out", str(out), "--set", f"evaluate.backend={backend}"], env=env, check=True)
    xq = json.loads((out / "metrics.json").read_text())
    scores = {"XQuAD primary": 100 * xq["primary"]["ndcg_at_10"]}
    scores.update({f"XQuAD {f}": 100 * v["ndcg_at_10"] for f, v in xq["families"].items()})
    official = json.loads((out / "official" / "metrics.json").read_text())["tasks"]
    scores.update({t: 100 * v["main_score"] for t, v in official.items()})
    timing = out / "stage_timing.json"  # absent in a stage run before this file existed
    return {**scores, "_stage_s": json.loads(timing.read_text())["stage_s"] if timing.is_file() else None}


def markdown(report: dict[str, Any]) -> str:
    """The report's tables."""
    lines = ["# Evaluation runtimes: throughput, thread invariance and scores", "",
             f"Written by `bench/eval_backends.py` on {report['machine']}. {report['threads']} threads.", "",
             "## Throughput on the evaluation's texts", "",
             f"{report['texts']} texts ({report['tokens']} tokens): XQuAD passages and questions, Tatoeba sentences, "
             "the base model, length-sorted padded batches.", "",
             "| runtime | precision | seconds | tokens/s | min cosine to torch fp32 |", "|---|---|---:|---:|---:|"]
    for r in report["throughput"]:
        if "error" in r:
            lines.append(f"| {r['runtime']} | {r['precision']} | - | - | {r['error']} |")
        else:
            lines.append(f"| {r['runtime']} | {r['precision']} | {r['seconds']} | {r['tokens_per_s']} | "
                         f"{r['min_cos_to_torch_f32']:.6f} |")
    lines += ["", "## The trunk at 1 and 2 threads", "",
              "| runtime | precision | batches | bit-identical |", "|---|---|---:|---:|"]
    lines += [f"| {r['runtime']} | {r['precision']} | {r['batches']} | {r['bit_identical']} |"
              for r in report["threads_check"]]
    if report.get("scores"):
        lines += ["", "## Main scores of the base model (x100), against torch at the same precision", "",
                  f"Adoption rule: every task within {TOLERANCE} of torch.", ""]
        f32 = report["scores"].get("f32", {}).get("torch", {})
        for prec, by_backend in report["scores"].items():
            ref = by_backend.get("torch", {})
            other = by_backend.get("openvino", {})
            context = prec != "f32" and bool(f32)
            lines += [f"### {prec}", "", "| task | torch | openvino | difference |"
                      + (" torch f32 | torch bf16 - f32 |" if context else ""),
                      "|---|---:|---:|---:|" + ("---:|---:|" if context else "")]
            for task in [t for t in ref if not t.startswith("_")]:
                d = other.get(task, float("nan")) - ref[task]
                row = f"| {task} | {ref[task]:.4f} | {other.get(task, float('nan')):.4f} | {d:+.4f} |"
                if context:
                    row += f" {f32.get(task, float('nan')):.4f} | {ref[task] - f32.get(task, float('nan')):+.4f} |"
                lines.append(row)
            lines.append(f"| stage seconds | {ref.get('_stage_s')} | {other.get('_stage_s')} | |"
                         + (" | |" if context else ""))
            lines += ["", f"Verdict at {prec}: {report['verdicts'].get(prec)}", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-scores", action="store_true", help="skip the full evaluate runs")
    p.add_argument("--scores-only", action="store_true",
                   help="keep the throughput and thread sections of the last report; only (re)score")
    p.add_argument("--reuse", action="store_true", help="keep finished evaluate runs under reports/bench/eval_backends")
    p.add_argument("--out", type=Path, default=Path("reports/bench/eval_backends"))
    args = p.parse_args()
    params = resolved(load_params("params.yaml"))
    threads = params.base.threads
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer("models/base", device="cpu", local_files_only=True)
    backbone = model[0].auto_model.eval()
    cfg = params.evaluate
    texts = sample_texts(192, 256, 512)
    data = batches(model.tokenizer, texts, cfg.batch_size, cfg.max_seq_length)
    precisions = ["f32", "bf16"] if native_bf16()[0] else ["f32"]
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, {native_bf16()[1]}", "threads": threads, "texts": len(texts),
        "tokens": sum(int(b["attention_mask"].sum()) for b in data),
    }
    last = Path(f"{args.out}.json")
    if args.scores_only and last.is_file():
        old = json.loads(last.read_text())
        report.update({k: old[k] for k in ("machine", "threads", "texts", "tokens", "throughput", "threads_check")})
    else:
        report["throughput"] = throughput(backbone, data, threads, precisions)
        report["threads_check"] = thread_invariance(backbone, data, cfg.trunk_layers, precisions)
    torch.set_num_threads(threads)
    report["scores"], report["verdicts"] = {}, {}
    if not args.no_scores:
        for prec in precisions:
            by = {b: stage_scores(b, prec, args.reuse) for b in ("torch", "openvino")}
            report["scores"][prec] = by
            worst = max(abs(by["openvino"][t] - by["torch"][t]) for t in by["torch"] if not t.startswith("_"))
            report["verdicts"][prec] = (f"largest difference {worst:.4f}: "
                                        + ("within" if worst <= TOLERANCE else "outside") + f" the {TOLERANCE} rule")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
