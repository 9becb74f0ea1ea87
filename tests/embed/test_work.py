"""The encoder work counter: what each forward path adds, and the operations it stands for."""

from __future__ import annotations

from pathlib import Path

import pytest
from mteb.types import PromptType

from retrofit.embed.work import WORK, EncoderWork, encoder_flops
from retrofit.eval.encoder import load_encoder


def test_counts_tokens_layers_and_attention() -> None:
    work = EncoderWork()
    work.add([3, 5], layers=12)
    assert work.to_json() == {"texts": 2, "tokens": 8, "layer_tokens": 96, "layer_attention": 12 * (9 + 25)}
    work.skip([3, 5], layers=8)  # served from the trunk cache: only the top 4 layers ran
    assert (work.layer_tokens, work.layer_attention) == (4 * 8, 4 * 34)


def test_flops_of_one_token_through_one_layer() -> None:
    one = {"layer_tokens": 1, "layer_attention": 1}
    h, i = 4, 16
    assert encoder_flops(one, h, i) == 2 * (4 * h * h + 2 * h * i) + 4 * h


@pytest.mark.parametrize("trunk_layers", [0, 1])
def test_the_evaluation_forward_counts_every_real_token(tiny_model_dir: Path, tmp_path: Path, trunk_layers: int) -> None:
    texts = ["a b c", "the quick brown fox jumps over the lazy dog"]
    encoder = load_encoder(tiny_model_dir, "m", batch_size=8, trunk_layers=trunk_layers, cache_dir=tmp_path,
                           backend="torch")
    lengths = encoder.model.preprocess(texts, prompt="passage: ")["attention_mask"].sum(1).tolist()
    before = WORK.to_json()
    encoder.encode_texts(texts, PromptType.document)
    after = WORK.to_json()
    assert after["tokens"] - before["tokens"] == sum(lengths)
    assert after["layer_tokens"] - before["layer_tokens"] == 2 * sum(lengths)  # the tiny model's 2 layers
    if trunk_layers:  # a second model over the same trunk runs only the layer above it
        again = load_encoder(tiny_model_dir, "n", batch_size=8, trunk_layers=1, cache_dir=tmp_path, backend="torch")
        again.encode_texts(texts, PromptType.document)
        assert WORK.to_json()["layer_tokens"] - after["layer_tokens"] == sum(lengths)
