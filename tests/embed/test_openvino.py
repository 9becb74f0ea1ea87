"""The OpenVINO forward: the torch forward's numbers, split anywhere, shared through the trunk cache, no analytics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from mteb.types import PromptType

from retrofit.config import ParamsError
from retrofit.embed.openvino import OpenVINOStack, unavailable_reason
from retrofit.embed.unpad import unpadded_hidden_states
from retrofit.eval.encoder import load_encoder, resolve_backend

TEXTS = [
    "the river flows through the city of berlin",
    "a book",
    "who wrote the book in 1905 about science, history and music?",
    "paris is the capital and largest city of france, and the spree flows through berlin",
]


@pytest.fixture(scope="module")
def three_layer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("ov") / "model", seed=5, layers=3)


def _backbone_and_batch(model_dir: Path) -> tuple[object, dict]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    batch = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return model[0].auto_model.eval(), batch


def test_agrees_with_the_padding_free_torch_forward_in_fp32(three_layer_model: Path) -> None:
    backbone, batch = _backbone_and_batch(three_layer_model)
    with torch.inference_mode():
        ref = unpadded_hidden_states(backbone, batch["input_ids"], batch["attention_mask"])
    ov = OpenVINOStack(backbone, depth=0, bf16=False, threads=1)
    out = ov.hidden_states(backbone, batch["input_ids"], batch["attention_mask"])
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=2e-5)
    assert not out[batch["attention_mask"] == 0].any()  # zero at padding, as the torch forward


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_split_point_does_not_change_a_bit(three_layer_model: Path, depth: int) -> None:
    backbone, batch = _backbone_and_batch(three_layer_model)
    whole = OpenVINOStack(backbone, 0, False, 1).hidden_states(backbone, batch["input_ids"], batch["attention_mask"])
    split = OpenVINOStack(backbone, depth, False, 1).hidden_states(backbone, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(whole, split)


def test_retrieval_scores_agree_with_torch(three_layer_model: Path, tmp_path: Path) -> None:
    """The adoption rule's kernel: the same cosine ranking, and scores within 1e-5 of torch's in fp32."""
    queries = ["capital of france", "river in berlin", "book about music"]
    runs = {}
    for backend in ("torch", "openvino"):
        enc = load_encoder(three_layer_model, backend, batch_size=2, trunk_layers=2, cache_dir=tmp_path / backend,
                           backend=backend)
        assert enc.backend == backend
        scores = enc.encode_texts(queries, PromptType.query) @ enc.encode_texts(TEXTS, PromptType.document).T
        runs[backend] = scores  # (queries, passages)
    np.testing.assert_allclose(runs["openvino"], runs["torch"], atol=1e-5)
    assert (runs["openvino"].argsort(1) == runs["torch"].argsort(1)).all()


def test_a_retrofit_reads_the_trunk_openvino_stored(three_layer_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    cache = tmp_path / "cache"
    base = load_encoder(three_layer_model, "base", batch_size=2, trunk_layers=2, cache_dir=cache, backend="openvino")
    base.encode_texts(TEXTS, PromptType.document)
    top = SentenceTransformer(str(three_layer_model), device="cpu", local_files_only=True)
    with torch.no_grad():
        for p in top[0].auto_model.encoder.layer[2].parameters():
            p.add_(0.05)
    top.save(str(tmp_path / "top"))
    warm = load_encoder(tmp_path / "top", "top", batch_size=2, trunk_layers=2, cache_dir=cache, backend="openvino")
    shared = warm.encode_texts(TEXTS, PromptType.document)
    assert (warm.trunk.hits, warm.trunk.misses) == (2, 0)
    cold = load_encoder(tmp_path / "top", "top", batch_size=2, trunk_layers=0, backend="openvino")
    np.testing.assert_array_equal(shared, cold.encode_texts(TEXTS, PromptType.document))
    torch_run = load_encoder(tmp_path / "top", "top", batch_size=2, trunk_layers=2, cache_dir=cache, backend="torch")
    torch_run.encode_texts(TEXTS, PromptType.document)
    assert torch_run.trunk.hits == 0  # torch's entries are keyed apart: another runtime, other bits


def test_auto_picks_openvino_for_bert_and_says_why_not_otherwise(three_layer_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(three_layer_model), device="cpu", local_files_only=True)
    assert resolve_backend("auto", model) == "openvino"
    assert resolve_backend("auto", model, bf16=True) == "torch"  # outside the 0.01 rule under bf16
    assert resolve_backend("openvino", model, bf16=True) == "openvino"  # asked for by name: granted
    assert resolve_backend("torch", model) == "torch"
    model[0].auto_model.config.model_type = "xlm-roberta"
    assert "tested for 'bert' only" in unavailable_reason(model[0].auto_model)
    assert resolve_backend("auto", model) == "torch"
    with pytest.raises(ParamsError, match="evaluate.backend openvino"):
        resolve_backend("openvino", model)


def test_conversion_sends_no_usage_analytics(three_layer_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino_telemetry as telemetry  # openvino's own dependency: never skipped

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("openvino_telemetry was used")

    monkeypatch.setattr(telemetry.Telemetry, "__init__", refuse)
    backbone, batch = _backbone_and_batch(three_layer_model)
    OpenVINOStack(backbone, 1, False, 1).hidden_states(backbone, batch["input_ids"], batch["attention_mask"])
