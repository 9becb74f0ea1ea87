"""retrofit.embed.encoder on a tiny random sentence-transformers model: prompts, fingerprints, batch independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrofit.embed.encoder import BATCHING, Encoder, SentenceTransformerEncoder
from retrofit.errors import AssetError
from retrofit.io import fingerprint_model_dir


def test_sentence_transformer_encoder(tiny_model_path: Path) -> None:
    enc = SentenceTransformerEncoder(tiny_model_path, batch_size=8)
    assert isinstance(enc, Encoder)
    fp = enc.fingerprint
    assert enc._model is None  # the fingerprint does not load the model
    q = enc.encode(["what is it"], "query")  # (1, dim)
    p = enc.encode(["what is it"], "passage")  # (1, dim)
    assert q.dtype == np.float32 and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(q, p)  # "query: " and "passage: " prompts
    import torch

    extra = {"prompt_names": {"query": "query", "passage": "passage"}, "batching": BATCHING, "torch": torch.__version__}
    assert fingerprint_model_dir(tiny_model_path, extra) == fp
    bf16 = SentenceTransformerEncoder(tiny_model_path, bf16=True)
    assert bf16.fingerprint != fp  # bf16 embeddings are cached apart from fp32 ones
    qb = bf16.encode(["what is it"], "query")  # (1, dim)
    assert qb.dtype == np.float32 and float((qb @ q.T)[0, 0]) > 0.99
    (tiny_model_path / "README.md").write_text("a model card edit does not change the embeddings")
    assert SentenceTransformerEncoder(tiny_model_path).fingerprint == fp
    with (tiny_model_path / "config_sentence_transformers.json").open("a") as fh:
        fh.write(" ")
    assert SentenceTransformerEncoder(tiny_model_path).fingerprint != fp
    with pytest.raises(ValueError, match="no non-empty prompt"):
        SentenceTransformerEncoder(tiny_model_path, prompt_names={"query": "query", "passage": "nope"}).encode(
            ["x"], "passage")
    with pytest.raises(AssetError, match="model directory not found"):
        SentenceTransformerEncoder(tiny_model_path / "missing")


def test_encoder_fingerprint_changes_with_torch(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    fp = SentenceTransformerEncoder(tiny_model_path).fingerprint
    monkeypatch.setattr(torch, "__version__", "0.0.1")  # other kernels may give other bits: cache apart
    assert SentenceTransformerEncoder(tiny_model_path).fingerprint != fp


def test_embeddings_do_not_depend_on_their_batch(tiny_model_path: Path) -> None:
    enc = SentenceTransformerEncoder(tiny_model_path, batch_size=2)
    texts = ["paris is the capital", "the spree flows through berlin, the capital of germany", "who wrote it",
             "the author wrote the book in 1905 about science, history and music", "paris is the capital",
             "what is the capital of france? paris is the capital and largest city of france.", "der die das"]
    groups = enc.length_groups(texts, "passage")
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(texts)))
    lengths = [len(enc.model.preprocess(["passage: " + texts[g[0]]])["input_ids"][0]) for g in groups]
    assert lengths == sorted(set(lengths))  # one group per token length, shortest first
    together = enc.encode(texts, "passage")  # (7, dim)
    alone = np.concatenate([enc.encode([t], "passage") for t in texts])  # (7, dim)
    # a text alone in its length group (all but the repeated one) gets its batch-size-1 embedding bit for bit
    single = [g[0] for g in groups if len(g) == 1]
    assert len(single) >= 3 and len(single) < len(groups)  # the repeated text makes a group of two
    assert np.array_equal(together[single], alone[single])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
    reordered = enc.encode(texts[::-1] + ["a new partner text of another length entirely, to shift batches"], "passage")
    assert np.array_equal(reordered[: len(texts)][::-1][single], together[single])
