"""Text normalisation, character n-grams and n-gram hashing, shared by decontamination and deduplication.

Normalisation (:func:`normalize`, used for every comparison in :mod:`retrofit.filter`; output rows keep their
original text): Unicode NFKC, case folding, NFKC again (folding can denormalise), removal of zero-width characters
(U+200B, U+2060, U+FEFF; Thai text uses U+200B as an invisible word break), and whitespace collapsed to single
spaces and stripped.

n-grams are of characters (code points), not words, because word tokenisers fail on Chinese and Thai, which are
written without spaces. :func:`char_ngrams` and :func:`jaccard` work on one text; :func:`gram_hashes` hashes every
n-gram window of many texts at once with numpy (the contamination index, :mod:`retrofit.filter.decontaminate`),
and :func:`hash_gram` / :func:`hash_gram32` are its scalar form (:func:`hash_gram32` is the n-gram hash that
:mod:`retrofit.filter.dedupe` gives ``datasketch.MinHash``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

# Characters with no visible width that NFKC keeps; deleting them makes visually identical strings equal.
_ZERO_WIDTH = ("\u200b", "\u2060", "\ufeff")

# FNV-1a over 32-bit code points, then the MurmurHash3 64-bit finaliser for avalanche.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MASK64 = (1 << 64) - 1


def normalize(text: str) -> str:
    """Normalise text for comparison: NFKC, case folding, zero-width removal, whitespace collapse.

    Args:
        text: Any string.

    Returns:
        The normalised string. Full-width and compatibility forms become their plain forms (``"ＡＢＣ"`` ->
        ``"abc"``), case differences vanish (``"Straße"`` -> ``"strasse"``), and every run of Unicode whitespace
        becomes one space, with none at either end.
    """
    if text.isascii():  # NFKC leaves ASCII alone and casefold is lower(): skip both Unicode passes
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKC", text).casefold()
    if not unicodedata.is_normalized("NFKC", folded):
        folded = unicodedata.normalize("NFKC", folded)
    for zw in _ZERO_WIDTH:
        if zw in folded:  # str.translate with a table measured 3x slower than normalize itself
            folded = folded.replace(zw, "")
    return " ".join(folded.split())


def char_ngrams(text: str, n: int) -> set[str]:
    """The set of character n-grams of ``text``.

    Args:
        text: Usually an already normalised string.
        n: n-gram length in code points.

    Returns:
        Every substring of length ``n``; a non-empty text shorter than ``n`` is its own single n-gram, and the
        empty text has none.
    """
    if len(text) < n:
        return {text} if text else set()
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def jaccard(a: str, b: str, n: int) -> float:
    """Exact Jaccard similarity of the character n-gram sets of two strings.

    Args:
        a: First string (normalised).
        b: Second string (normalised).
        n: n-gram length.

    Returns:
        ``|A & B| / |A | B|``; 1.0 when both sets are empty.
    """
    sa, sb = char_ngrams(a, n), char_ngrams(b, n)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


# ---------------------------------------------------------------------------------------------------------------
# n-gram hashing
# ---------------------------------------------------------------------------------------------------------------


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 arithmetic wraps, as intended)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def hash_gram(gram: str) -> int:
    """The 64-bit hash of one n-gram: FNV-1a over its code points, then the MurmurHash3 64-bit finaliser.

    This is the scalar form of :func:`gram_hashes`, which computes the same value for every window of many texts
    at once with numpy. Plain Python integers rather than numpy scalars: it is called once per n-gram by
    ``datasketch.MinHash`` (through :func:`hash_gram32`), where a numpy call measured ~7x slower.

    Args:
        gram: Any string.

    Returns:
        An integer in ``[0, 2**64)``.
    """
    h = int(_FNV_OFFSET)
    prime = int(_FNV_PRIME)
    for c in gram:
        h = ((h ^ ord(c)) * prime) & _MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def hash_gram32(gram: str) -> int:
    """The low 32 bits of :func:`hash_gram`: the ``hashfunc`` that :mod:`retrofit.filter.dedupe` gives
    ``datasketch.MinHash`` (whose default "affine32" scheme takes 32-bit input hashes)."""
    return hash_gram(gram) & 0xFFFFFFFF


def gram_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hash_gram` of every character n-gram window of every text, vectorised over the concatenated texts.

    The texts are concatenated into one array of code points and each window's FNV-1a hash is built in ``n``
    vector operations; windows that would cross from one text into the next are discarded. 64 bits keep
    accidental collisions negligible (about ``G^2 / 2^65`` for ``G`` distinct n-grams: under 1e-4 for 50 million).

    Args:
        texts: Normalised texts.
        n: Window length in code points. A text shorter than ``n`` has no window.

    Returns:
        ``(hashes, owner)``: uint64 window hashes (repeats included) and, for each, the int64 index of its text;
        sorted by owner, in window order within a text.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    if total < n:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    n_windows = total - n + 1
    h = np.full(n_windows, _FNV_OFFSET, dtype=np.uint64)
    for k in range(n):
        h ^= cps[k : k + n_windows]
        h *= _FNV_PRIME
    ends = np.cumsum(lengths)  # exclusive end offset of each text in the concatenation
    owners = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[:n_windows]
    inside = np.arange(n, n_windows + n, dtype=np.int64) <= ends[owners]
    return _fmix64(h[inside]), owners[inside]
