"""Normalisation, decontamination, and exact and near-duplicate removal of training pairs.

:func:`dedupe` takes the training rows of every source together (synthetic pairs from the generate stage and the
English task pairs of :mod:`retrofit.english`), puts them into one schema, and drops four kinds of row, in this
order:

1. ``empty``: the normalised query or positive is empty. Nothing can be hashed or matched for such a row.
2. ``decontam``: the query, positive or negative overlaps a held-out evaluation text (a test question or
   passage). Overlap is the *containment* of the training text's character ``decontam_ngram``-grams in one eval
   text: the fraction of the training text's distinct n-grams that also occur in that eval text. A row goes when
   this is at least ``decontam_threshold`` for any field and any eval text. A training text shorter than
   ``decontam_ngram`` characters has no n-gram; it counts as contained (1.0) only when it equals an eval text after
   normalisation. This step always runs: :func:`dedupe` refuses an empty set of eval texts.
3. ``exact``: the normalised query repeats the normalised query of a row earlier in canonical order. The query is
   the key, not the pair: one passage legitimately has many queries (the generator asks several per passage and
   SciTLDR gives a title and TLDRs per abstract), but a query that occurs twice has two answers or the same answer
   twice, and either way trains the retriever on a repeated anchor.
4. ``near``: the normalised query has a character ``ngram``-gram Jaccard similarity of at least ``threshold``
   with the query of a row kept earlier. Character n-grams rather than words, because word tokenisers fail on
   Chinese and Thai, which are written without spaces. Candidates come from banded MinHash LSH: datasketch's
   MinHash (``num_perm`` permutations seeded by ``seed``; :func:`minhash_signatures` computes the same signatures
   vectorised) and datasketch's choice of bands for ``threshold`` (:func:`lsh_bands`). Every candidate is checked
   with the exact Jaccard similarity of the two n-gram sets before a row is dropped, so LSH can miss a
   near-duplicate (fewer the higher ``num_perm``) but never drops a row that is not one.

Decontamination runs before deduplication so that a duplicate group is represented by a clean row: if the
smallest-id copy of a query had a contaminated positive and a larger-id copy did not, deduplicating first would
keep the contaminated copy and then drop it, losing the query altogether.

Normalisation (:func:`normalize`, used for every comparison; output rows keep their original text): Unicode NFKC,
case folding, NFKC again (folding can denormalise), removal of zero-width characters (U+200B, U+2060, U+FEFF;
Thai text uses U+200B as an invisible word break), and whitespace collapsed to single spaces and stripped.

Determinism: rows are put in canonical order (ascending ``id``; ids must be unique) before anything else, and
each step scans them in that order, keeping the first row of a group and checking later rows against the rows
already kept. The same rows in any order, with the same params and seed, give the same output, the same report
and the same examples. Output rows are in canonical order.

Output rows (:attr:`DedupeResult.rows`; the dedupe stage writes them as JSONL)::

    {"id": "syn-de-000123",        # unique; the input row's id
     "source": "synthetic",        # "synthetic", or the English dataset name ("qed_nq", "snli_via_esnli", ...)
     "lang": "de",                 # ISO 639-1
     "task_type": "qa",            # as in the input row
     "query": "...",               # original text, not normalised
     "positive": "...",
     "negative": "..." | null,     # a hard negative, or null
     "source_id": "a07p3" | null,  # the synthetic row's source passage id; null for English task rows
     "provenance": {...}}          # every other field of the input row, unchanged (generator, prompt_version,
                                   # seed, ... for synthetic rows; {} for English task rows)

An input row is *synthetic* when it has no ``source`` key or has a ``generator`` key; its ``source`` then becomes
``"synthetic"`` and any original ``source`` value moves into ``provenance``. Other rows are English task rows and
keep their ``source``. Rows already in the output schema pass through unchanged (their ``provenance`` is kept), so
deduplicating an output again is a no-op.

Report (:attr:`DedupeResult.report`, a DVC metrics document; all values are numbers)::

    {"counts":  {"overall": {"input": N, "empty": ., "decontam": ., "exact": ., "near": .},   # rows left after
                 "by_lang":   {"de": {"input": ., ...}, ...},                                # each step
                 "by_source": {"synthetic": {"input": ., ...}, "qed_nq": {...}, ...}},
     "dropped": {"overall": {"empty": ., "decontam": ., "exact": ., "near": .},              # rows removed by
                 "by_lang": {...}, "by_source": {...}},                                      # each step
     "decontam": {"eval_texts": M,            # eval texts indexed (non-empty after normalisation)
                  "by_field": {"query": ., "positive": ., "negative": .}},  # dropped rows, by the field that hit
     "near":     {"lsh_bands": b, "lsh_rows": r,      # the banding for (threshold, num_perm, LSH_WEIGHTS)
                  "candidates": ., "rejected": .},    # LSH candidate pairs checked; those below the threshold
     "kept": N_out}

For every group (overall, each language, each source), ``input - sum(dropped) == near == kept``: the counts add
up. ``write_json`` sorts keys, so steps appear alphabetically in the file; the step order is the one above.

Examples (:attr:`DedupeResult.examples`): up to ``max_dropped_examples`` dropped rows per reason, the first in
canonical order, each with the evidence for the drop: the row kept instead and the exact Jaccard (``exact``,
``near``), or the field, the eval text matched and the containment (``decontam``).

References:
    On the Resemblance and Containment of Documents (Broder; SEQUENCES 1997) -- MinHash, resemblance and
    containment.
    Mining of Massive Datasets, ch. 3 (Leskovec, Rajaraman, Ullman) -- banded LSH for MinHash.
    Deduplicating Training Data Makes Language Models Better (Lee et al.; arXiv 2107.06499) -- near-duplicate
    removal with MinHash and exact-substring decontamination of evaluation data.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from retrofit.config import DedupeParams
from retrofit.jsonl import RowSchema

log = logging.getLogger(__name__)

#: The contract of the output rows (module docstring; the dedupe stage's ``pairs.jsonl`` and ``oracle.jsonl``).
PAIR_ROW = RowSchema("deduplicated pair row", "dedupe", {
    "id": (str,), "source": (str,), "lang": (str,), "task_type": (str,), "query": (str,), "positive": (str,),
    "negative": (str, type(None)), "source_id": (str, type(None)), "provenance": (dict,),
}, nonempty=("id", "source", "lang", "query", "positive"))

#: Drop reasons, in the order the steps run.
STEPS: tuple[str, ...] = ("empty", "decontam", "exact", "near")

#: The text fields of a pair that decontamination checks, in reporting order.
TEXT_FIELDS: tuple[str, ...] = ("query", "positive", "negative")

#: Keys of the output schema; everything else in an input row goes into ``provenance``.
SCHEMA_KEYS: tuple[str, ...] = (
    "id", "source", "lang", "task_type", "query", "positive", "negative", "source_id", "provenance",
)
_SCHEMA_SET = frozenset(SCHEMA_KEYS)

SYNTHETIC = "synthetic"

#: LSH (false positive, false negative) weights for :func:`lsh_bands`. Every LSH candidate is verified with the
#: exact Jaccard similarity, so a false positive costs one set comparison while a false negative keeps a
#: near-duplicate: weigh recall. At threshold 0.8 and 128 permutations, datasketch's default (0.5, 0.5) picks
#: 9 bands x 13 rows and finds a pair with Jaccard 0.8 / 0.85 / 0.9 with probability 0.40 / 0.69 / 0.93;
#: (0.1, 0.9) picks 14 x 9 and finds it with probability 0.87 / 0.98 / 0.999, while a pair at 0.5 becomes a
#: candidate with probability 0.03.
LSH_WEIGHTS: tuple[float, float] = (0.1, 0.9)

# Characters with no visible width that NFKC keeps; deleting them makes visually identical strings equal.
_ZERO_WIDTH = ("\u200b", "\u2060", "\ufeff")

# Characters per numpy block when computing MinHash signatures: bounds the (num_perm, windows) uint32 temporary
# to about 128 * 64K * 4 B = 32 MiB at the default num_perm.
_MINHASH_BLOCK = 1 << 16

# Code points per block when hashing decontamination n-grams: bounds the uint64 temporaries to a few tens of MiB.
_GRAM_BLOCK = 1 << 21

# Windows of candidate texts scored at once by ContaminationIndex._score: bounds the postings expanded per call.
_SCORE_WINDOWS = 1 << 18

# FNV-1a over 32-bit code points, then the MurmurHash3 64-bit finaliser for avalanche.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


# ---------------------------------------------------------------------------------------------------------------
# Text normalisation and n-grams
# ---------------------------------------------------------------------------------------------------------------


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


def _blocks(texts: Sequence[str], max_chars: int) -> Iterable[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` ranges of ``texts`` of at most ``max_chars`` characters (at least one text)."""
    lo = 0
    while lo < len(texts):
        hi, size = lo, 0
        while hi < len(texts) and (size + len(texts[hi]) <= max_chars or hi == lo):
            size += len(texts[hi])
            hi += 1
        yield lo, hi
        lo = hi


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
# MinHash: datasketch's "affine32" scheme, vectorised over many texts
# ---------------------------------------------------------------------------------------------------------------


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, element-wise (uint32 arithmetic wraps, as intended)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 arithmetic wraps, as intended)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def hash_gram(gram: str) -> int:
    """The 64-bit hash of one n-gram: FNV-1a over its code points, then the MurmurHash3 64-bit finaliser.

    This is the scalar reference of :func:`gram_hashes`, which computes the same value for every window of many
    texts at once with numpy.

    Args:
        gram: Any string.

    Returns:
        An integer in ``[0, 2**64)``.
    """
    mask = (1 << 64) - 1
    h = int(_FNV_OFFSET)
    for c in gram:
        h = ((h ^ ord(c)) * int(_FNV_PRIME)) & mask
    return int(_fmix64(np.array([h], dtype=np.uint64))[0])


