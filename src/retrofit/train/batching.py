"""Batches without shortcuts, and the rows as the trainer's columns.

Batches (:class:`DisjointBatchSampler`) hold no text twice and no two texts of one ``source_id`` (translations of
one passage, or two questions on it), whether as anchors, positives, hard negatives or random fill: otherwise a
translation becomes a negative of its own original. ``batch_groups`` decides what one batch may mix: ``language``
(the default) draws each batch from one English dataset or from one language's synthetic rows, so in-batch
negatives are in the query's language and "same language" is no shortcut; ``task`` draws it from one English
dataset or one synthetic task type across languages (the earlier behaviour, kept for the ablation); ``mixed`` draws
from every row. sentence-transformers' own ``NO_DUPLICATES`` sampler compares exact text only, so it cannot keep
translations apart; the sampler here extends its ``DefaultBatchSampler``.

A positive longer than ``max_seq_length`` is cut around the text its query was written from (the generator's
``evidence``, :func:`evidence_window`), not at its start, where truncation would often remove the answer.

Prompts are per row (:func:`prompt_pair`), as E5 trains: ``query:`` on the anchor, ``passage:`` on the candidates
of asymmetric tasks, and ``query:`` on both sides of the symmetric ones (:data:`~retrofit.schema.SYMMETRIC_TASK_TYPES`).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sentence_transformers.base.sampler import DefaultBatchSampler

from retrofit.schema import HUMAN, ORACLE, SYMMETRIC_TASK_TYPES, SYNTHETIC

log = logging.getLogger(__name__)


def batch_group(row: dict[str, Any], by: str = "language") -> str:
    """The batch key of a row under ``train.batch_groups`` (see the module docstring).

    Args:
        row: A training row.
        by: ``language`` (English dataset, or ``synthetic_<lang>``), ``task`` (English dataset, or
            ``synthetic_<task_type>``) or ``mixed`` (one group). Cross-lingual twins (source ``cross``) form one
            group under ``language`` and ``task``: every candidate in it is English, whatever the query's language.
    """
    if by == "mixed":
        return "all"
    if row["source"] not in (SYNTHETIC, ORACLE, HUMAN):  # an English dataset, or the cross-lingual twins (English)
        return row["source"]
    return f"{row['source']}_{row['lang'] if by == 'language' else row['task_type']}"


def prompt_pair(row: dict[str, Any], query_prompt: str, passage_prompt: str) -> tuple[str, str]:
    """The prompts of a row's anchor and of its candidates (positive and negatives)."""
    symmetric = row.get("task_type") in SYMMETRIC_TASK_TYPES
    return query_prompt, (query_prompt if symmetric else passage_prompt)


def row_keys(rows: Sequence[dict[str, Any]]) -> list[frozenset[str]]:
    """What each row occupies in a batch: its texts and the ``source_id`` of each of them.

    A mined negative's ``source_id`` is the one mining recorded (:mod:`retrofit.mine`), else that of the row
    whose positive it is; a text that neither names keeps only its text key.
    """
    owner: dict[str, str] = {}
    for r in rows:
        for text in (r["query"], r["positive"]):
            owner.setdefault(text, str(r.get("source_id") or r["id"]))
    keys = []
    for r in rows:
        negatives = r.get("negatives") or []
        texts = [r["query"], r["positive"], *(n["text"] for n in negatives)]
        sources = {owner[t] for t in texts if t in owner} | {str(r.get("source_id") or r["id"])}
        sources |= {str(n["source_id"]) for n in negatives if n.get("source_id")}
        keys.append(frozenset({f"text:{t}" for t in texts} | {f"source:{s}" for s in sources}))
    return keys


def evidence_window(text: str, evidence: str | None, tokenizer: Any, budget: int) -> tuple[str, str]:
    """``text`` cut to at most ``budget`` tokens around ``evidence``.

    Args:
        text: A positive passage.
        evidence: The part of ``text`` its query was written from (``None``: unknown).
        tokenizer: A fast tokenizer (character offsets).
        budget: Tokens available to the text (the model's length less special and prompt tokens).

    Returns:
        ``(text, how)``: ``how`` is ``"whole"`` (it fits), ``"centred"`` (a window of ``budget`` tokens with the
        evidence in its middle, or starting at the evidence when that alone is longer), ``"head"`` (cut at the start
        as truncation would: no evidence, or it is not in ``text``).
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n = len(offsets)
    if n <= budget:
        return text, "whole"
    start_char = text.find(evidence) if evidence else -1
    if start_char < 0:
        return text[: offsets[budget - 1][1]], "head"
    end_char = start_char + len(evidence)
    first = next(i for i, (_, e) in enumerate(offsets) if e > start_char)
    last = max(i for i, (b, _) in enumerate(offsets) if b < end_char) + 1
    slack = max(0, budget - (last - first))
    begin = max(0, min(first - slack // 2, n - budget))
    return text[offsets[begin][0] : offsets[begin + budget - 1][1]], "centred"


def fit_positives(rows: Sequence[dict[str, Any]], tokenizer: Any, budget: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every row with its positive cut by :func:`evidence_window` (the evidence is ``provenance.evidence``).

    Returns:
        ``(rows, counts)``, ``counts`` by ``how``; input rows are not modified.
    """
    counts: Counter[str] = Counter()
    out = []
    for r in rows:
        evidence = (r.get("provenance") or {}).get("evidence")
        positive, how = evidence_window(r["positive"], evidence, tokenizer, budget)
        counts[how] += 1
        out.append({**r, "positive": positive})
    return out, dict(sorted(counts.items()))


