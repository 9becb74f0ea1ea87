"""Hard-negative mining with a teacher embedding model: the algorithm (encoders and their cache are in ``embed/``).

The ``mine`` stage turns the dedupe stage's (query, positive[, negative]) rows into training rows with hard
negatives: the teacher embeds every query and every candidate passage, FAISS retrieves each query's nearest
passages, and a chain of filters removes false negatives before the hardest survivors are kept.

This module runs the mining (:func:`mine`) and documents its contracts; its parts live beside it:
:mod:`retrofit.mine_corpus` builds the candidate partitions, :mod:`retrofit.mine_search` searches them and applies
the filters to a batch of results, and :mod:`retrofit.mine_report` tallies the outcomes into the report.

Input rows (the dedupe stage's output; that module documents them)::

    {"id", "source", "lang", "task_type", "query", "positive", "negative": str | null, "source_id": str | null,
     "provenance"}                    # a blank "negative" counts as null

Output rows (JSONL, one per input row, in input order; the training stage reads them)::

    {"id": "...",                     # the input row's id, unchanged
     "query": "...",
     "positive": "...",
     "negatives": [                   # at most negatives.num_negatives, hardest first; [] when negatives.hard is false
         {"text": "...", "score": 0.712345, "source_id": None},   # the dataset's own negative comes first
         {"text": "...", "score": 0.698761, "source_id": "xquad:a03p1"},   # then mined ones, by descending score
     ],                               # source_id: the passage's (a row's or the pool's), null when it has none
     "positive_score": 0.834512,      # teacher cosine(query, positive), 6 decimals; null when hard is false
     "lang": "de", "task_type": "qa", "source": "synthetic", "source_id": "..." | null,
     "provenance": {...} | null}      # passed through unchanged

Scores are cosine similarities from the teacher (embeddings are L2-normalised, so inner products), rounded to six
decimals. A row can have fewer than ``num_negatives`` negatives when too few candidates survive the filters; the
report counts those rows (``rows.short``) per language and source.

The report (a JSON-able dict; the stage writes it as a DVC metric)::

    {"hard", "params", "rank_window", "teacher_fingerprint",
     "rows": {"in", "out", "with_dataset_negative", "short", "without_negatives"},
     "negatives": {"total", "dataset", "mined"},
     "dataset_negatives": {"kept", "above_margin", "dropped_equal_to_positive", "dropped_num_negatives_0"},
     "candidates": {"in_window", "dropped": {<DROP_REASONS>: count}, "below_range_min", "chosen"},
     "corpus": {"partitions", "passages", "largest_partition", "index": {"flat" | "ivf" | "ivf->flat" ...: count}},
     "encoding": {"query" | "passage": {"unique", "encoded", "cached"}},
     "scores": {"positive" | "mined_negative" | "random_negative" | "dataset_negative" | "hardest_gap":
                score_summary(...)},
     "by_lang" | "by_source": {<name>: {"rows", "short", "negatives", "dropped", "positive_score_mean",
                                        "hardest_gap_mean"}}}

(``hard=False`` reports only ``rows`` and ``dataset_negatives.dropped_not_hard``.) ``in_window`` counts the
candidates examined: the rank window for ``"search"``, the first ``range_max + n_excluded`` results for
``"filtered"``; ``hardest_gap`` is the positive score minus the hardest mined negative's; ``random_negative`` scores
each row's query against one passage drawn uniformly (seeded) from its partition, identity-excluded ones aside: the
baseline that shows how much harder the mined negatives are.

How negatives are chosen for one row:

1. **Candidate corpus.** Every distinct positive and dataset-negative text among the rows, plus the ``pool``
   passages (for synthetic rows, the generation pool of their language: ``pool.jsonl`` of
   :mod:`retrofit.generate.pipeline`, so a synthetic query meets every passage its language was drawn from, not
   only the dozen other rows' positives; for English task rows, a larger sample of their dataset's positives,
   :mod:`retrofit.data.english_pool`), partitioned by ``scope``: ``"language"`` searches only passages with the
   row's ``(lang, source)`` -- its language and, for the English task datasets, its own dataset (an NLI hypothesis
   is no hard negative for a NQ question); ``"all"`` searches one index over everything.
2. **Search.** FAISS, in batches of queries, so memory stays bounded by ``batch x k`` and never holds a
   ``queries x corpus`` matrix: exact inner product by default (``index="flat"``: FAISS's ``knn_inner_product``,
   the kernel behind ``IndexFlatIP``, run on the embedding matrix directly so that the corpus is not copied into an
   index), or an approximate ``IndexIVFFlat`` / ``IndexHNSWFlat`` for large corpora.
3. **Identity filters** (each dropped candidate is counted under the first reason that fits, see
   :data:`retrofit.mine_search.DROP_REASONS`): the positive itself and any text whose
   :func:`retrofit.filter.text.normalize` form equals it
   (``self_or_duplicate``); other positives of rows with the same query text, and pool passages that name that
   query text among their ``queries`` (``same_query_positive``, as sentence-transformers treats repeated
   queries); passages with the row's non-null ``source_id``, i.e. translations of the positive
   (``same_source_id``); the row's own dataset negative, which is already kept (``dataset_negative``).
4. **Positive-aware margin** (NV-Retriever's TopK-PercPos): drop candidates scoring above
   ``positive_score - |positive_score| * relative_margin`` (``margin``), which is ``(1 - relative_margin) *
   positive_score`` for the usual positive score and does not loosen the filter when a score is negative.
5. **Rank window and selection.** ``rank_window="search"`` (default) takes candidates at 0-based ranks
   ``range_min <= rank < range_max`` of the raw search result, then applies the filters. ``rank_window="filtered"``
   ranks only the candidates that pass every filter among the first ``range_max + n_excluded`` results
   (``n_excluded``: the row's identity-excluded passages) and takes ranks ``range_min <= rank < range_max`` of
   that list: the semantics of ``sentence_transformers.util.mine_hard_negatives`` with ``sampling_strategy="top"``.
   Either way the highest-scoring survivors fill the row up to ``num_negatives``, after the dataset negative.

Why not ``sentence_transformers.util.mine_hard_negatives``: its ``rank_window="filtered"`` semantics are matched
here, but it searches one corpus per call with no notion of a passage's ``source_id`` (so a translation of the
positive can come back as its "hard negative"), no partition per language and dataset, no exclusion of the
positives of repeated queries found in an extra pool, and no per-reason drop counts; its ``cache_folder`` caches one
run's embeddings as a whole, where :class:`retrofit.embed.cache.EmbeddingCache` reuses every text across runs,
params and stages. The search itself is FAISS's.

The result is deterministic for a given input, teacher and params (exact and IVF search; HNSW only with one
thread, as its graph construction is multi-threaded). Embeddings come from :class:`EmbeddingCache`, so a change of
mining params re-runs only the search, and a run whose embeddings are all cached never loads the teacher.

References:
    Moreira et al., "NV-Retriever: Improving text embedding models with effective hard-negative mining",
    arXiv 2407.15831 (the TopK-PercPos positive-aware filter).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrofit.config import NegativesParams
from retrofit.embed.cache import EmbeddingCache
from retrofit.embed.encoder import Encoder
from retrofit.mine_corpus import _negative_text, _norm_key, _Partition, _partitions, _shared_groups
from retrofit.mine_report import _index_label, _report, _Tally
from retrofit.mine_search import RankWindow, _Searcher, select_candidates
from retrofit.schema import RowSchema

log = logging.getLogger(__name__)

#: The contract of the output rows (module docstring; the mine stage's ``train.jsonl``).
TRAIN_ROW = RowSchema("mined training row", "mine", {
    "id": (str,), "query": (str,), "positive": (str,), "negatives": (list,), "positive_score": (float, type(None)),
    "lang": (str,), "task_type": (str,), "source": (str,), "source_id": (str, type(None)),
    "provenance": (dict, type(None)),
}, nonempty=("id", "query", "positive"))

_REQUIRED_STR = ("id", "source", "lang", "task_type", "query", "positive")


# ----------------------------------------------------------------------------------------------------------------
# Mining
# ----------------------------------------------------------------------------------------------------------------


def _validate_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"row {i} (id={row.get('id')!r})" if isinstance(row, Mapping) else f"row {i}"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in _REQUIRED_STR:
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
        for key in ("negative", "source_id"):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: {key!r} must be a string or null, got {type(value).__name__}")
        if row["id"] in seen:
            raise ValueError(f"{where}: duplicate id, also row {seen[row['id']]}; ids must be unique")
        seen[row["id"]] = i


def _out_row(row: Mapping[str, Any], negatives: list[dict[str, Any]], positive_score: float | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "query": row["query"],
        "positive": row["positive"],
        "negatives": negatives,
        "positive_score": positive_score,
        "lang": row["lang"],
        "task_type": row["task_type"],
        "source": row["source"],
        "source_id": row.get("source_id"),
        "provenance": row.get("provenance"),
    }


@dataclass
class _Lookup:
    """One partition's passages as ids, and the groups the identity filters exclude together."""

    texts: list[str]
    pid: dict[str, int]  # passage text -> id
    norm: list[bytes]  # id -> normalised-text digest
    by_norm: dict[bytes, list[int]]  # duplicates of one normalised text
    by_query: dict[str, list[int]]  # the positives of one query text
    by_source: dict[str, list[int]]  # the passages of one source_id (translations of one passage)
    source_of: dict[int, str]  # id -> its source_id, for the output rows

    @classmethod
    def build(cls, part: _Partition, rows: Sequence[Mapping[str, Any]]) -> _Lookup:
        pid = {t: c for c, t in enumerate(part.texts)}
        norm = [_norm_key(t) for t in part.texts]
        owned = [  # (source_id, passage): the rows' positives, then the pool's passages
            *((rows[i]["source_id"], pid[rows[i]["positive"]]) for i in part.rows if rows[i].get("source_id") is not None),
            *((sid, pid[text]) for sid, text in part.pool_sources),
        ]
        source_of: dict[int, str] = {}
        for sid, c in owned:
            source_of.setdefault(c, str(sid))
        return cls(
            texts=part.texts, pid=pid, norm=norm,
            # only groups of several passages: a singleton is the row's own positive, excluded as itself anyway
            by_norm=_shared_groups((key, c) for c, key in enumerate(norm)),
            by_query=_shared_groups([  # the rows' positives, then the pool passages by the queries they answer
                *((rows[i]["query"], pid[rows[i]["positive"]]) for i in part.rows),
                *((query, pid[text]) for query, text in part.pool_queries),
            ]),
            by_source=_shared_groups(owned),
            source_of=source_of,
        )

    def exclusions(self, row: Mapping[str, Any], c_pos: int, params: NegativesParams,
                   tally: _Tally) -> tuple[dict[int, int], int]:
        """A row's identity-excluded passages (id -> reason code 1-4, the first reason wins) and its kept dataset
        negative's id (-1 when it has none, or it equals the positive, or ``num_negatives`` is 0)."""
        e: dict[int, int] = {}
        for c in self.by_norm.get(self.norm[c_pos], (c_pos,)):
            e.setdefault(c, 1)
        for c in self.by_query.get(row["query"], ()):
            e.setdefault(c, 2)
        if row.get("source_id") is not None:
            for c in self.by_source.get(row["source_id"], ()):
                e.setdefault(c, 3)
        neg = _negative_text(row)
        if neg is None:
            return e, -1
        c_neg = self.pid[neg]
        if self.norm[c_neg] == self.norm[c_pos]:
            tally.dataset_equals_positive += 1
            return e, -1
        if params.num_negatives == 0:
            tally.dataset_no_room += 1
            return e, -1
        for c in self.by_norm.get(self.norm[c_neg], (c_neg,)):
            e.setdefault(c, 4)
        return e, c_neg


