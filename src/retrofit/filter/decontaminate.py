"""Decontamination: the overlap of training texts with held-out evaluation texts, through an inverted index.

Overlap is the *containment* of a training text's character ``n``-grams in one eval text: the fraction of the
training text's distinct n-grams that also occur in that eval text (Broder's containment). A training text shorter
than ``n`` characters has no n-gram; it counts as contained (1.0) only when it equals an eval text after
normalisation. Texts are normalised with :func:`retrofit.filter.text.normalize` and their n-grams hashed with
:func:`retrofit.filter.text.gram_hashes`.

:class:`ContaminationIndex` is used by the ``decontam`` step of :func:`retrofit.filter.dedupe.dedupe` and by
:mod:`retrofit.data.english_pool`. It is our own code: datasketch's containment index (``LSHEnsemble``) estimates
containment from MinHash sketches and can miss texts, while decontamination here must find every training text
above the threshold and name the eval text it overlaps, so it counts shared n-grams exactly.

References:
    On the Resemblance and Containment of Documents (Broder; SEQUENCES 1997) -- containment.
    Deduplicating Training Data Makes Language Models Better (Lee et al.; arXiv 2107.06499) -- decontamination of
    evaluation data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retrofit.filter.text import gram_hashes, normalize

# Code points per block when hashing decontamination n-grams: bounds the uint64 temporaries to a few tens of MiB.
_GRAM_BLOCK = 1 << 21

# Windows of candidate texts scored at once by ContaminationIndex._score: bounds the postings expanded per call.
_SCORE_WINDOWS = 1 << 18


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