def to_columns(
    rows: Sequence[dict[str, Any]], num_negatives: int, seed: int, prompts: tuple[str, str] = ("", ""),
    keys: Sequence[frozenset[str]] | None = None,
    fallback: Sequence[tuple[str, frozenset[str]]] = (),
) -> dict[str, list[str]]:
    """Rows as the column dict sentence-transformers expects: anchor, positive, negative_1..negative_k.

    A row with fewer than ``num_negatives`` mined negatives is topped up with the positives of other rows of the
    same group that share no ``source_id`` with it (random negatives, seeded), so every row has the same number of
    columns; the count of filled slots is logged. A row whose group has no such row (a language with a single
    synthetic example, say) draws from ``fallback`` instead: every row of the mixture. Each text carries its prompt
    (:func:`prompt_pair`), so the trainer adds none.

    Args:
        rows: Rows of one batch group.
        num_negatives: Negatives per row (0: pairs only).
        seed: Seed for the random top-up.
        prompts: The model's query and passage prompts.
        keys: The rows' :func:`row_keys`, when the caller has them already.
        fallback: ``(positive, row_keys)`` of every row of the mixture, for rows whose group offers none.

    Returns:
        ``{"anchor": [...], "positive": [...], "negative_1": [...], ...}``.

    Raises:
        ValueError: A row needs a random negative and neither its group nor ``fallback`` has a row that shares none
            of its sources.
    """
    pairs = [prompt_pair(r, *prompts) for r in rows]
    cols: dict[str, list[str]] = {
        "anchor": [q + r["query"] for r, (q, _) in zip(rows, pairs, strict=True)],
        "positive": [p + r["positive"] for r, (_, p) in zip(rows, pairs, strict=True)],
    }
    if num_negatives == 0:
        return cols
    rng = random.Random(seed)
    keys = row_keys(rows) if keys is None else keys
    filled = borrowed = 0
    negs: list[list[str]] = []
    for i, r in enumerate(rows):
        mined = [n["text"] for n in r.get("negatives") or []][:num_negatives]
        if len(mined) < num_negatives:
            sources = {k for k in keys[i] if k.startswith("source:")}
            pool = [o["positive"] for j, o in enumerate(rows) if j != i and sources.isdisjoint(keys[j])]
            if not pool:
                pool = [text for text, k in fallback if sources.isdisjoint(k) and text != r["positive"]]
                borrowed += 1
            if not pool:
                raise ValueError(f"train: row {r['id']} needs a random negative and no row has another source")
            while len(mined) < num_negatives:
                mined.append(pool[rng.randrange(len(pool))])
                filled += 1
        negs.append([pairs[i][1] + text for text in mined])
    for i in range(num_negatives):
        cols[f"negative_{i + 1}"] = [n[i] for n in negs]
    if filled:
        log.info("train: %d negative slots filled with random positives (%d rows from outside their group)",
                 filled, borrowed)
    return cols


class DisjointBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which no two rows share a key (a text or a ``source_id``, :func:`row_keys`).

    Like sentence-transformers' ``NoDuplicatesBatchSampler`` (a greedy pass over a seeded permutation; a row that
    clashes with the batch waits for a later one), with keys given per row instead of read from the texts.
    ``__len__`` is the batch count without clashes, as in sentence-transformers; clashes make some batches smaller.
    """

    def __init__(self, dataset: Any, *, keys: Sequence[frozenset[str]], batch_size: int, drop_last: bool,
                 valid_label_columns: list[str] | None = None, generator: Any = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(keys) != len(dataset):
            raise ValueError(f"DisjointBatchSampler: {len(keys)} key sets for {len(dataset)} rows")
        self.keys = list(keys)

    def __iter__(self) -> Any:
        import torch

        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        remaining = torch.randperm(len(self.keys), generator=self.generator).tolist()
        while remaining:
            batch: list[int] = []
            taken: set[str] = set()
            later: list[int] = []
            for i in remaining:
                if len(batch) < self.batch_size and self.keys[i].isdisjoint(taken):
                    batch.append(i)
                    taken |= self.keys[i]
                else:
                    later.append(i)
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch
            remaining = later

    def __len__(self) -> int:
        n = len(self.keys)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DisjointSamplers:
    """The trainer's ``batch_sampler``: a :class:`DisjointBatchSampler` over each group's dataset.

    A class rather than a closure, so that the training arguments that hold it pickle into checkpoints.

    Args:
        columns_to_keys: ``{row's column values: row keys}`` (:func:`row_keys`), over every group.
    """

    def __init__(self, columns_to_keys: dict[tuple[str, ...], frozenset[str]]) -> None:
        self.columns_to_keys = columns_to_keys

    def __call__(self, dataset: Any, **kwargs: Any) -> DisjointBatchSampler:
        names = [c for c in dataset.column_names if c != "dataset_name"]
        keys = [self.columns_to_keys[tuple(values)] for values in zip(*(dataset[c] for c in names), strict=True)]
        return DisjointBatchSampler(dataset, keys=keys, **kwargs)
