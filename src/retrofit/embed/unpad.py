"""Padding-free training forward for BERT-family encoders (BERT, RoBERTa, XLM-R: multilingual-e5, the paper's
candidates).

A batch of texts padded to its longest member spends most of its matrix work on pad tokens when lengths vary (a
12-token query padded to a 256-token passage). :func:`enable_unpadding` replaces the forward of a
sentence-transformers ``Transformer`` module with one that runs every token-wise operation (the Q/K/V and output
projections, the feed-forward block, the layer norms) on the real tokens only, packed as one ``[tokens, hidden]``
matrix. Only attention itself, about 5% of an encoder's FLOPs at 256 tokens, sees the padded layout, through
``torch.nn.functional.scaled_dot_product_attention`` with the padding mask. This is the "remove padding" scheme of
NVIDIA's FasterTransformer and ByteDance's Effective Transformer, written against the Hugging Face modules' own
weights, so checkpoints, saving and loading are unchanged.

The result equals the padded forward up to float rounding (tested in ``tests/embed/test_unpad.py``); padded positions
of the returned ``token_embeddings`` are zero, which mean and CLS pooling ignore. Anything that is not a plain
bidirectional BERT-family encoder (decoders, cross-attention, relative positions, remote-code models such as
gte-multilingual-base, which unpads on its own) keeps the standard forward, with a log line saying why.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retrofit.embed.work import WORK

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})


def unsupported_reason(backbone: Any) -> str | None:
    """Why ``backbone`` cannot use the padding-free forward, or ``None`` when it can."""
    config = getattr(backbone, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "decoder or cross-attention configuration"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.position_embedding_type!r} (only absolute is supported)"
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if layers is None or not hasattr(backbone, "embeddings"):
        return "no embeddings/encoder.layer modules"
    for layer in layers:
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is None or not all(hasattr(attn, n) for n in ("query", "key", "value")):
            return "a layer without attention.self.query/key/value"
        if not all(hasattr(layer, n) for n in ("intermediate", "output")):
            return "a layer without intermediate/output blocks"
    return None


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a padded ``[batch, length]`` batch sit in the packed ``[tokens, hidden]`` layout.

    Attributes:
        batch: Rows of the padded batch.
        length: Columns of the padded batch.
        idx: Flat positions (``row * length + column``) of the real tokens, in order.
        key_mask: ``[batch, 1, 1, length]``: every query may attend to every real key of its row.
    """

    batch: int
    length: int
    idx: Any
    key_mask: Any

    @classmethod
    def of(cls, attention_mask: Any) -> Packing:
        """The packing of a ``[batch, length]`` mask (1 for real tokens and 0 for padding, on either side)."""
        batch, length = attention_mask.shape
        real = attention_mask.bool()
        return cls(batch, length, real.reshape(-1).nonzero().squeeze(1), real[:, None, None, :])

    def pack(self, x: Any) -> Any:
        """``[batch, length, d]`` (or ``[batch * length, d]``) padded rows to the real tokens' ``[tokens, d]``."""
        return x.reshape(self.batch * self.length, -1).index_select(0, self.idx)

    def pad(self, x: Any) -> Any:
        """``[tokens, d]`` packed rows back to ``[batch, length, d]``, zero at padding."""
        out = x.new_zeros(self.batch * self.length, x.shape[-1])
        return out.index_copy(0, self.idx, x).view(self.batch, self.length, x.shape[-1])


def embed_packed(backbone: Any, packing: Packing, input_ids: Any, token_type_ids: Any = None) -> Any:
    """The embedding layer's output at the real tokens: ``[tokens, hidden]``."""
    emb = backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    return packing.pack(emb)


def run_layers(layers: Any, h: Any, packing: Packing) -> Any:
    """Run BERT-family encoder ``layers`` over packed hidden states ``h`` (``[tokens, hidden]``), real tokens only.

    Every token-wise operation runs on ``h`` itself; attention sees the padded layout through
    ``scaled_dot_product_attention`` with ``packing.key_mask``.
    """
    import torch.nn.functional as F

    batch, length = packing.batch, packing.length
    for layer in layers:
        attn = layer.attention.self
        heads, head_dim = attn.num_attention_heads, attn.attention_head_size

        def split(x: Any) -> Any:
            return packing.pad(x).view(batch, length, heads, head_dim).transpose(1, 2)

        q, k, v = split(attn.query(h)), split(attn.key(h)), split(attn.value(h))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=packing.key_mask, dropout_p=attn.dropout.p if attn.training else 0.0,
            scale=attn.scaling,
        )
        ctx = packing.pack(ctx.transpose(1, 2))  # (tokens, heads * head_dim)
        h = layer.attention.output(ctx, h)  # dense, dropout, residual, LayerNorm: token-wise
        h = layer.output(layer.intermediate(h), h)
    return h


def unpadded_hidden_states(backbone: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
    """The last hidden states of a BERT-family ``backbone``, computed on real tokens only.

    Args:
        backbone: A Hugging Face ``BertModel``/``XLMRobertaModel`` (checked by :func:`unsupported_reason`).
        input_ids: ``[batch, length]`` token ids.
        attention_mask: ``[batch, length]``, 1 for real tokens and 0 for padding (either side).
        token_type_ids: Optional ``[batch, length]`` segment ids.

    Returns:
        ``[batch, length, hidden]``: the same as ``backbone(...).last_hidden_state`` at real tokens, zero at padding.
    """
    packing = Packing.of(attention_mask)
    h = embed_packed(backbone, packing, input_ids, token_type_ids)
    return packing.pad(run_layers(backbone.encoder.layer, h, packing))


def enable_unpadding(model: Any, hidden_states: Callable[..., Any] = unpadded_hidden_states) -> bool:
    """Switch a SentenceTransformer's first (``Transformer``) module to the padding-free forward, in place.

    Only the forward changes: parameters, ``save``/``load`` and the model card are untouched, and a reloaded
    model uses the standard forward.

    Args:
        model: A ``SentenceTransformer``.
        hidden_states: Computes the token embeddings, with :func:`unpadded_hidden_states`'s signature and result
            (:class:`retrofit.embed.trunk.TrunkCache` passes one that reuses cached lower layers).

    Returns:
        True when the padding-free forward is now active; False (with the reason logged) when the model keeps the
        standard forward.
    """
    module = model[0]
    backbone = getattr(module, "auto_model", None)
    reason = "the first module has no auto_model" if backbone is None else unsupported_reason(backbone)
    if reason:
        log.info("unpad: keeping the padded forward: %s", reason)
        return False

    def forward(self: Any, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "input_ids" not in features or "attention_mask" not in features:
            return type(self).forward(self, features, **kwargs)
        WORK.add(features["attention_mask"].sum(1).tolist(), len(self.auto_model.encoder.layer))
        features["token_embeddings"] = hidden_states(
            self.auto_model, features["input_ids"], features["attention_mask"], features.get("token_type_ids")
        )
        return features

    module.forward = types.MethodType(forward, module)
    return True
