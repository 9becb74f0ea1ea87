"""fp32 ``nn.Linear`` on the CPU through oneDNN instead of the BLAS, forward and backward.

torch computes an fp32 ``nn.Linear`` on the CPU with MKL's sgemm. On the 2-core AMD EPYC behind ``docs/performance.md``
(AVX-512 with the Zen 5 flags) MKL keeps to its AVX2 code path: 185-207 GFLOP/s, where oneDNN, which torch already
ships for bf16, reaches 441 (``bench/linear_kernels.py``). Under bf16 autocast torch already calls oneDNN, so
this module changes nothing there.

:func:`use_kernel` switches every ``nn.Linear`` of a model, in place, to :func:`linear`, which calls oneDNN for
fp32 CPU tensors outside autocast and ``torch.nn.functional.linear`` for anything else. Gradients are the same
three products as torch's (input, weight, bias), each computed by oneDNN. The kernel changes the last bits of every
product, so it is part of every cache key that holds fp32 results (:func:`kernel_identity`). Outputs are
bit-identical at 1 and 2 threads (tested).

The choice is ``base.fp32_linear`` (``auto``: oneDNN where torch has it), resolved once per process by
:func:`retrofit.runtime.resolve_runtime` (:func:`retrofit.runtime.resolve_linear_kernel`) and recorded with the
stage's other runtime choices.
"""

from __future__ import annotations

import logging
import types
from typing import Any

log = logging.getLogger(__name__)

def _mm(a: Any, w: Any, bias: Any = None) -> Any:
    """``a @ w.T (+ bias)`` for 2-D contiguous fp32 CPU tensors, by oneDNN."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), w.contiguous(), bias, "none", [], "")


def _function() -> type:
    """The autograd function (built on first use, so that importing this module does not import torch)."""
    global _ONEDNN_FUNCTION
    if _ONEDNN_FUNCTION is None:
        import torch

        class OneDNNLinear(torch.autograd.Function):
            """``y = x W^T + b`` with its three gradients, every product by oneDNN."""

            @staticmethod
            def forward(ctx: Any, x2: Any, weight: Any, bias: Any) -> Any:  # x2: (tokens, in)
                ctx.save_for_backward(x2, weight)
                ctx.has_bias = bias is not None
                return _mm(x2, weight, bias)  # (tokens, out)

            @staticmethod
            def backward(ctx: Any, grad: Any) -> tuple[Any, Any, Any]:  # grad: (tokens, out)
                x2, weight = ctx.saved_tensors
                grad = grad.contiguous()
                gx = _mm(grad, weight.t()) if ctx.needs_input_grad[0] else None  # (tokens, in)
                gw = _mm(grad.t(), x2.t()) if ctx.needs_input_grad[1] else None  # (out, in)
                gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None  # (out,)
                return gx, gw, gb

        _ONEDNN_FUNCTION = OneDNNLinear
    return _ONEDNN_FUNCTION


_ONEDNN_FUNCTION: type | None = None


def linear(x: Any, weight: Any, bias: Any = None) -> Any:
    """``torch.nn.functional.linear`` with fp32 CPU products by oneDNN (anything else: torch's own).

    Args:
        x: ``(..., in)`` input.
        weight: ``(out, in)``.
        bias: ``(out,)`` or ``None``.

    Returns:
        ``(..., out)``, equal to ``F.linear(x, weight, bias)`` up to the last bits of fp32 rounding.
    """
    import torch

    if (x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu"
            or torch.is_autocast_enabled("cpu") or x.numel() == 0):
        return torch.nn.functional.linear(x, weight, bias)
    x2 = x.reshape(-1, x.shape[-1])  # (tokens, in)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        y2 = _function().apply(x2, weight, bias)
    else:
        y2 = _mm(x2, weight, bias)
    return y2.reshape(*x.shape[:-1], weight.shape[0])  # (..., out)


def _forward(self: Any, x: Any) -> Any:
    return linear(x, self.weight, self.bias)


def use_kernel(model: Any, kernel: str) -> int:
    """Make every ``nn.Linear`` in ``model`` compute fp32 products with ``kernel``, in place.

    Only ``forward`` changes: parameters, ``state_dict`` and saving are untouched.

    Args:
        model: Any ``torch.nn.Module``.
        kernel: ``"onednn"`` or ``"aten"`` (a resolved ``base.fp32_linear``); ``aten`` restores torch's forward.

    Returns:
        The number of ``nn.Linear`` modules switched.
    """
    import torch

    if kernel not in ("onednn", "aten"):
        raise ValueError(f"kernel must be onednn or aten (resolve auto first), got {kernel!r}")
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            if kernel == "onednn":
                module.forward = types.MethodType(_forward, module)
            else:
                module.__dict__.pop("forward", None)
            n += 1
    log.debug("fp32 linear: %d nn.Linear module(s) on %s", n, kernel)
    return n


def kernel_identity(kernel: str, bf16: bool) -> str | None:
    """What a cache key must hold about the linear kernel: ``None`` where it cannot change a bit (bf16, aten)."""
    return None if bf16 or kernel == "aten" else f"fp32-linear-{kernel}"
