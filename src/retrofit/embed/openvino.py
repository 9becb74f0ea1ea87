"""OpenVINO forward for BERT-family encoders at inference: the same weights, compiled for the CPU it runs on.

On the reference 2-core CPUs, OpenVINO's CPU plugin encodes multilingual-e5-small faster than torch's eager
padding-free forward at the same precision (``bench/eval_backends.py`` measures it on the evaluation's own texts:
``reports/bench/eval_backends.md``). It fuses each layer's attention into one kernel and runs bf16 where the CPU has
it natively (``INFERENCE_PRECISION_HINT``), f32 elsewhere, matching ``base.bf16_inference``.

The encoder is compiled as two graphs split at a depth, so that the frozen-trunk cache (:mod:`retrofit.embed.trunk`)
can serve the lower one:

- the *lower* graph: token ids and mask -> hidden states after the embeddings and the first ``depth`` layers;
- the *upper* graph: those hidden states and the mask -> the last hidden states.

Both take padded ``[batch, length]`` batches (the evaluation sorts texts by length, so padding is small) and are
traced from the Hugging Face modules' own weights, with attention written as ``scaled_dot_product_attention`` over
the padding mask, as in :mod:`retrofit.embed.unpad`. Padded positions of the result are zero.

OpenVINO's model converter sends usage analytics (``openvino-telemetry``) unless a consent file in the user's home
says no; like DVC's ``core.analytics``, this project sends none: :func:`convert` runs the converter with
OpenVINO's own telemetry stub.
"""

from __future__ import annotations

import logging
from typing import Any

from retrofit.embed.unpad import Packing, unsupported_reason

log = logging.getLogger(__name__)


def unavailable_reason(backbone: Any) -> str | None:
    """Why the OpenVINO forward cannot serve ``backbone``, or ``None`` when it can."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install openvino)"
    reason = unsupported_reason(backbone)
    if reason:
        return reason
    if getattr(backbone.config, "model_type", "") != "bert":
        # XLM-R derives position ids from the token ids; only BERT's arange positions are traced and tested here
        return f"model type {backbone.config.model_type!r}: the OpenVINO path is traced and tested for 'bert' only"
    return None


def _stack_module(embeddings: Any, layers: Any) -> Any:
    """A traceable ``nn.Module`` running ``embeddings`` (or nothing) and then ``layers`` over a padded batch."""
    import torch
    import torch.nn.functional as F

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = embeddings
            self.layers = torch.nn.ModuleList(layers)

        def forward(self, x: Any, attention_mask: Any) -> Any:
            h = self.embeddings(input_ids=x) if self.embeddings is not None else x  # (batch, length, hidden)
            mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, length): every real key of the row
            for layer in self.layers:
                attn = layer.attention.self
                heads, head_dim = attn.num_attention_heads, attn.attention_head_size

                def split(t: Any) -> Any:
                    return t.unflatten(-1, (heads, head_dim)).transpose(1, 2)  # (batch, heads, length, head_dim)

                ctx = F.scaled_dot_product_attention(
                    split(attn.query(h)), split(attn.key(h)), split(attn.value(h)), attn_mask=mask, scale=attn.scaling
                )
                ctx = ctx.transpose(1, 2).flatten(-2)  # (batch, length, hidden)
                h = layer.attention.output(ctx, h)
                h = layer.output(layer.intermediate(h), h)
            return h * attention_mask.unsqueeze(-1).to(h.dtype)  # zero at padding, as the padding-free forward

    return Stack().eval()


def convert(module: Any, example: tuple[Any, ...]) -> Any:
    """``openvino.convert_model`` of a torch module, without OpenVINO's usage analytics."""
    import openvino as ov
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    saved = convert_impl.tm, telemetry_utils.tm
    convert_impl.tm = telemetry_utils.tm = telemetry_stub
    try:
        return ov.convert_model(module, example_input=example)
    finally:
        convert_impl.tm, telemetry_utils.tm = saved


