"""fp32 ``nn.Linear`` on this CPU: torch's BLAS (MKL) against oneDNN, the choice behind ``base.fp32_linear`` (issue 25).

torch runs an fp32 linear on the CPU with MKL's sgemm, which keeps to its AVX2 path on AMD CPUs;
:mod:`retrofit.embed.linear` calls oneDNN instead. This measures, on the machine where it runs:

- GFLOP/s of the base model's layer shapes (``tokens x 384 -> 384``, ``384 -> 1536``, ``1536 -> 384``), forward alone
  and forward plus backward (input and weight gradients), for each kernel;
- one training step's forward and backward through the base model (its top ``--trainable`` layers trainable, as
  ``train.trainable_layers``) on ``--batch`` XQuAD paragraphs at 128 tokens, for each kernel, and the largest
  difference of the loss and of the gradients between the two;
- bit-identity of the oneDNN outputs at 1 and 2 threads.

Writes ``reports/bench/linear_kernels.{json,md}``.

Usage::

    python bench/linear_kernels.py --tokens 4096 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from retrofit.embed.linear import use_kernel
from retrofit.io import read_jsonl
from retrofit.runtime import set_threads

KERNELS = ("aten", "onednn")


def _best(fn: Any, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (after one warm-up), in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_rows(tokens: int, repeats: int) -> list[dict[str, Any]]:
    """GFLOP/s of each layer shape and kernel, forward and forward + backward."""
    rows = []
    for d_in, d_out in ((384, 384), (384, 1536), (1536, 384)):
        g = torch.Generator().manual_seed(d_in + d_out)
        x = torch.randn(tokens, d_in, generator=g)
        for kernel in KERNELS:
            layer = torch.nn.Linear(d_in, d_out)
            use_kernel(layer, kernel)
            xg = x.clone().requires_grad_()

            def fwd() -> None:
                with torch.no_grad():
                    layer(x)

            def fwd_bwd() -> None:
                layer(xg).sum().backward()

            flops = 2 * tokens * d_in * d_out
            rows.append({"shape": f"{tokens}x{d_in}->{d_out}", "kernel": kernel,
                         "forward_gflops": round(flops / _best(fwd, repeats) / 1e9, 1),
                         "fwd_bwd_gflops": round(3 * flops / _best(fwd_bwd, repeats) / 1e9, 1)})
    return rows


def training_step(batch: int, trainable: int, repeats: int) -> dict[str, Any]:
    """One forward + backward of the base model on ``batch`` paragraphs under each kernel, and how far they differ."""
    from sentence_transformers import SentenceTransformer

    from retrofit.embed.unpad import enable_unpadding

    texts = [r["text"] for r in read_jsonl("data/prepared/xquad/paragraphs.jsonl")][:batch]
    out: dict[str, Any] = {"batch": batch, "trainable_layers": trainable}
    results = {}
    for kernel in KERNELS:
        model = SentenceTransformer("models/base", device="cpu", local_files_only=True)
        model.max_seq_length = 128
        layers = model[0].auto_model.encoder.layer
        for p in model.parameters():
            p.requires_grad = False
        for layer in layers[len(layers) - trainable:]:
            for p in layer.parameters():
                p.requires_grad = True
        use_kernel(model, kernel)
        enable_unpadding(model)
        model.train()
        features = model.tokenize(texts)

        def step(model: Any = model, features: Any = features) -> Any:
            torch.manual_seed(0)
            model.zero_grad(set_to_none=True)
            emb = model({k: v.clone() if hasattr(v, "clone") else v for k, v in features.items()})["sentence_embedding"]
            loss = torch.logsumexp(emb @ emb.T / 0.05, dim=1).mean()  # an InfoNCE-like loss over the batch
            loss.backward()
            return loss

        out[f"{kernel}_step_s"] = round(_best(step, repeats), 3)
        loss = step()
        results[kernel] = (float(loss), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    (la, ga), (lb, gb) = results["aten"], results["onednn"]
    out["loss_rel_diff"] = abs(la - lb) / abs(la)
    # over all gradients at once: a key bias's gradient is zero up to rounding (softmax ignores it), so a ratio per
    # tensor would divide rounding noise by rounding noise
    flat_a, flat_b = torch.cat([a.flatten() for a in ga]), torch.cat([b.flatten() for b in gb])
    out["grad_rel_diff"] = float((flat_a - flat_b).norm() / flat_a.norm())
    out["speedup"] = round(out["aten_step_s"] / out["onednn_step_s"], 2)
    return out


def thread_identity(tokens: int) -> bool:
    """Whether oneDNN gives the same bits at 1 and 2 threads on every layer shape."""
    same = True
    for d_in, d_out in ((384, 384), (384, 1536), (1536, 384)):
        g = torch.Generator().manual_seed(7)
        x = torch.randn(tokens, d_in, generator=g)
        layer = torch.nn.Linear(d_in, d_out)
        use_kernel(layer, "onednn")
        outs = []
        for n in (1, 2):
            set_threads(n)
            with torch.no_grad():
                outs.append(layer(x))
        same &= torch.equal(outs[0], outs[1])
    set_threads(2)
    return bool(same)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--trainable", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/linear_kernels"))
    args = ap.parse_args()
    set_threads(2)
    gemm = gemm_rows(args.tokens, args.repeats)
    step = training_step(args.batch, args.trainable, max(2, args.repeats // 3))
    same = thread_identity(args.tokens)
    result = {"gemm": gemm, "training_step": step, "onednn_bits_same_at_1_and_2_threads": same,
              "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["# fp32 linear: torch's BLAS (aten, MKL) against oneDNN", "",
             f"Generated by `bench/linear_kernels.py` on this machine (torch {torch.__version__}, "
             f"{result['cpu_capability']}, 2 threads). Best of {args.repeats} runs.", "",
             "| shape | kernel | forward GFLOP/s | forward + backward GFLOP/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['shape']} | {r['kernel']} | {r['forward_gflops']} | {r['fwd_bwd_gflops']} |" for r in gemm]
    lines += ["", f"One training step (forward and backward, {step['batch']} XQuAD paragraphs at 128 tokens, top "
              f"{step['trainable_layers']} layers trainable): aten {step['aten_step_s']} s, oneDNN "
              f"{step['onednn_step_s']} s ({step['speedup']}x). Loss relative difference {step['loss_rel_diff']:.1e}, "
              f"gradients differ by {step['grad_rel_diff']:.1e} of their norm.", "",
              f"oneDNN outputs bit-identical at 1 and 2 threads: {'yes' if same else 'no'}.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