def _random_baseline(q: np.ndarray, emb: np.ndarray, excl: list[dict[int, int]], batch: np.ndarray,
                     rng: np.random.Generator, tally: _Tally) -> None:
    """Score each row's query against one passage drawn uniformly among those its identity filters allow."""
    for j, e in enumerate(excl):
        allowed = len(emb) - len(e)
        if allowed > 0:  # the allowed-th passage not excluded, drawn uniformly
            pick = int(rng.integers(allowed))
            for c in sorted(e):
                pick += c <= pick
            tally.random_score[batch[j]] = float(q[j] @ emb[pick])


def _search_batch(searcher: _Searcher, q: np.ndarray, ps: np.ndarray, threshold: np.ndarray,
                  excl: list[dict[int, int]], n_want: np.ndarray, batch: np.ndarray, lookup: _Lookup,
                  params: NegativesParams, rank_window: RankWindow, tally: _Tally,
                  per_row: list[list[dict[str, Any]]]) -> None:
    """Search one batch of queries, filter and choose their mined negatives, appended to ``per_row``."""
    b = len(batch)
    m = max(1, max(len(e) for e in excl))
    excl_ids = np.full((b, m), -2, dtype=np.int64)  # (b, m)
    excl_reason = np.zeros((b, m), dtype=np.int8)  # (b, m)
    for j, e in enumerate(excl):
        excl_ids[j, : len(e)] = list(e.keys())
        excl_reason[j, : len(e)] = list(e.values())
    n_excl = np.array([len(e) for e in excl], dtype=np.int64)  # (b,)
    k = params.range_max + (int(n_excl.max()) if rank_window == "filtered" else 0)
    cand_sc, cand_idx = searcher.search(q, k)  # (b, k), (b, k)
    chosen, drop, below = select_candidates(
        cand_idx, cand_sc, excl_ids, excl_reason, n_excl, threshold, n_want,
        range_min=params.range_min, range_max=params.range_max, rank_window=rank_window,
    )  # (b, k), (b, reasons), (b,)
    tally.dropped[batch] = drop
    tally.below_min[batch] = below
    cols = np.arange(k)[None, :]  # (1, k)
    if rank_window == "search":
        window = (cols >= params.range_min) & (cols < params.range_max)  # (1, k)
    else:
        window = cols < params.range_max + n_excl[:, None]  # (b, k)
    tally.in_window[batch] = ((cand_idx >= 0) & window).sum(axis=1)
    rj, cj = np.nonzero(chosen)  # row-major: per row, by descending score
    sc = cand_sc[rj, cj]
    tally.mined_scores.append(sc)
    has_mined = chosen.any(axis=1)  # (b,)
    first = chosen.argmax(axis=1)  # (b,)
    tally.hardest_gap[batch[has_mined]] = (ps - cand_sc[np.arange(b), first])[has_mined]
    for j, c, s in zip(rj.tolist(), cand_idx[rj, cj].tolist(), sc.tolist(), strict=True):
        per_row[j].append({"text": lookup.texts[c], "score": round(s, 6), "source_id": lookup.source_of.get(c)})


