"""The frozen-trunk cache: bit-identical embeddings cold, warm and off; entries shared only by identical trunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from mteb.types import PromptType

from retrofit.embed.trunk import TrunkCache, enable_trunk_cache, trunk_fingerprint
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
