"""MMTEB(Multilingual) retrieval's tasks: which ones, what evaluating them encodes, and how they shard across GPUs.

The paper reports the mean over the 18 Retrieval tasks of MTEB(Multilingual). The task list is resolved through
mteb itself (``mteb.get_benchmark("MTEB(Multilingual, v2)")`` filtered to task type ``Retrieval``), which needs no
network (:func:`mmteb_retrieval_tasks`); so do the counts of what each task encodes (:func:`mmteb_task_stats`, from
the descriptive statistics mteb ships), which balance the shards of a multi-GPU run (:func:`shard`) and feed
``tools/plan.py``. Evaluating the tasks: :mod:`retrofit.eval.mmteb`.

References:
    Enevoldsen et al., "MMTEB: Massive Multilingual Text Embedding Benchmark", arXiv 2502.13595.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import mteb

from retrofit.config import ParamsError

#: The benchmark whose Retrieval tasks the paper averages (mteb's current name for MTEB(Multilingual)).
DEFAULT_BENCHMARK = "MTEB(Multilingual, v2)"
#: The mteb task type the paper's headline averages over.
RETRIEVAL = "Retrieval"


@lru_cache(maxsize=8)
def _benchmark_tasks(benchmark: str, task_types: tuple[str, ...]) -> tuple[Any, ...]:
    try:
        bench = mteb.get_benchmark(benchmark)
    except KeyError as exc:
        raise ParamsError(f"evaluate.mmteb.benchmark {benchmark!r}: {exc.args[0] if exc.args else exc}") from None
    tasks = tuple(t for t in bench.tasks if t.metadata.type in task_types)
    if not tasks:
        raise ParamsError(f"benchmark {benchmark!r} has no task of type(s) {list(task_types)}")
    return tasks


def mmteb_tasks(
    benchmark: str = DEFAULT_BENCHMARK, task_types: Sequence[str] = (RETRIEVAL,), names: Sequence[str] | None = None
) -> list[Any]:
    """The benchmark's mteb task objects of the given types, in benchmark order (offline: metadata only).

    Args:
        benchmark: An mteb benchmark name.
        task_types: mteb task types to keep.
        names: Keep only these tasks (for shards and smoke runs); every name must be in the benchmark selection.

    Returns:
        Shared task objects: copy one (``copy.deepcopy``) before loading data into it.

    Raises:
        ParamsError: Unknown benchmark, no task of the types, or a name not in the selection.
    """
    tasks = list(_benchmark_tasks(benchmark, tuple(task_types)))
    if names is None:
        return tasks
    by_name = {t.metadata.name: t for t in tasks}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ParamsError(
            f"tasks {unknown} are not {list(task_types)} tasks of {benchmark!r}; choose from {list(by_name)}"
        )
    wanted = set(names)
    return [t for t in tasks if t.metadata.name in wanted]


def mmteb_retrieval_tasks(benchmark: str = DEFAULT_BENCHMARK) -> list[str]:
    """Names of the Retrieval tasks of an mteb benchmark, resolved through mteb itself (no network).

    Args:
        benchmark: An mteb benchmark name; the default is the paper's MTEB(Multilingual).

    Returns:
        Task names in benchmark order (18 for ``"MTEB(Multilingual, v2)"``).
    """
    return [t.metadata.name for t in mmteb_tasks(benchmark)]


def _split_counts(stats: Mapping[str, Any]) -> dict[str, float]:
    """Counts and mean lengths of one split (or subset) of mteb's descriptive statistics.

    The shipped files are not all consistent (MLQARetrieval's character totals cover fewer subsets than its
    document count), so lengths come from ``average_text_length`` and counts from ``num_documents`` /
    ``num_queries``, falling back to ``total / average`` where a count is missing (BelebeleRetrieval).
    """

    def count_and_mean(kind: str) -> tuple[float, float]:
        text = stats.get(f"{kind}_text_statistics") or {}
        mean = float(text.get("average_text_length") or 0.0)
        n = stats.get(f"num_{kind}")
        if n is None:
            n = text["total_text_length"] / mean if mean else float(text.get("unique_texts") or 0)
        if not mean and n:
            mean = float(text.get("total_text_length") or 0) / float(n)
        return float(n), mean

    documents, doc_mean = count_and_mean("documents")
    queries, q_mean = count_and_mean("queries")
    docs_text = stats.get("documents_text_statistics") or {}
    queries_text = stats.get("queries_text_statistics") or {}
    return {
        "documents": documents,
        "queries": queries,
        "unique_documents": min(float(docs_text.get("unique_texts") or documents), documents),
        "unique_queries": min(float(queries_text.get("unique_texts") or queries), queries),
        "document_chars": documents * doc_mean,
        "query_chars": queries * q_mean,
    }


def mmteb_task_stats(task: Any) -> dict[str, Any]:
    """What evaluating ``task`` encodes, from the descriptive statistics mteb ships with the package (no download).

    Counts cover the task's evaluation splits and hf subsets (a benchmark can select fewer subsets than the task
    has; then the per-subset statistics are summed, or the split totals scaled by the subset fraction where mteb
    ships no per-subset numbers). A corpus shared by several subsets or splits counts once per subset and split,
    as mteb requests it (the project's encoder embeds each distinct text once per task, so this is an upper bound);
    ``unique_*`` is mteb's count of distinct texts in a split where it ships one; characters are counts x mean length.

    Args:
        task: An mteb retrieval task object (e.g. from :func:`mmteb_tasks`).

    Returns:
        ``{"task", "dataset", "revision", "main_score", "splits": [{"split", "documents", "queries",
        "unique_documents", "unique_queries", "document_chars", "query_chars"}, ...], plus the same six counts
        summed over splits}``; counts are integers.

    Raises:
        ValueError: mteb has no statistics for the task or one of its splits.
    """
    meta = task.metadata
    stats = meta.descriptive_stats
    if not stats:
        raise ValueError(f"{meta.name}: mteb ships no descriptive statistics (expected {meta.descriptive_stat_path})")
    chosen = list(getattr(task, "hf_subsets", None) or meta.hf_subsets)
    every = list(meta.hf_subsets)
    splits = []
    for split in getattr(task, "eval_splits", None) or meta.eval_splits:
        if split not in stats:
            raise ValueError(f"{meta.name}: no descriptive statistics for split {split!r} (have {sorted(stats)})")
        top = stats[split]
        if set(chosen) == set(every):
            counts = _split_counts(top)
        else:
            per = top.get("hf_subset_descriptive_stats") or {}
            if all(s in per for s in chosen):
                parts = [_split_counts(per[s]) for s in chosen]
                counts = {k: sum(p[k] for p in parts) for k in parts[0]}
            else:
                frac = len(chosen) / len(every)
                counts = {k: v * frac for k, v in _split_counts(top).items()}
        splits.append({"split": split, **{k: round(v) for k, v in counts.items()}})
    keys = ("documents", "queries", "unique_documents", "unique_queries", "document_chars", "query_chars")
    return {
        "task": meta.name,
        "dataset": meta.dataset.get("path"),
        "revision": meta.dataset.get("revision"),
        "main_score": meta.main_score,
        "splits": splits,
        **{k: sum(s[k] for s in splits) for k in keys},
    }


#: Characters per encoder token for MMTEB texts, whose statistics give characters (12 of the 18 tasks are English).
CHARS_PER_TOKEN = 4.0


def mmteb_eval_stats(benchmark: str, task_types: Sequence[str], max_len: int) -> dict[str, dict[str, Any]]:
    """Per task: documents, queries and tokens to encode after truncation at ``max_len`` (offline statistics).

    Tokens per split: ``texts x min(mean characters / CHARS_PER_TOKEN, max_len)`` for documents and for queries,
    counting the texts mteb requests (an upper bound: the project's encoder embeds a repeated text once per task, and
    truncating the mean over-counts a split of uneven lengths).
    """
    out = {}
    for task in mmteb_tasks(benchmark, task_types):
        s = mmteb_task_stats(task)
        doc_tok = q_tok = 0.0
        doc_len = q_len = 0.0
        for sp in s["splits"]:
            d_mean = min(sp["document_chars"] / max(sp["documents"], 1) / CHARS_PER_TOKEN, max_len)
            q_mean = min(sp["query_chars"] / max(sp["queries"], 1) / CHARS_PER_TOKEN, max_len)
            doc_tok += sp["documents"] * d_mean
            q_tok += sp["queries"] * q_mean
            doc_len = max(doc_len, d_mean)
            q_len = max(q_len, q_mean)
        out[s["task"]] = {
            "dataset": s["dataset"],
            "main_score": s["main_score"],
            "splits": [sp["split"] for sp in s["splits"]],
            "documents": s["documents"],
            "queries": s["queries"],
            "unique_documents": s["unique_documents"],
            "unique_queries": s["unique_queries"],
            "document_chars": s["document_chars"],
            "query_chars": s["query_chars"],
            "document_tokens": round(doc_tok),
            "query_tokens": round(q_tok),
            "_splits": s["splits"],
        }
    return out


def mmteb_encode_tokens(benchmark: str, max_len: int, task_types: Sequence[str] = ("Retrieval",)) -> dict[str, float]:
    """Tokens to encode per task (documents + queries), e.g. to balance shards across GPUs."""
    stats = mmteb_eval_stats(benchmark, tuple(task_types), max_len)
    return {k: float(v["document_tokens"] + v["query_tokens"]) for k, v in stats.items()}


def shard(names: Sequence[str], k: int, n: int, weights: Mapping[str, float] | None = None) -> list[str]:
    """Shard ``k`` of ``n`` of ``names``: greedy longest-first balancing by ``weights`` (e.g. tokens to encode).

    Args:
        names: Task names.
        k: Shard index, ``0 <= k < n``.
        n: Number of shards (one per GPU).
        weights: Cost per name (default 1 each).

    Returns:
        This shard's names, in the order of ``names``; every name lands in exactly one shard.
    """
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= k < n")
    weights = weights or {}
    loads = [0.0] * n
    owner: dict[str, int] = {}
    for name in sorted(names, key=lambda x: (-weights.get(x, 1.0), x)):
        i = min(range(n), key=lambda j: (loads[j], j))
        owner[name] = i
        loads[i] += weights.get(name, 1.0)
    return [x for x in names if owner[x] == k]
