"""The frozen-trunk cache: bit-identical embeddings cold, warm and off; entries shared only by identical trunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from mteb.types import PromptType

from retrofit.embed.trunk import (FrozenTrunk, TrunkCache, enable_frozen_trunk, enable_trunk_cache, frozen_depth,
                                  trunk_fingerprint)
from retrofit.embed.unpad import enable_unpadding
from retrofit.eval.encoder import load_encoder
from retrofit.runtime import inference_autocast

TEXTS = [
    "the river flows through the city of berlin",
    "a book about music and history",
    "the quick brown fox",
    "who wrote the book in 1905?",
    "paris is the capital and largest city of france, and the spree flows through berlin",
]


@pytest.fixture(scope="module")
def three_layer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("trunk") / "model", seed=3, layers=3)


def _retrofit(src: Path, dst: Path, layer: int) -> Path:
    """A copy of ``src`` whose encoder layer ``layer`` moved, as training moves the unfrozen layers."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(src), device="cpu", local_files_only=True)
    with torch.no_grad():
        for p in model[0].auto_model.encoder.layer[layer].parameters():
            p.add_(0.05)
    model.save(str(dst))
    return dst


def _encode(model_dir: Path, cache: Path, layers: int, bf16: bool = False) -> tuple[np.ndarray, object]:
    encoder = load_encoder(model_dir, "m", batch_size=2, trunk_layers=layers, cache_dir=cache, bf16=bf16)
    return encoder.encode_texts(TEXTS, PromptType.document), encoder.trunk


def test_embeddings_are_bit_identical_off_cold_and_warm(three_layer_model: Path, tmp_path: Path) -> None:
    off, none = _encode(three_layer_model, tmp_path, 0)
    cold, trunk_cold = _encode(three_layer_model, tmp_path, 2)
    warm, trunk_warm = _encode(three_layer_model, tmp_path, 2)
    assert none is None
    assert (trunk_cold.hits, trunk_cold.misses) == (0, 3)  # 5 texts in batches of 2
    assert (trunk_warm.hits, trunk_warm.misses) == (3, 0)
    np.testing.assert_array_equal(cold, off)
    np.testing.assert_array_equal(warm, off)


def test_bf16_autocast_is_keyed_apart_and_stays_identical(three_layer_model: Path, tmp_path: Path) -> None:
    _encode(three_layer_model, tmp_path, 2)  # fp32 entries
    off, _ = _encode(three_layer_model, tmp_path, 0, bf16=True)
    cold, trunk = _encode(three_layer_model, tmp_path, 2, bf16=True)
    warm, _ = _encode(three_layer_model, tmp_path, 2, bf16=True)
    assert trunk.hits == 0  # fp32 entries are never served under bf16 autocast
    np.testing.assert_array_equal(cold, off)
    np.testing.assert_array_equal(warm, off)