def _mine_batch(batch: np.ndarray, rows: Sequence[Mapping[str, Any]], q: np.ndarray, emb: np.ndarray,
                searcher: _Searcher | None, lookup: _Lookup, params: NegativesParams, rank_window: RankWindow,
                rng: np.random.Generator, tally: _Tally) -> list[dict[str, Any]]:
    """The output rows of one batch of queries (``q``: their embeddings) against one partition (``emb``)."""
    b = len(batch)
    p_idx = np.array([lookup.pid[rows[i]["positive"]] for i in batch], dtype=np.int64)  # (b,)
    ps = np.einsum("ij,ij->i", q, emb[p_idx])  # (b,)
    threshold = (ps - np.abs(ps) * np.float32(params.relative_margin)).astype(np.float32)  # (b,)

    excl: list[dict[int, int]] = []
    neg_idx = np.full(b, -1, dtype=np.int64)  # (b,)
    for j, i in enumerate(batch.tolist()):
        e, neg_idx[j] = lookup.exclusions(rows[i], int(p_idx[j]), params, tally)
        excl.append(e)
    _random_baseline(q, emb, excl, batch, rng, tally)
    has_kept_neg = neg_idx >= 0  # (b,)
    neg_sc = np.einsum("ij,ij->i", q, emb[np.maximum(neg_idx, 0)])  # (b,) meaningful where has_kept_neg
    n_want = np.maximum(params.num_negatives - has_kept_neg.astype(np.int64), 0)  # (b,)
    tally.kept_dataset[batch] = has_kept_neg
    tally.dataset_score[batch[has_kept_neg]] = neg_sc[has_kept_neg]
    tally.dataset_above_margin[batch] = has_kept_neg & (neg_sc > threshold)

    per_row: list[list[dict[str, Any]]] = [
        [{"text": lookup.texts[neg_idx[j]], "score": round(float(neg_sc[j]), 6), "source_id": None}]
        if has_kept_neg[j] else []
        for j in range(b)
    ]
    if searcher is not None and n_want.any():
        _search_batch(searcher, q, ps, threshold, excl, n_want, batch, lookup, params, rank_window, tally, per_row)
    tally.pos_score[batch] = ps
    tally.n_negs[batch] = [len(negs) for negs in per_row]
    return [_out_row(rows[i], per_row[j], round(float(ps[j]), 6)) for j, i in enumerate(batch.tolist())]