class OpenVINOStack:
    """A BERT-family backbone compiled by OpenVINO as a lower and an upper graph split at ``depth``.

    Attributes:
        depth: Encoder layers in the lower graph (0: the lower graph is the embeddings alone).
        precision: ``"bf16"`` or ``"f32"``, the inference precision asked of the CPU plugin.
        identity: What changes the floating-point result (OpenVINO's version and the precision), for cache keys.
    """

    def __init__(self, backbone: Any, depth: int, bf16: bool, threads: int) -> None:
        """Trace and compile both graphs.

        Args:
            backbone: A Hugging Face BERT model (checked by :func:`unavailable_reason`).
            depth: Layers in the lower graph, between 0 and the model's layer count.
            bf16: Compile for bf16 inference (only where the CPU has it natively: ``base.bf16_inference``).
            threads: CPU threads of the compiled graphs (the stage's thread choice).

        Raises:
            ValueError: The backbone is not supported, or ``depth`` is out of range.
        """
        import openvino as ov
        import torch

        reason = unavailable_reason(backbone)
        if reason:
            raise ValueError(f"OpenVINO forward: {reason}")
        layers = list(backbone.encoder.layer)
        if not 0 <= depth <= len(layers):
            raise ValueError(f"OpenVINO forward: depth {depth} is not between 0 and the model's {len(layers)} layers")
        self.depth = depth
        self.precision = "bf16" if bf16 else "f32"
        self.identity = f"openvino-{ov.__version__}|{self.precision}"
        hidden = backbone.config.hidden_size
        ids = torch.ones(2, 8, dtype=torch.long)
        mask = torch.ones(2, 8, dtype=torch.long)
        config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": int(threads),
                  "PERFORMANCE_HINT": "LATENCY"}
        core = ov.Core()
        with torch.no_grad():
            lower = convert(_stack_module(backbone.embeddings, layers[:depth]), (ids, mask))
            upper = convert(_stack_module(None, layers[depth:]), (torch.zeros(2, 8, hidden), mask))
        self._lower = core.compile_model(lower, "CPU", config).create_infer_request()
        self._upper = core.compile_model(upper, "CPU", config).create_infer_request()

    @staticmethod
    def _run(request: Any, x: Any, attention_mask: Any) -> Any:
        import torch

        out = request.infer({0: x.detach().cpu().numpy(), 1: attention_mask.detach().cpu().numpy()})
        return torch.from_numpy(out[0].copy())  # (batch, length, hidden) float32

    def lower(self, input_ids: Any, attention_mask: Any) -> Any:
        """Padded hidden states after the embeddings and the first ``depth`` layers: ``[batch, length, hidden]``."""
        return self._run(self._lower, input_ids, attention_mask)

    def upper(self, hidden: Any, attention_mask: Any) -> Any:
        """The last hidden states from padded lower states: ``[batch, length, hidden]``, zero at padding."""
        return self._run(self._upper, hidden.float(), attention_mask)

    def lower_packed(self, input_ids: Any, attention_mask: Any, packing: Packing) -> Any:
        """:meth:`lower` at the real tokens only, packed as ``[tokens, hidden]`` (the trunk cache's layout)."""
        return packing.pack(self.lower(input_ids, attention_mask))

    def upper_packed(self, h: Any, attention_mask: Any, packing: Packing) -> Any:
        """:meth:`upper` from packed ``[tokens, hidden]`` lower states."""
        return self.upper(packing.pad(h), attention_mask)

    def hidden_states(self, backbone: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """The last hidden states, with :func:`retrofit.embed.unpad.unpadded_hidden_states`'s signature."""
        check_segments(token_type_ids)
        return self.upper(self.lower(input_ids, attention_mask), attention_mask)


def check_segments(token_type_ids: Any) -> None:
    """The graphs are traced with segment 0 everywhere, as every e5 text is encoded."""
    if token_type_ids is not None and bool(token_type_ids.any()):
        raise ValueError("OpenVINO forward: non-zero token_type_ids are not supported (the graphs assume segment 0)")