def hash_gram32(gram: str) -> int:
    """The low 32 bits of :func:`hash_gram`: the n-gram hash that :func:`minhash_signatures` feeds to MinHash.

    Pass it as ``hashfunc`` to ``datasketch.MinHash`` to get the same signatures one text at a time.
    """
    return hash_gram(gram) & 0xFFFFFFFF


def gram_hashes(texts: Sequence[str], n: int, *, whole_if_shorter: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hash_gram` of every character n-gram window of every text, vectorised over the concatenated texts.

    The texts are concatenated into one array of code points and each window's FNV-1a hash is built in ``n``
    vector operations; windows that would cross from one text into the next are discarded. 64 bits keep
    accidental collisions negligible (about ``G^2 / 2^65`` for ``G`` distinct n-grams: under 1e-4 for 50 million).

    Args:
        texts: Normalised texts.
        n: Window length in code points.
        whole_if_shorter: Give a non-empty text shorter than ``n`` one hash, of the whole text (as
            :func:`char_ngrams` does); otherwise such a text has none.

    Returns:
        ``(hashes, owner)``: uint64 window hashes (repeats included) and, for each, the int64 index of its text;
        sorted by owner, in window order within a text.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    hashes, owner = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    if total >= n:
        cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        n_windows = total - n + 1
        h = np.full(n_windows, _FNV_OFFSET, dtype=np.uint64)
        for k in range(n):
            h ^= cps[k : k + n_windows]
            h *= _FNV_PRIME
        ends = np.cumsum(lengths)  # exclusive end offset of each text in the concatenation
        owners = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[:n_windows]
        inside = np.arange(n, n_windows + n, dtype=np.int64) <= ends[owners]
        hashes, owner = _fmix64(h[inside]), owners[inside]
    if whole_if_shorter:
        short = np.flatnonzero((lengths > 0) & (lengths < n))
        if len(short):
            extra = np.array([hash_gram(texts[i]) for i in short], dtype=np.uint64)
            hashes = np.concatenate([hashes, extra])
            owner = np.concatenate([owner, short])
            order = np.argsort(owner, kind="stable")
            hashes, owner = hashes[order], owner[order]
    return hashes, owner


def minhash_signatures(texts: Sequence[str], n: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of the character n-gram sets of many texts, computed with numpy.

    The result is bit-identical to datasketch's default MinHash scheme (``"affine32"``) with :func:`hash_gram32`
    as its hash function: for each text, ``MinHash(num_perm=num_perm, seed=seed, hashfunc=hash_gram32)`` updated
    with every n-gram of :func:`char_ngrams`. Only the speed differs: datasketch's default SHA-1 n-gram hash costs
    a Python call per n-gram (with it, a numpy version was barely faster than ``MinHash.bulk``), while
    :func:`gram_hashes` hashes the n-grams of a whole block of texts in ``n`` vector operations, and the
    permutations and per-text minimum are applied to the block at once (``bench/dedupe.py`` measures both).

    Args:
        texts: Normalised texts.
        n: Character n-gram length.
        num_perm: Number of permutations (signature length).
        seed: Seed of datasketch's permutation parameters.

    Returns:
        ``(len(texts), num_perm)`` uint32 array. A text with no n-gram (the empty string) gets the all-maximum
        signature of an empty datasketch MinHash.

    References:
        On the Resemblance and Containment of Documents (Broder; SEQUENCES 1997).
    """
    perm_a, perm_b = _affine32_permutations(num_perm, seed)  # each (num_perm,) uint32
    sigs = np.full((len(texts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    for lo, hi in _blocks(texts, _MINHASH_BLOCK):
        h, owner = gram_hashes(texts[lo:hi], n, whole_if_shorter=True)
        if not len(h):
            continue
        hv = _fmix32((h & np.uint64(0xFFFFFFFF)).astype(np.uint32))  # datasketch's pre-mix of the input hash
        phv = perm_a[:, None] * hv[None, :]  # (num_perm, n_windows), wraps mod 2^32
        phv += perm_b[:, None]
        present = owner[np.flatnonzero(np.diff(owner, prepend=-1))]  # owner is sorted: its distinct values
        starts = np.searchsorted(owner, present)
        sigs[lo + present] = np.minimum.reduceat(phv, starts, axis=1).T  # (n_present, num_perm)
    return sigs


def _affine32_permutations(num_perm: int, seed: int) -> np.ndarray:
    """datasketch's ``(a, b)`` permutation parameters for the "affine32" scheme (datasketch >= 2.0)."""
    try:
        return MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    except TypeError as exc:  # datasketch < 2.0 has only the legacy scheme
        raise RuntimeError(
            "retrofit.dedupe needs datasketch >= 2.0 (the 'affine32' MinHash scheme); run `make setup` to install "
            "the pinned requirements.lock"
        ) from exc


def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float] = LSH_WEIGHTS) -> tuple[int, int]:
    """datasketch's banding for a Jaccard threshold: ``(b, r)``, ``b`` bands of ``r`` rows, ``b * r <= num_perm``.

    The same choice as ``datasketch.MinHashLSH(threshold, num_perm, weights=weights)``: the (b, r) that minimises
    the weighted false-positive and false-negative probability mass on either side of ``threshold``.

    Args:
        threshold: Jaccard threshold.
        num_perm: Signature length.
        weights: ``(false positive, false negative)`` weights; see :data:`LSH_WEIGHTS`.

    Returns:
        ``(b, r)``. For thresholds near 1 the optimum is a single band, which ``MinHashLSH`` refuses; then
        ``(1, num_perm)``: candidates are the texts with equal signatures.
    """
    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    except ValueError as exc:
        if "b < 2" not in str(exc):
            raise
        return 1, num_perm
    return lsh.b, lsh.r


def lsh_band_keys(sigs: np.ndarray, b: int, r: int) -> np.ndarray:
    """One 64-bit key per (signature, band): two signatures are LSH candidates when any band key is equal.

    Band ``i`` covers signature columns ``[i * r, (i + 1) * r)``, as in ``datasketch.MinHashLSH``; the key hashes
    those ``r`` values (FNV-1a over 32-bit values, then the MurmurHash3 finaliser) instead of keeping their bytes,
    so that bucketing runs on numpy arrays. Equal bands give equal keys; unequal bands collide with probability
    2^-64, which at worst adds a candidate that the exact Jaccard check then rejects.

    Args:
        sigs: ``(n, num_perm)`` uint32 signatures (:func:`minhash_signatures`).
        b: Number of bands.
        r: Rows (signature values) per band.

    Returns:
        ``(n, b)`` uint64 band keys.
    """
    keys = np.empty((len(sigs), b), dtype=np.uint64)
    for band in range(b):
        h = np.full(len(sigs), _FNV_OFFSET, dtype=np.uint64)
        for col in range(band * r, (band + 1) * r):
            h ^= sigs[:, col].astype(np.uint64)
            h *= _FNV_PRIME
        keys[:, band] = _fmix64(h)
    return keys


def _shared_keys(keys: np.ndarray) -> np.ndarray:
    """``(n, b)`` bool: whether each band key occurs more than once in its column."""
    shared = np.zeros(keys.shape, dtype=bool)
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band])
        col = keys[order, band]
        equal = col[1:] == col[:-1]
        dup = np.zeros(len(col), dtype=bool)
        dup[1:] |= equal
        dup[:-1] |= equal
        shared[order, band] = dup
    return shared


# ---------------------------------------------------------------------------------------------------------------
# Decontamination: an inverted index over the eval texts' character n-grams
# ---------------------------------------------------------------------------------------------------------------


def _sorted_distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (``np.sort`` based: numpy 2's hash-based ``np.unique`` measured
    100x slower on 2M uint64 values here)."""
    s = np.sort(x)
    keep = np.ones(len(s), dtype=bool)
    keep[1:] = s[1:] != s[:-1]
    return s[keep]


def _distinct_pairs(h: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (text, n-gram) pairs among n-gram windows.

    Args:
        h: (n_windows,) uint64 n-gram hashes.
        o: (n_windows,) int64 text index of each window, below 2^24.

    Returns:
        ``(grams, owner, gram)``: the sorted distinct hashes, and for each distinct pair its text index and the
        index of its hash in ``grams``; pairs are sorted by text, then hash.
    """
    order = np.argsort(h)
    hs = h[order]
    first = np.ones(len(hs), dtype=bool)
    first[1:] = hs[1:] != hs[:-1]
    grams = hs[first]
    inverse = np.empty(len(h), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    # One int64 key per pair: text index < 2^24 and gram index < 2^39 (windows in one block) fit in 63 bits.
    pair = _sorted_distinct(o * len(grams) + inverse)
    return grams, pair // max(len(grams), 1), pair % max(len(grams), 1)


@dataclass(frozen=True)
class Contamination:
    """The overlap of one training text with the eval texts.

    Args:
        containment: Fraction of the training text's distinct n-grams found in ``eval_index``'s text (0 to 1);
            0.0 when the text was ruled out without scoring.
        eval_index: Index of the best-matching eval text in :attr:`ContaminationIndex.ids`; -1 when no eval text
            can reach the threshold.
    """

    containment: float
    eval_index: int


_NOT_CONTAMINATED = Contamination(0.0, -1)


class ContaminationIndex:
    """An inverted index from character n-gram hashes to the eval texts that contain them.

    The index holds one posting (n-gram hash, eval text) per distinct n-gram of each eval text, as two numpy
    arrays sorted by hash (12 bytes a posting: a few MB for XQuAD's ~9K test texts, 0.8 GB for 100K passages of
    ~700 characters), plus a bitmap of the hashes (a one-hash Bloom filter, ~64 bits per distinct n-gram, false
    positive rate ~1.5%).

    :meth:`contamination` works in two passes so that most training texts cost a few vector operations:

    1. Every n-gram window of a block of training texts is looked up in the bitmap. For each text,
       ``(windows that may occur in some eval text) / (a lower bound on its distinct n-grams)`` is an upper bound
       on its containment in any single eval text (the bitmap only adds false hits, and the lower bound on the
       distinct count comes from comparing 40-bit hash prefixes, which can only merge distinct n-grams). Texts
       below the threshold on this bound are clean.
    2. The rest are scored exactly, all candidates of a block at once: their distinct n-grams are looked up in the
       postings and the shared n-grams counted per (text, eval text) pair.

    Args:
        eval_texts: ``{id: text}`` or ``(id, text)`` pairs: every held-out text (test questions and passages).
            Texts are normalised with :func:`normalize`; ids must be unique (a repeated id with the same text is
            ignored).
        n: Character n-gram length (``DedupeParams.decontam_ngram``).

    Raises:
        ValueError: An id repeats with a different text, or an id or text is not a string.
    """

    def __init__(self, eval_texts: Mapping[str, str] | Iterable[tuple[str, str]], n: int) -> None:
        pairs = eval_texts.items() if isinstance(eval_texts, Mapping) else eval_texts
        by_id: dict[str, str] = {}
        for i, pair in enumerate(pairs):
            try:
                eid, text = pair
            except (TypeError, ValueError):
                raise ValueError(f"eval_texts[{i}]: expected an (id, text) pair, got {pair!r:.80}") from None
            if not isinstance(eid, str) or not isinstance(text, str):
                raise ValueError(f"eval_texts[{i}]: id and text must be strings, got ({eid!r:.40}, {text!r:.40})")
            if eid in by_id and by_id[eid] != text:
                raise ValueError(f"eval_texts: id {eid!r} appears twice with different texts")
            by_id[eid] = text
        self.n = n
        ids = sorted(by_id)  # eval index order is id order, so ties go to the smallest id
        normalised = [normalize(by_id[eid]) for eid in ids]
        keep = [i for i, t in enumerate(normalised) if t]
        #: Ids of the indexed (non-empty) eval texts; :attr:`Contamination.eval_index` points into this list.
        self.ids: list[str] = [ids[i] for i in keep]
        #: Their original texts.
        self.texts: list[str] = [by_id[eid] for eid in self.ids]
        normalised = [normalised[i] for i in keep]
        hashes, owner = [], []
        for lo, hi in _blocks(normalised, _GRAM_BLOCK):
            grams, o, g = _distinct_pairs(*gram_hashes(normalised[lo:hi], n))
            hashes.append(grams[g])
            owner.append(o + lo)
        keys = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        owners = np.concatenate(owner) if owner else np.empty(0, dtype=np.int64)
        order = np.argsort(keys)  # the order of postings within one n-gram does not matter
        self._keys = keys[order]  # (n_postings,) uint64, sorted
        self._owners = owners[order].astype(np.int32)  # (n_postings,) eval index of each posting
        # Bitmap addressed by the top ``bits`` bits of a hash: ~64 bits per distinct n-gram.
        n_distinct = len(_sorted_distinct(self._keys)) if len(self._keys) else 0
        self._bits = int(np.clip(np.ceil(np.log2(max(64 * n_distinct, 1))), 16, 32))
        self._bitmap = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
        slot = self._keys >> np.uint64(64 - self._bits)
        np.bitwise_or.at(self._bitmap, slot >> np.uint64(3), np.left_shift(1, slot & np.uint64(7)).astype(np.uint8))
        # Texts too short to have an n-gram can only match an equal eval text; so can any other text.
        self._exact: dict[str, int] = {}
        for j, t in enumerate(normalised):
            self._exact.setdefault(t, j)

    def __len__(self) -> int:
        return len(self.ids)

    def _maybe(self, h: np.ndarray) -> np.ndarray:
        """Bitmap lookup: False means the n-gram is in no eval text; True means it may be."""
        slot = h >> np.uint64(64 - self._bits)
        return ((self._bitmap[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1).astype(bool)

    def contamination(self, texts: Sequence[str], threshold: float) -> list[Contamination]:
        """The best-matching eval text of each training text that may reach ``threshold`` containment.

        Args:
            texts: Normalised training texts (pass distinct texts: a repeat is scored again).
            threshold: The containment that counts as contaminated (``DedupeParams.decontam_threshold``).

        Returns:
            One :class:`Contamination` per text. A text that equals an eval text gets ``(1.0, that text)``; one
            whose upper bound (see the class docstring) is below ``threshold`` gets ``(0.0, -1)``; the others get
            their exact best containment and eval text (ties: the smallest eval id), which may still be below
            ``threshold``.
        """
        out = [_NOT_CONTAMINATED] * len(texts)
        for lo, hi in _blocks(texts, _GRAM_BLOCK):
            m = hi - lo
            h, o = gram_hashes(texts[lo:hi], self.n)  # every window, sorted by owner
            n_windows = np.bincount(o, minlength=m)
            n_maybe = np.bincount(o[self._maybe(h)], minlength=m)
            # Distinct (text, 40-bit hash prefix) pairs: at most the text's distinct n-grams. o < 2^24 per block.
            prefix = _sorted_distinct((o.astype(np.uint64) << np.uint64(40)) | (h >> np.uint64(24)))
            n_distinct_lb = np.bincount((prefix >> np.uint64(40)).astype(np.int64), minlength=m)
            bound = n_maybe / np.maximum(n_distinct_lb, 1)
            candidates = np.flatnonzero((bound >= threshold) & (n_windows > 0)) if len(self._keys) else []
            for chunk in _chunks(candidates, n_windows, _SCORE_WINDOWS):
                for k, containment, e in zip(*self._score(h, o, chunk, threshold)):
                    out[lo + k] = Contamination(containment, e)
            for k in range(m):
                exact = self._exact.get(texts[lo + k], -1)
                if exact >= 0:
                    out[lo + k] = Contamination(1.0, exact)
        return out

    def _score(
        self, h: np.ndarray, o: np.ndarray, texts: np.ndarray, threshold: float
    ) -> tuple[list[int], list[float], list[int]]:
        """Exact containment of some texts of a block in their best eval text, vectorised over the texts.

        Args:
            h: (n_windows,) uint64 n-gram hashes of the block.
            o: (n_windows,) int64 text of each window (sorted).
            texts: The texts to score (indices into the block).
            threshold: Texts whose n-grams, pooled over all eval texts, fall short of it are not scored.

        Returns:
            ``(text, containment, eval index)`` lists for the scored texts; ties go to the smallest eval index.
        """
        wanted = np.zeros(int(o[-1]) + 1, dtype=bool)
        wanted[texts] = True
        sel = wanted[o]
        grams, owner, gram = _distinct_pairs(h[sel], o[sel])
        left = np.searchsorted(self._keys, grams, side="left")  # sorted queries: cache-friendly
        n_post = (np.searchsorted(self._keys, grams, side="right") - left)[gram]  # (n_pairs,) 0 = not found
        n_distinct = np.bincount(owner, minlength=len(wanted))
        n_found = np.bincount(owner[n_post > 0], minlength=len(wanted))
        enough = n_found / np.maximum(n_distinct, 1) >= threshold  # the same arithmetic as the caller
        hit = enough[owner] & (n_post > 0)
        owner, first, n_post = owner[hit], left[gram[hit]], n_post[hit]
        if not len(owner):
            return [], [], []
        # Every posting of every found pair: (text, eval text) once per shared distinct n-gram.
        pos = np.repeat(first - np.cumsum(n_post) + n_post, n_post) + np.arange(int(n_post.sum()))
        n_eval = np.int64(len(self.ids))
        key = np.sort(np.repeat(owner, n_post) * n_eval + self._owners[pos])
        run = np.flatnonzero(np.diff(key, prepend=-1))
        hits = np.diff(run, append=len(key))  # (n_runs,) shared n-grams of each (text, eval text)
        text, ev = key[run] // n_eval, key[run] % n_eval
        order = np.lexsort((ev, -hits, text))  # per text: most hits first, then the smallest eval index
        best = order[np.flatnonzero(np.diff(text[order], prepend=-1))]
        return text[best].tolist(), (hits[best] / n_distinct[text[best]]).tolist(), ev[best].tolist()


def _chunks(items: np.ndarray, sizes: np.ndarray, max_size: int) -> Iterable[np.ndarray]:
    """Consecutive runs of ``items`` whose ``sizes[item]`` sum to at most ``max_size`` (at least one item)."""
    start = 0
    while start < len(items):
        stop, total = start, 0
        while stop < len(items) and (total + sizes[items[stop]] <= max_size or stop == start):
            total += int(sizes[items[stop]])
            stop += 1
        yield items[start:stop]
        start = stop


# ---------------------------------------------------------------------------------------------------------------
# Row schema
# ---------------------------------------------------------------------------------------------------------------


def to_output_row(row: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Put one synthetic or English task row into the output schema (see the module docstring).

    Args:
        row: An input row.
        index: Its position in the input, for error messages.

    Returns:
        A new dict with the keys of :data:`SCHEMA_KEYS`, in that order.

    Raises:
        ValueError: A required key is missing or has the wrong type; the message names the row and key.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"row {index}: expected a JSON object, got {type(row).__name__}")
    rid = row.get("id")
    where = f"row {index} (id={rid!r})"
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"{where}: 'id' must be a non-empty string")
    for key in ("lang", "task_type", "query", "positive"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(row.get(key)).__name__}")
    for key in ("negative", "source_id"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ValueError(f"{where}: {key!r} must be a string or null, got {type(row[key]).__name__}")
    provenance = row.get("provenance") or {}
    if not isinstance(provenance, Mapping):
        raise ValueError(f"{where}: 'provenance' must be an object, got {type(provenance).__name__}")
    provenance = dict(provenance)
    provenance.update({k: v for k, v in row.items() if k not in _SCHEMA_SET})
    source = row.get("source")
    if source is None or "generator" in row:
        if source is not None and source != SYNTHETIC:
            provenance["source"] = source
        source = SYNTHETIC
    elif not isinstance(source, str) or not source:
        raise ValueError(f"{where}: 'source' must be a non-empty string")
    return {
        "id": rid,
        "source": source,
        "lang": row["lang"],
        "task_type": row["task_type"],
        "query": row["query"],
        "positive": row["positive"],
        "negative": row.get("negative"),
        "source_id": row.get("source_id"),
        "provenance": provenance,
    }


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupeResult:
    """What :func:`dedupe` returns.

    Args:
        rows: Kept rows in the output schema, in canonical (id) order.
        report: Counts per step, overall, per language and per source (see the module docstring).
        examples: ``{reason: [example, ...]}`` for every reason in :data:`STEPS`: up to
            ``max_dropped_examples`` dropped rows with the evidence for each drop.
        seconds: Wall-clock seconds per phase (``index``, ``normalize``, then each step), for logs and benchmarks;
            kept out of ``report`` so that the metrics file is the same on every run.
    """

    rows: list[dict[str, Any]]
    report: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _query_key(text: str) -> bytes:
    """Exact-duplicate key: a 128-bit digest of the normalised query (compact for 100Ks of long queries)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _round(x: float) -> float:
    return round(x, 4)


def dedupe(
    rows: Iterable[Mapping[str, Any]],
    eval_texts: Mapping[str, str] | Iterable[tuple[str, str]],
    params: DedupeParams,
    *,
    seed: int = 1,
) -> DedupeResult:
    """Normalise, decontaminate and deduplicate training pairs from every source.

    Args:
        rows: Synthetic and English task rows, in any order (see the module docstring for both schemas).
        eval_texts: Every held-out evaluation text as ``{id: text}`` or ``(id, text)`` pairs: test questions and
            test passages, in every language. Ids must be unique across the collection (prefix them, e.g.
            ``"xquad-de-q-<question id>"``).
        params: Normalisation, MinHash and decontamination settings.
        seed: Seed of the MinHash permutations (pass ``base.seed``). Only near-duplicate *recall* depends on it:
            every drop is checked with the exact Jaccard similarity.

    Returns:
        The kept rows, the report and examples of dropped rows.

    Raises:
        ValueError: A row is malformed or two rows share an id (the message names them), or ``eval_texts`` is
            empty (decontamination must always run) or malformed.

    References:
        On the Resemblance and Containment of Documents (Broder; SEQUENCES 1997).
        Deduplicating Training Data Makes Language Models Better (Lee et al.; arXiv 2107.06499).
    """
    clock = _Clock()
    index = ContaminationIndex(eval_texts, params.decontam_ngram)
    if len(index) == 0:
        raise ValueError("eval_texts is empty: decontamination needs every held-out question and passage")
    clock.lap("index")

    seen: dict[str, int] = {}
    table: list[dict[str, Any]] = []
    for i, raw in enumerate(rows):
        row = to_output_row(raw, i)
        if row["id"] in seen:
            raise ValueError(f"rows {seen[row['id']]} and {i} share the id {row['id']!r}; ids must be unique")
        seen[row["id"]] = i
        table.append(row)
    table.sort(key=lambda r: r["id"])
    run = _Run(table, params)
    clock.lap("normalize")

    # ``after[step]``: canonical-order indices of the rows left after the step.
    after = {"input": list(range(len(table)))}
    after["empty"] = run.drop_empty(after["input"])
    clock.lap("empty")
    after["decontam"], by_field = run.decontaminate(after["empty"], index)
    clock.lap("decontam")
    after["exact"] = run.drop_exact(after["decontam"])
    clock.lap("exact")
    after["near"], lsh_stats = run.drop_near(after["exact"], seed)
    clock.lap("near")

    report = _report(table, after, run.dropped)
    report["decontam"] = {"eval_texts": len(index), "by_field": by_field}
    report["near"] = lsh_stats
    report["kept"] = len(after["near"])
    why = {
        "empty": "empty normalised query or positive",
        "decontam": f"a text overlaps an eval text (containment >= {params.decontam_threshold})",
        "exact": "the normalised query repeats an earlier one",
        "near": f"the query has Jaccard >= {params.threshold} with a kept query",
    }
    steps = ("input", *STEPS)
    for prev, step in zip(steps, steps[1:]):
        before, kept = len(after[prev]), len(after[step])
        log.info("dedupe %-8s %7d -> %7d rows (%d dropped: %s)", step, before, kept, before - kept, why[step])
    log.info("dedupe seconds: %s", clock.seconds)
    return DedupeResult(
        rows=[table[i] for i in after["near"]], report=report, examples=run.examples, seconds=clock.seconds
    )


class _Clock:
    """Wall-clock seconds per phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


class _Run:
    """The state of one :func:`dedupe` call: the canonical table, its normalised texts and the drops so far.

    Each step takes the canonical-order indices of the rows still alive and returns those it keeps.
    """

    def __init__(self, table: list[dict[str, Any]], params: DedupeParams) -> None:
        self.table = table
        self.params = params
        cache: dict[str, str] = {}  # a passage is the positive of many rows: normalise it once
        self.norm: dict[str, list[str]] = {}
        for f in TEXT_FIELDS:
            column = []
            for r in table:
                text = r[f]
                if text is None:
                    column.append("")
                    continue
                out = cache.get(text)
                if out is None:
                    out = cache[text] = normalize(text)
                column.append(out)
            self.norm[f] = column
        self.dropped: dict[int, str] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {step: [] for step in STEPS}

    def drop(self, i: int, reason: str, evidence: dict[str, Any]) -> None:
        """Record that row ``i`` goes for ``reason``; keep it as an example while there is room."""
        self.dropped[i] = reason
        if len(self.examples[reason]) < self.params.max_dropped_examples:
            r = self.table[i]
            self.examples[reason].append(
                {"id": r["id"], "source": r["source"], "lang": r["lang"], "query": r["query"], **evidence}
            )

    def drop_empty(self, alive: list[int]) -> list[int]:
        """Rows whose normalised query and positive are both non-empty."""
        query, positive = self.norm["query"], self.norm["positive"]
        kept = []
        for i in alive:
            if query[i] and positive[i]:
                kept.append(i)
            else:
                self.drop(i, "empty", {"positive": self.table[i]["positive"]})
        return kept

    def decontaminate(self, alive: list[int], index: ContaminationIndex) -> tuple[list[int], dict[str, int]]:
        """Rows none of whose texts reaches ``decontam_threshold`` containment in an eval text; drops per field."""
        threshold = self.params.decontam_threshold
        # Score each distinct text once: a passage is the positive (or negative) of many rows.
        distinct = sorted({self.norm[f][i] for i in alive for f in TEXT_FIELDS} - {""})
        scores = dict(zip(distinct, index.contamination(distinct, threshold)))
        by_field = dict.fromkeys(TEXT_FIELDS, 0)
        kept = []
        for i in alive:
            hits = [(scores[self.norm[f][i]], f) for f in TEXT_FIELDS if self.norm[f][i]]
            hits = [(c, f) for c, f in hits if c.eval_index >= 0 and c.containment >= threshold]
            if not hits:
                kept.append(i)
                continue
            best, fld = max(hits, key=lambda h: (h[0].containment, -TEXT_FIELDS.index(h[1])))  # ties: query first
            by_field[fld] += 1
            self.drop(i, "decontam", {
                "field": fld, "text": self.table[i][fld], "containment": _round(best.containment),
                "eval_id": index.ids[best.eval_index], "eval_text": index.texts[best.eval_index],
            })
        return kept, by_field

    def drop_exact(self, alive: list[int]) -> list[int]:
        """The first row (in canonical order) of each normalised query."""
        first: dict[bytes, int] = {}
        kept = []
        for i in alive:
            j = first.setdefault(_query_key(self.norm["query"][i]), i)
            if j == i:
                kept.append(i)
            else:
                r = self.table[j]
                self.drop(i, "exact", {"kept_id": r["id"], "kept_query": r["query"], "jaccard": 1.0})
        return kept

    def drop_near(self, alive: list[int], seed: int) -> tuple[list[int], dict[str, int]]:
        """Rows whose query has no Jaccard >= ``threshold`` with the query of a row kept before it; LSH stats.

        Banded LSH with datasketch's MinHash permutations and banding (:func:`minhash_signatures`,
        :func:`lsh_bands`); bucketing is done on numpy band keys (:func:`lsh_band_keys`) rather than through
        ``MinHashLSH.query``/``insert``, whose per-row overhead measured ~3x the rest of this step.
        """
        p = self.params
        query = self.norm["query"]
        b, r = lsh_bands(p.threshold, p.num_perm)
        sigs = minhash_signatures([query[i] for i in alive], p.ngram, p.num_perm, seed)  # (len(alive), num_perm)
        keys = lsh_band_keys(sigs, b, r)  # (len(alive), b)
        # A row whose band keys are all unique across the table can have no candidate and be no candidate: keep it
        # without touching the buckets. Only rows in a shared bucket go through the greedy loop below.
        shared = _shared_keys(keys)  # (len(alive), b) bool
        buckets: list[dict[int, list[int]]] = [{} for _ in range(b)]  # band key -> kept rows (positions in alive)
        n_candidates = n_rejected = 0
        kept = []
        for k, i in enumerate(alive):
            bands = np.flatnonzero(shared[k]).tolist()
            if not bands:
                kept.append(i)
                continue
            row_keys = keys[k].tolist()
            candidates: set[int] = set()
            for band in bands:
                bucket = buckets[band].get(row_keys[band])
                if bucket:
                    candidates.update(bucket)
            best_j, best_sim = -1, -1.0
            for c in sorted(candidates):  # sorted: ties go to the smallest id
                j = alive[c]
                n_candidates += 1
                sim = jaccard(query[i], query[j], p.ngram)
                if sim < p.threshold:
                    n_rejected += 1
                elif sim > best_sim:
                    best_j, best_sim = j, sim
            if best_j < 0:
                for band in bands:
                    buckets[band].setdefault(row_keys[band], []).append(k)
                kept.append(i)
            else:
                row = self.table[best_j]
                self.drop(i, "near", {"kept_id": row["id"], "kept_query": row["query"], "jaccard": _round(best_sim)})
        stats = {"lsh_bands": b, "lsh_rows": r, "candidates": n_candidates, "rejected": n_rejected}
        return kept, stats


def _report(table: list[dict[str, Any]], after: dict[str, list[int]], dropped: dict[int, str]) -> dict[str, Any]:
    """Rows left after each step and rows dropped by each step, overall, per language and per source."""
    steps = ("input", *STEPS)
    langs = sorted({r["lang"] for r in table})
    sources = sorted({r["source"] for r in table})
    counts: dict[str, Any] = {"overall": {}, "by_lang": {g: {} for g in langs}, "by_source": {g: {} for g in sources}}
    for step in steps:
        by_lang = Counter(table[i]["lang"] for i in after[step])
        by_source = Counter(table[i]["source"] for i in after[step])
        counts["overall"][step] = len(after[step])
        for g in langs:
            counts["by_lang"][g][step] = by_lang[g]
        for g in sources:
            counts["by_source"][g][step] = by_source[g]
    drops: dict[str, Any] = {"overall": {}, "by_lang": {g: {} for g in langs}, "by_source": {g: {} for g in sources}}
    for step in STEPS:
        idx = [i for i, reason in dropped.items() if reason == step]
        by_lang = Counter(table[i]["lang"] for i in idx)
        by_source = Counter(table[i]["source"] for i in idx)
        drops["overall"][step] = len(idx)
        for g in langs:
            drops["by_lang"][g][step] = by_lang[g]
        for g in sources:
            drops["by_source"][g][step] = by_source[g]
    return {"counts": counts, "dropped": drops}
