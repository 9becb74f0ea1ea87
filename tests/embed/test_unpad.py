"""The padding-free forward: same hidden states and gradients as the padded forward, and a clean fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

from retrofit.embed.unpad import (
    enable_unpadding,
    unpadded_hidden_states,
    unsupported_reason,
)


def _backbone(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, attn_implementation="sdpa")
    if kind == "bert":
        return BertModel(BertConfig(**common), add_pooling_layer=False).eval()
    return XLMRobertaModel(XLMRobertaConfig(pad_token_id=1, **common), add_pooling_layer=False).eval()


def _batch(pad_id: int, left: bool = False):
    lengths = [3, 17, 9, 1]
    ids = torch.full((len(lengths), max(lengths)), pad_id)
    mask = torch.zeros_like(ids)
    g = torch.Generator().manual_seed(1)
    for i, n in enumerate(lengths):
        span = slice(max(lengths) - n, None) if left else slice(0, n)
        ids[i, span] = torch.randint(5, 64, (n,), generator=g)
        mask[i, span] = 1
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_hidden_states_equal_the_padded_forward_and_pads_are_zero(kind: str):
    model = _backbone(kind)
    ids, mask = _batch(model.config.pad_token_id)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = unpadded_hidden_states(model, ids, mask)
    real = mask.bool()
    assert out.shape == ref.shape
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)
    assert out[~real].abs().max() == 0


def test_left_padding_gives_the_same_hidden_states_for_bert():
    """BERT's positions count from the first column, so compare left padding with the padded forward on it."""
    model = _backbone("bert")
    ids, mask = _batch(0, left=True)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = unpadded_hidden_states(model, ids, mask)
    torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_gradients_equal_the_padded_forward(kind: str):
    ids, mask = _batch(1 if kind == "xlmr" else 0)
    weights = torch.randn(ids.shape[0], ids.shape[1], 32, generator=torch.Generator().manual_seed(2)) * mask[..., None]
    grads = []
    for fn in (lambda m: m(input_ids=ids, attention_mask=mask).last_hidden_state,
               lambda m: unpadded_hidden_states(m, ids, mask)):
        model = _backbone(kind)
        (fn(model) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sentence_transformer_embeddings_are_unchanged(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    texts = ["query: who wrote faust", "passage: Goethe wrote Faust, a tragic play in two parts, in German.", "x"]
    before = model.encode(texts, convert_to_tensor=True)
    assert enable_unpadding(model)
    after = model.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    model.save(str(tiny_model_path.parent / "saved"))  # saving is untouched; a reload uses the standard forward
    reloaded = SentenceTransformer(str(tiny_model_path.parent / "saved"), device="cpu")
    torch.testing.assert_close(reloaded.encode(texts, convert_to_tensor=True), before, atol=1e-5, rtol=1e-5)


def test_unsupported_models_keep_the_standard_forward():
    decoder = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=48, is_decoder=True))
    assert "decoder" in unsupported_reason(decoder)
    assert "model type" in unsupported_reason(torch.nn.Linear(2, 2))

    class NoBackbone(torch.nn.Sequential):
        pass

    assert enable_unpadding(NoBackbone(torch.nn.Identity())) is False
