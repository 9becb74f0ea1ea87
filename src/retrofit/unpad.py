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

The result equals the padded forward up to float rounding (tested in ``tests/test_unpad.py``); padded positions
of the returned ``token_embeddings`` are zero, which mean and CLS pooling ignore. Anything that is not a plain
bidirectional BERT-family encoder (decoders, cross-attention, relative positions, remote-code models such as
gte-multilingual-base, which unpads on its own) keeps the standard forward, with a log line saying why.
"""

from __future__ import annotations

import logging
import types
from typing import Any

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
    import torch.nn.functional as F

    batch, length = input_ids.shape
    real = attention_mask.bool()
    idx = real.reshape(-1).nonzero().squeeze(1)  # flat positions of the real tokens
    emb = backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    h = emb.reshape(batch * length, -1).index_select(0, idx)  # [tokens, hidden]
    hidden = h.shape[-1]
    key_mask = real[:, None, None, :]  # [batch, 1, 1, length]: every query may attend to every real key

    def pad(x: Any) -> Any:
        out = x.new_zeros(batch * length, x.shape[-1])
        return out.index_copy(0, idx, x).view(batch, length, x.shape[-1])

    for layer in backbone.encoder.layer:
        attn = layer.attention.self
        heads, head_dim = attn.num_attention_heads, attn.attention_head_size

        def split(x: Any) -> Any:
            return pad(x).view(batch, length, heads, head_dim).transpose(1, 2)

        q, k, v = split(attn.query(h)), split(attn.key(h)), split(attn.value(h))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=attn.dropout.p if attn.training else 0.0, scale=attn.scaling
        )
        ctx = ctx.transpose(1, 2).reshape(batch * length, heads * head_dim).index_select(0, idx)
        h = layer.attention.output(ctx, h)  # dense, dropout, residual, LayerNorm: token-wise
        h = layer.output(layer.intermediate(h), h)
    return pad(h).view(batch, length, hidden)


def enable_unpadding(model: Any) -> bool:
    """Switch a SentenceTransformer's first (``Transformer``) module to the padding-free forward, in place.

    Only the forward changes: parameters, ``save``/``load`` and the model card are untouched, and a reloaded
    model uses the standard forward.

    Args:
        model: A ``SentenceTransformer``.

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
        features["token_embeddings"] = unpadded_hidden_states(
            self.auto_model, features["input_ids"], features["attention_mask"], features.get("token_type_ids")
        )
        return features

    module.forward = types.MethodType(forward, module)
    return True