def test_a_retrofit_above_the_trunk_reuses_the_base_entries(three_layer_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _encode(three_layer_model, cache, 2)
    top = _retrofit(three_layer_model, tmp_path / "top", layer=2)
    off, _ = _encode(top, tmp_path / "other", 0)
    shared, trunk = _encode(top, cache, 2)
    assert (trunk.hits, trunk.misses) == (3, 0)
    np.testing.assert_array_equal(shared, off)
    base, _ = _encode(three_layer_model, tmp_path / "other", 0)
    assert not np.allclose(shared, base, atol=1e-4)  # the top layer did move: the hits are not the base's output


def test_a_model_whose_trunk_moved_never_reads_the_base_entries(three_layer_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _, base_trunk = _encode(three_layer_model, cache, 2)
    low = _retrofit(three_layer_model, tmp_path / "low", layer=0)
    off, _ = _encode(low, tmp_path / "other", 0)
    out, trunk = _encode(low, cache, 2)
    assert trunk.directory != base_trunk.directory
    assert (trunk.hits, trunk.misses) == (0, 3)
    np.testing.assert_array_equal(out, off)


def test_fingerprint_covers_depth_and_weights(three_layer_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    backbone = SentenceTransformer(str(three_layer_model), device="cpu")[0].auto_model
    a = trunk_fingerprint(backbone, 1)
    assert a == trunk_fingerprint(backbone, 1)
    assert a != trunk_fingerprint(backbone, 2)
    with torch.no_grad():
        backbone.encoder.layer[0].output.dense.bias[0] += 1e-6
    assert a != trunk_fingerprint(backbone, 1)
    with torch.no_grad():
        backbone.encoder.layer[2].output.dense.bias[0] += 1.0  # above depth 2: same trunk
    b = trunk_fingerprint(backbone, 2)
    backbone.encoder.layer[2].output.dense.bias.data[0] -= 1.0
    assert b == trunk_fingerprint(backbone, 2)


def test_key_follows_tokens_and_autocast_but_not_threads(three_layer_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    cache = TrunkCache(tmp_path, SentenceTransformer(str(three_layer_model), device="cpu")[0].auto_model, 1)
    ids, mask = torch.tensor([[2, 7, 3]]), torch.ones(1, 3, dtype=torch.long)
    base = cache.key(ids, mask)
    assert base == cache.key(ids.clone(), mask.clone())
    assert base != cache.key(torch.tensor([[2, 8, 3]]), mask)
    assert base != cache.key(ids, torch.tensor([[1, 1, 0]]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert base == cache.key(ids, mask)  # the trunk's bits do not depend on it (module docstring)
    finally:
        torch.set_num_threads(threads)
    with inference_autocast(True):
        assert base != cache.key(ids, mask)


def test_an_unreadable_entry_is_recomputed(three_layer_model: Path, tmp_path: Path) -> None:
    off, _ = _encode(three_layer_model, tmp_path, 0)
    _, trunk = _encode(three_layer_model, tmp_path, 2)
    for entry in trunk.directory.rglob("*.pt"):
        entry.write_bytes(b"torn")
    again, trunk = _encode(three_layer_model, tmp_path, 2)
    assert (trunk.hits, trunk.misses) == (0, 3)
    np.testing.assert_array_equal(again, off)


def test_depth_beyond_the_model_or_a_non_bert_model_keeps_the_plain_forward(three_layer_model: Path,
                                                                           tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(three_layer_model), device="cpu")
    assert enable_trunk_cache(model, tmp_path, 4) is None
    model[0].auto_model.config.model_type = "gpt2"
    assert enable_trunk_cache(model, tmp_path, 1) is None
    with pytest.raises(ValueError, match="between 1 and"):
        TrunkCache(tmp_path, SentenceTransformer(str(three_layer_model), device="cpu")[0].auto_model, 0)
    with pytest.raises(ValueError, match="cache_dir"):
        load_encoder(three_layer_model, "m", trunk_layers=1)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_entries_are_shared_across_thread_counts_and_give_the_same_bits(
    three_layer_model: Path, tmp_path: Path, backend: str
) -> None:
    """A retrofit evaluated at another thread count than the base hits the base's entries, bit for bit."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        base = load_encoder(three_layer_model, "b", batch_size=2, trunk_layers=2, cache_dir=tmp_path, backend=backend)
        base.encode_texts(TEXTS, PromptType.document)
        torch.set_num_threads(2)
        top = _retrofit(three_layer_model, tmp_path / "top", layer=2)
        warm = load_encoder(top, "t", batch_size=2, trunk_layers=2, cache_dir=tmp_path, backend=backend)
        shared = warm.encode_texts(TEXTS, PromptType.document)
        plain = load_encoder(top, "t", batch_size=2, trunk_layers=0, backend=backend)
        np.testing.assert_array_equal(shared, plain.encode_texts(TEXTS, PromptType.document))
    finally:
        torch.set_num_threads(threads)
    assert (warm.trunk.hits, warm.trunk.misses) == (3, 0)


def _frozen_model(model_dir: Path, depth: int = 2):
    """A model with its embeddings and first ``depth`` layers frozen (as the trainer's ``freeze`` leaves them)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    backbone = model[0].auto_model
    for module in [backbone.embeddings, *backbone.encoder.layer[:depth]]:
        for p in module.parameters():
            p.requires_grad = False
    return model


def _frozen(model_dir: Path, root: Path | None, depth: int = 2):
    """:func:`_frozen_model`, served by a :class:`FrozenTrunk`."""
    model = _frozen_model(model_dir, depth)
    return model, enable_frozen_trunk(model, depth, root)


def _token_embeddings(model, texts: list[str]) -> list[torch.Tensor]:
    features = model.tokenize(texts)
    out = model[0](dict(features))["token_embeddings"]
    return [row[mask.bool()] for row, mask in zip(out, features["attention_mask"], strict=True)]


def test_frozen_trunk_states_are_one_text_alone_in_inference_mode(three_layer_model: Path, tmp_path: Path) -> None:
    model, trunk = _frozen(three_layer_model, None)
    model.train()  # the trainer's mode: dropout on in the trained layer, never in the frozen ones
    model[0].auto_model.encoder.layer[2].eval()  # the trained layer drops nothing here, so outputs compare
    together = _token_embeddings(model, TEXTS)
    batch_states = dict(trunk.memo)
    apart = []
    for text in TEXTS:  # each text in a batch of its own, with a trunk that has seen nothing
        alone_model, alone = _frozen(three_layer_model, None)
        apart.append(_token_embeddings(alone_model, [text])[0])
        (key, states), = alone.memo.items()
        assert torch.equal(states, batch_states[key])  # the trunk's bits never depend on batch-mates
    for a, b in zip(together, apart, strict=True):
        torch.testing.assert_close(a, b)  # the trained layer above sees the batch: equal up to rounding
    assert (trunk.hits, trunk.misses) == (0, len(TEXTS))
    # the frozen layers ran without dropout although the model was in training mode
    from retrofit.embed.unpad import Packing, embed_packed, run_layers

    backbone = model[0].auto_model
    ids = model.tokenize([TEXTS[0]])["input_ids"]
    backbone.eval()
    with torch.no_grad():
        packing = Packing.of(torch.ones_like(ids))
        expected = run_layers(backbone.encoder.layer[:2], embed_packed(backbone, packing, ids), packing)
    key = trunk.store.key(ids, torch.ones_like(ids), None)
    assert torch.equal(trunk.memo[key], expected)


def test_frozen_trunk_is_shared_across_trainings_with_the_same_bits(three_layer_model: Path, tmp_path: Path) -> None:
    cold_model, cold = _frozen(three_layer_model, tmp_path)
    cold_model.eval()
    first = _token_embeddings(cold_model, TEXTS)
    warm_model, warm = _frozen(three_layer_model, tmp_path)  # the next training: a new process, a warm store
    warm_model.eval()
    second = _token_embeddings(warm_model, TEXTS)
    assert (cold.hits, cold.misses) == (0, len(TEXTS))
    assert (warm.hits, warm.misses) == (len(TEXTS), 0)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    moved = _retrofit(three_layer_model, tmp_path / "moved", layer=0)  # another base: its own entries
    _, other = _frozen(moved, tmp_path)
    assert other.store.directory != cold.store.directory


def test_frozen_depth_is_what_training_left_frozen(three_layer_model: Path) -> None:
    assert frozen_depth(_frozen_model(three_layer_model, depth=2)) == 2
    assert frozen_depth(_frozen_model(three_layer_model, depth=0)) == 0  # the embeddings alone: no layer
    model = _frozen_model(three_layer_model, depth=2)
    model[0].auto_model.embeddings.LayerNorm.weight.requires_grad = True  # an embedding parameter trains
    assert frozen_depth(model) == 0


def test_frozen_trunk_needs_frozen_layers_and_a_layer_above(three_layer_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(three_layer_model), device="cpu", local_files_only=True)
    with pytest.raises(ValueError, match="must be frozen"):
        enable_frozen_trunk(model, 2)
    assert enable_frozen_trunk(model, 0) is None
    assert enable_frozen_trunk(model, 3) is None  # every layer frozen: nothing left to train above it


def test_frozen_trunk_memory_is_bounded_and_the_store_keeps_every_text(three_layer_model: Path,
                                                                       tmp_path: Path) -> None:
    full_model, full = _frozen(three_layer_model, tmp_path / "a")
    full_model.eval()
    expected = [_token_embeddings(full_model, [text])[0] for text in TEXTS]
    model = _frozen_model(three_layer_model)
    small = FrozenTrunk(model[0].auto_model, 2, tmp_path / "b", memo_texts=2)
    enable_unpadding(model, hidden_states=small.hidden_states)
    model.eval()
    for text, want in zip(TEXTS, expected, strict=True):
        assert torch.equal(_token_embeddings(model, [text])[0], want)
    assert len(small.memo) == 2 and (small.hits, small.misses) == (0, len(TEXTS))
    again = [_token_embeddings(model, [text])[0] for text in TEXTS]  # evicted texts come back from the store
    assert all(torch.equal(a, b) for a, b in zip(again, expected, strict=True))
    assert small.misses == len(TEXTS) and len(small.memo) == 2
