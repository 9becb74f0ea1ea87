"""Shared offline fixtures: a tiny random sentence-transformers model built from scratch (no hub access)."""

from __future__ import annotations

import os

# Before torch, transformers or mteb are imported by any test module: no hub, one thread (the host is shared).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The prompts multilingual-e5 is used with; the tiny model saves the same ones.
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}

_TOKENIZER_TEXTS = [
    "query: passage: the quick brown fox jumps over the lazy dog",
    "what is the capital of france? paris is the capital and largest city of france.",
    "which river flows through berlin? the spree flows through berlin, the capital of germany.",
    "who wrote the book? the author wrote it in 1905 about science, history and music.",
    "der die das und ist ein eine von mit el la los de y en que un una por para",
    "abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"()-",
]


def build_tiny_model(
    out_dir: Path, seed: int = 0, hidden: int = 32, layers: int = 2, texts: list[str] | None = None
) -> Path:
    """Build and save a tiny random BERT sentence-transformers model, entirely offline.

    WordPiece tokenizer trained on a few strings; mean pooling; L2 normalisation; e5 prompts.

    Args:
        out_dir: Where to save the model (created).
        seed: torch seed for the random weights; different seeds give different models.
        hidden: Hidden size.
        layers: Number of transformer layers.
        texts: More tokenizer training text. With only the built-in strings most real text becomes ``[UNK]``, so
            different passages get identical embeddings and exactly tied scores, which mteb ranks arbitrarily.

    Returns:
        ``out_dir``.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    hf_dir = out_dir.parent / f".{out_dir.name}.hf"

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = 400 if texts is None else 4000
    tok.train_from_iterator(_TOKENIZER_TEXTS + list(texts or []),
                            trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    model = SentenceTransformer(
        modules=[Transformer(str(hf_dir), max_seq_length=128), Pooling(hidden, "mean"), Normalize()],
        prompts=dict(E5_PROMPTS),
        device="cpu",
    )
    model.save(str(out_dir))
    shutil.rmtree(hf_dir)
    return out_dir


def params_group(name: str, **overrides: object):
    """One params group as ``params.yaml`` has it, with ``overrides`` merged in (nested groups key by key) and
    validated: the models have no code defaults, so every test starts from the pipeline's own values."""
    from retrofit.config import default_params

    def merge(base: dict, over: dict) -> dict:
        return {k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                for k, v in {**base, **over}.items()}

    group = getattr(default_params(), name)
    return type(group).model_validate(merge(group.model_dump(), overrides))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sentence-transformers model directory, built once per session. Do not modify it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model", seed=0)


@pytest.fixture
def tiny_model_path(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the tiny model directory that a test may change."""
    copy = tmp_path / "tiny_model"
    shutil.copytree(tiny_model_dir, copy)
    yield copy


@pytest.fixture(scope="session")
def bundled_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The bundled base model materialised once, exactly as the base_model stage does it (read-only)."""
    from retrofit.models.load import BUNDLED, materialize_base_model

    out = tmp_path_factory.mktemp("bundled") / "base"
    return out, materialize_base_model(BUNDLED, out)