def mine(
    rows: Sequence[Mapping[str, Any]],
    encoder: Encoder | None,
    params: NegativesParams,
    cache: EmbeddingCache | None,
    *,
    rank_window: RankWindow = "search",
    search_batch_size: int = 8192,
    pool: Sequence[Mapping[str, Any]] = (),
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Mine hard negatives for every row (see the module docstring for the filters and the output schema).

    Args:
        rows: The dedupe stage's rows.
        encoder: The teacher; unused (may be ``None``) when ``params.hard`` is false.
        params: The ``negatives`` params group.
        cache: Embedding cache; unused (may be ``None``) when ``params.hard`` is false.
        rank_window: Where ``range_min``/``range_max`` count ranks: ``"search"`` (raw search result) or
            ``"filtered"`` (survivors of the filters, as ``sentence_transformers.util.mine_hard_negatives``).
        search_batch_size: Queries per FAISS search call; memory is ``O(search_batch_size * k)`` beyond the
            partition's embeddings. FAISS's exact search is up to ~2x slower per query in batches of 1024 than of
            8192 (measured on 100k x 64-d passages, one thread).
        pool: Extra candidate passages, ``{"lang", "source", "source_id", "text"}`` each, and optionally
            ``"queries"`` (``source`` names the rows' source whose partition they join, e.g. ``"synthetic"`` or an
            English dataset, :mod:`retrofit.data.english_pool`); their ``source_id`` excludes them from the rows of the
            same passage, and ``queries`` (the queries a passage is the positive of) from the rows with one of
            those query texts.
        seed: Seed of the random-negative baseline in the report.

    Returns:
        ``(mined_rows, report)``: one output row per input row, in input order; the report holds score
        distributions, per-filter drop counts, short rows and the same per language and per source.

    Raises:
        ValueError: A row lacks a field or has a wrong type (the message names the row), or ``hard`` is set
            without an encoder or cache.

    References:
        Moreira et al., "NV-Retriever: Improving text embedding models with effective hard-negative mining",
        arXiv 2407.15831.
    """
    _validate_rows(rows)
    if search_batch_size < 1:
        raise ValueError(f"search_batch_size must be at least 1, got {search_batch_size}")
    n = len(rows)
    has_neg = np.array([_negative_text(r) is not None for r in rows], dtype=bool)  # (n,)
    report: dict[str, Any] = {"hard": params.hard, "params": params.model_dump(), "rank_window": rank_window}

    if not params.hard:
        mined = [_out_row(r, [], None) for r in rows]
        report["rows"] = {"in": n, "out": n, "with_dataset_negative": int(has_neg.sum())}
        report["dataset_negatives"] = {"dropped_not_hard": int(has_neg.sum())}
        log.info("negatives.hard is false: %d rows with in-batch negatives only (%d dataset negatives dropped)",
                    n, int(has_neg.sum()))
        return mined, report
    if encoder is None or cache is None:
        raise ValueError("negatives.hard is true: mine() needs a teacher encoder and an embedding cache")

    parts = _partitions(rows, params.scope, pool)
    fp = encoder.fingerprint
    encoded = {
        "passage": cache.ensure(encoder, (t for p in parts for t in p.texts), "passage"),
        "query": cache.ensure(encoder, (r["query"] for r in rows), "query"),
    }
    n_unique = {"passage": len({t for p in parts for t in p.texts}), "query": len({r["query"] for r in rows})}

    out: list[dict[str, Any] | None] = [None] * n
    tally = _Tally.empty(n)
    rng = np.random.default_rng(seed)
    index_used: Counter[str] = Counter()
    for part in parts:
        emb = cache.lookup(fp, part.texts, "passage")  # (n_c, dim)
        searcher = _Searcher(emb, params.index) if params.num_negatives else None
        index_used[_index_label(params.index, searcher)] += 1
        lookup = _Lookup.build(part, rows)
        log.info("partition %s: %d rows, %d passages, %s search", "/".join(part.key), len(part.rows),
                    len(part.texts), searcher.kind if searcher else "no")
        for start in range(0, len(part.rows), search_batch_size):
            batch = np.array(part.rows[start : start + search_batch_size], dtype=np.int64)  # (b,)
            q = cache.lookup(fp, [rows[i]["query"] for i in batch], "query")  # (b, dim)
            for i, row in zip(batch.tolist(), _mine_batch(batch, rows, q, emb, searcher, lookup, params,
                                                           rank_window, rng, tally), strict=True):
                out[i] = row
        del emb, searcher, lookup  # before the next partition's

    report.update(_report(rows, tally, params.num_negatives, has_neg, parts, index_used, n_unique, encoded, fp))
    log.info(
        "mined %d negatives for %d rows (%d short of %d); dropped %s",
        int(tally.n_negs.sum()), n, int(report["rows"]["short"]), params.num_negatives,
        report["candidates"]["dropped"],
    )
    return [r for r in out if r is not None], report

