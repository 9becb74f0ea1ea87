"""retrofit.embed.cache: shards, crash leftovers and bad encoder output (the mine stage's use is in tests/test_mine.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrofit.embed.cache import EmbeddingCache
from tests.embed.fakes import TableEncoder


def test_cache_shards_and_uncommitted_writes(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    table = {f"t{i}": v / np.linalg.norm(v) for i, v in enumerate(gen.normal(size=(25, 8)))}
    enc = TableEncoder({}, table, "shards")
    cache = EmbeddingCache(tmp_path, shard_size=10)
    emb = cache.embed(enc, [f"t{i}" for i in range(25)], "passage")
    assert [len(t) for _, t in enc.calls] == [10, 10, 5]
    assert np.allclose(emb, np.stack([table[f"t{i}"] for i in range(25)]), atol=1e-7)
    space = tmp_path / "shards" / "passage"
    assert len(list(space.glob("*.keys.npy"))) == 3 and len(list(space.glob("*.npy"))) == 6
    # a shard whose key file never got written (killed run) and a stray temp file are ignored
    np.save(space / "orphan.npy", np.zeros((3, 8), dtype=np.float32))
    (space / ".x.npy.123.tmp").write_bytes(b"junk")
    reopened = EmbeddingCache(tmp_path)
    got = reopened.lookup("shards", ["t24", "t0", "t13"], "passage")  # (3, 8), across shards, in request order
    assert np.allclose(got, np.stack([table["t24"], table["t0"], table["t13"]]), atol=1e-7)
    with pytest.raises(KeyError, match="not in the embedding cache"):
        reopened.lookup("shards", ["never seen"], "passage")


def test_cache_rejects_bad_encoder_output(tmp_path: Path) -> None:
    enc = TableEncoder({}, {"a": np.ones(4), "b": np.ones(3) / np.sqrt(3)}, "bad")
    with pytest.raises(ValueError, match="not L2-normalised"):
        EmbeddingCache(tmp_path).ensure(enc, ["a"], "passage")
    enc.tables["passage"]["a"] = np.ones(4) / 2.0
    EmbeddingCache(tmp_path).ensure(enc, ["a"], "passage")
    with pytest.raises(ValueError, match="returned dim 3 but the cache holds dim 4"):
        EmbeddingCache(tmp_path).ensure(enc, ["b"], "passage")
    with pytest.raises(ValueError, match="fingerprint"):
        EmbeddingCache(tmp_path).ensure(TableEncoder({}, {}, "no/slashes"), ["a"], "passage")
