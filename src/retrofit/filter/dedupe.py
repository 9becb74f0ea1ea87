"""The dedupe stage's pipeline: one schema, then decontamination and exact and near-duplicate removal of training pairs.

:func:`dedupe` takes the training rows of every source together (synthetic pairs from the generate stage and the
English task pairs of :mod:`retrofit.data.english`), puts them into one schema, and drops four kinds of row, in this
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
   Chinese and Thai, which are written without spaces. Candidates come from banded MinHash LSH, both datasketch's:
   ``MinHash`` (``num_perm`` permutations seeded by ``seed``, "affine32" scheme) of each query's n-gram set, and
   ``MinHashLSH`` with its choice of bands for ``threshold`` and :data:`LSH_WEIGHTS`, holding the rows kept so
   far. Every candidate is checked with the exact Jaccard similarity of the two n-gram sets before a row is
   dropped, so LSH can miss a near-duplicate (fewer the higher ``num_perm``) but never drops a row that is not one.

Decontamination runs before deduplication so that a duplicate group is represented by a clean row: if the
smallest-id copy of a query had a contaminated positive and a larger-id copy did not, deduplicating first would
keep the contaminated copy and then drop it, losing the query altogether.

Normalisation (:func:`retrofit.filter.text.normalize`, used for every comparison; output rows keep their original
text): Unicode NFKC, case folding, zero-width characters removed, whitespace collapsed. Decontamination is
:class:`retrofit.filter.decontaminate.ContaminationIndex`.

What is our own code and why: datasketch computes the MinHash signatures, chooses the banding and finds the LSH
candidates. It does not decide anything, so the scan in canonical order, the exact-Jaccard check of each candidate
and the choice of the row kept instead are ours. The n-gram hash given to ``MinHash`` is ours
(:func:`retrofit.filter.text.hash_gram32`, not datasketch's default SHA-1 of bytes): it fixes the signatures, so
it fixes which near-duplicates are found and keeps the outputs identical to earlier runs. ``MinHashLSH`` refuses a
banding of one band (``b < 2``), the optimum for thresholds near 1: then :class:`_EqualSignatures` stands in, with
the whole signature as the one band. The exact step is a dict of query digests.

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
                  "by_field": {"query": ., "positive": ., "negative": .},   # dropped rows, by the field that hit
                  "by_eval": {"xquad": ., "tatoeba": ., ...}},  # and by the eval text's id prefix (its evaluation)
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
import itertools
import logging
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasketch import MinHash, MinHashLSH

from retrofit.config import DedupeParams
from retrofit.filter.decontaminate import ContaminationIndex
from retrofit.filter.text import char_ngrams, hash_gram32, jaccard, normalize
from retrofit.schema import SYNTHETIC, RowSchema

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

#: LSH (false positive, false negative) weights for ``MinHashLSH``. Every LSH candidate is verified with the
#: exact Jaccard similarity, so a false positive costs one set comparison while a false negative keeps a
#: near-duplicate: weigh recall. At threshold 0.8 and 128 permutations, datasketch's default (0.5, 0.5) picks
#: 9 bands x 13 rows and finds a pair with Jaccard 0.8 / 0.85 / 0.9 with probability 0.40 / 0.69 / 0.93;
#: (0.1, 0.9) picks 14 x 9 and finds it with probability 0.87 / 0.98 / 0.999, while a pair at 0.5 becomes a
#: candidate with probability 0.03.
LSH_WEIGHTS: tuple[float, float] = (0.1, 0.9)


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
    after["decontam"], decontam = run.decontaminate(after["empty"], index)
    clock.lap("decontam")
    after["exact"] = run.drop_exact(after["decontam"])
    clock.lap("exact")
    after["near"], lsh_stats = run.drop_near(after["exact"], seed)
    clock.lap("near")

    report = _report(table, after, run.dropped)
    report["decontam"] = {"eval_texts": len(index), **decontam}
    report["near"] = lsh_stats
    report["kept"] = len(after["near"])
    why = {
        "empty": "empty normalised query or positive",
        "decontam": f"a text overlaps an eval text (containment >= {params.decontam_threshold})",
        "exact": "the normalised query repeats an earlier one",
        "near": f"the query has Jaccard >= {params.threshold} with a kept query",
    }
    steps = ("input", *STEPS)
    for prev, step in itertools.pairwise(steps):
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

    def decontaminate(self, alive: list[int], index: ContaminationIndex) -> tuple[list[int], dict[str, Any]]:
        """Rows none of whose texts reaches ``decontam_threshold`` containment in an eval text; drops per field and
        per evaluation (the eval id's prefix, e.g. ``xquad`` or ``tatoeba``)."""
        threshold = self.params.decontam_threshold
        # Score each distinct text once: a passage is the positive (or negative) of many rows.
        distinct = sorted({self.norm[f][i] for i in alive for f in TEXT_FIELDS} - {""})
        scores = dict(zip(distinct, index.contamination(distinct, threshold)))
        by_field = dict.fromkeys(TEXT_FIELDS, 0)
        by_eval: Counter[str] = Counter()
        kept = []
        for i in alive:
            hits = [(scores[self.norm[f][i]], f) for f in TEXT_FIELDS if self.norm[f][i]]
            hits = [(c, f) for c, f in hits if c.eval_index >= 0 and c.containment >= threshold]
            if not hits:
                kept.append(i)
                continue
            best, fld = max(hits, key=lambda h: (h[0].containment, -TEXT_FIELDS.index(h[1])))  # ties: query first
            by_field[fld] += 1
            by_eval[index.ids[best.eval_index].split("-", 1)[0]] += 1
            self.drop(i, "decontam", {
                "field": fld, "text": self.table[i][fld], "containment": _round(best.containment),
                "eval_id": index.ids[best.eval_index], "eval_text": index.texts[best.eval_index],
            })
        return kept, {"by_field": by_field, "by_eval": dict(sorted(by_eval.items()))}

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

        Candidates are the kept rows that share an LSH band with the row (:func:`_lsh_index`, :func:`_minhashes`);
        every candidate is checked with the exact Jaccard similarity.
        """
        p = self.params
        query = self.norm["query"]
        lsh = _lsh_index(p.threshold, p.num_perm)  # holds the kept rows, keyed by canonical index
        n_candidates = n_rejected = 0
        kept = []
        for i, minhash in zip(alive, _minhashes((query[i] for i in alive), p.ngram, p.num_perm, seed)):
            best_j, best_sim = -1, -1.0
            for j in sorted(lsh.query(minhash)):  # sorted: ties go to the smallest id
                n_candidates += 1
                sim = jaccard(query[i], query[j], p.ngram)
                if sim < p.threshold:
                    n_rejected += 1
                elif sim > best_sim:
                    best_j, best_sim = j, sim
            if best_j < 0:
                lsh.insert(i, minhash, check_duplication=False)
                kept.append(i)
            else:
                row = self.table[best_j]
                self.drop(i, "near", {"kept_id": row["id"], "kept_query": row["query"], "jaccard": _round(best_sim)})
        stats = {"lsh_bands": lsh.b, "lsh_rows": lsh.r, "candidates": n_candidates, "rejected": n_rejected}
        return kept, stats


# ---------------------------------------------------------------------------------------------------------------
# MinHash LSH (datasketch)
# ---------------------------------------------------------------------------------------------------------------


def _minhashes(texts: Iterable[str], n: int, num_perm: int, seed: int) -> Iterator[MinHash]:
    """datasketch ``MinHash`` of the character n-gram set (:func:`~retrofit.filter.text.char_ngrams`) of each text.

    The "affine32" scheme (datasketch's default since 2.0, named so that a later default cannot change the
    signatures) with ``num_perm`` permutations seeded by ``seed``, and :func:`~retrofit.filter.text.hash_gram32`
    as the n-gram hash. Each sketch is a copy of one empty template, so the permutations are drawn once.
    """
    template = MinHash(num_perm=num_perm, seed=seed, hashfunc=hash_gram32, scheme="affine32")  # datasketch >= 2.0
    for text in texts:
        minhash = template.copy()
        minhash.update_batch(char_ngrams(text, n))
        yield minhash


def _lsh_index(threshold: float, num_perm: int) -> MinHashLSH | _EqualSignatures:
    """An empty ``MinHashLSH`` with datasketch's banding for ``threshold`` and :data:`LSH_WEIGHTS`.

    For thresholds near 1 the optimal banding is a single band, which ``MinHashLSH`` refuses; then an
    :class:`_EqualSignatures` index: candidates are the texts with equal signatures.
    """
    try:
        return MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    except ValueError as exc:
        if "b < 2" not in str(exc):
            raise
        return _EqualSignatures(num_perm)


class _EqualSignatures:
    """The one-band LSH index that ``MinHashLSH`` will not build (``b < 2``): one band of all ``num_perm`` rows.

    Only ``insert`` and ``query``, with ``MinHashLSH``'s signatures, and its ``b`` and ``r`` attributes.
    """

    def __init__(self, num_perm: int) -> None:
        self.b, self.r = 1, num_perm
        self._buckets: dict[bytes, list[Hashable]] = {}

    def insert(self, key: Hashable, minhash: MinHash, check_duplication: bool = True) -> None:
        self._buckets.setdefault(minhash.hashvalues.tobytes(), []).append(key)

    def query(self, minhash: MinHash) -> list[Hashable]:
        return list(self._buckets.get(minhash.hashvalues.tobytes(), ()))


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
