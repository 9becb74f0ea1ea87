"""MMTEB(Multilingual) retrieval through mteb: the task list, its offline statistics, evaluation and its summary.

The paper reports the mean over the 18 Retrieval tasks of MTEB(Multilingual); the tasks, their offline
statistics and their shards come from :mod:`retrofit.eval.mmteb_tasks`, with no network. Evaluation
(:func:`evaluate_mmteb`) needs each task's hub dataset; every task is checked before the model does any work. With
``HF_HUB_OFFLINE`` set only the local cache is read; online, one metadata request with a 10 s timeout decides whether
the Hub is reachable before any download starts. A miss raises an error that names the task and says how to provide
it (``prefetch`` on a networked machine, a pre-populated ``HF_HOME`` or a Hub mirror through ``HF_ENDPOINT``).

``evaluate_mmteb`` writes, under ``out_dir``::

    results/<task>.json     mteb's TaskResult per task (every metric mteb computes)
    mteb_cache/             this run's own mteb ResultCache (never ~/.cache/mteb, see retrofit.eval.score)
    per_query/<task>.json   with per_query=True: retrofit.eval.score.per_query_scores, for the bootstrap
    metrics.json            {"model", "benchmark", "tasks_expected", "tasks_done", "complete", "missing",
                             "headline": {"ndcg_at_10": mean, "main_score": mean},   # over tasks_done
                             "headline_definition": "...",
                             "tasks": {<task>: {"main_score_name", "main_score", "ndcg_at_10" (null for
                                                bitext mining), "splits": [...], "subsets": int,
                                                "subset_scores": {<subset>: main score}}},
                             "max_seq_length": int, "per_query_check": {<task>: largest gap} | null}
    summary.json            {"headline", "complete"} (what ``dvc metrics show`` prints)
    table.md                one row per task

The MMTEB leaderboard's Retrieval column (where the paper's 60.56 and the anchors in the README come from) is the
mean of each task's *main score*. That is nDCG@10 for 16 of the 18 tasks; ``LEMBPasskeyRetrieval`` uses nDCG@1 and
``StatcanDialogueDatasetRetrieval`` Recall@10. Both means are reported, ``main_score`` being the comparable one.

Command line::

    python -m retrofit.eval.mmteb tasks [--benchmark "MTEB(Multilingual, v2)"]
    python -m retrofit.eval.mmteb prefetch [--tasks ...]          # networked machine: fill HF_HOME with the data
    python -m retrofit.eval.mmteb evaluate --model DIR --name NAME --out DIR [--shard K/N] [--tasks ...]
    python -m retrofit.eval.mmteb summarize --out DIR             # after sharded runs: one metrics.json

References:
    Tu, Zhou, Yavuz, "Retrofitting Small Multilingual Models for Retrieval", arXiv 2510.14274.
    Enevoldsen et al., "MMTEB: Massive Multilingual Text Embedding Benchmark", arXiv 2502.13595.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mteb
import numpy as np

from retrofit import hub
from retrofit.config import (
    ParamsError,
    load_params,
)
from retrofit.errors import AssetError
from retrofit.eval.encoder import PromptCachedEncoder, load_encoder
from retrofit.eval.mmteb_tasks import (
    DEFAULT_BENCHMARK,
    RETRIEVAL,
    mmteb_encode_tokens,
    mmteb_retrieval_tasks,
    mmteb_task_stats,
    mmteb_tasks,
    shard,
)
from retrofit.eval.score import check_per_query, per_query_scores
from retrofit.io import write_json
from retrofit.models.load import check_model_dir
from retrofit.runtime import set_threads

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation: the tasks' data, running them, the summary
# ----------------------------------------------------------------------------------------------------------------


def _task_help(task: Any) -> str:
    meta = task.metadata
    return f"MMTEB task {meta.name} (hub dataset {meta.dataset.get('path')} @ {str(meta.dataset.get('revision'))[:12]})"


def _load_task_data(task: Any) -> None:
    """``task.load_data()``, turning any failure into a RuntimeError that names the dataset and how to provide it."""
    try:
        task.load_data()
    except Exception as exc:
        state = "offline mode is on and it is not in the local cache" if hub.offline() else "loading failed"
        prefetch = f"run `python -m retrofit.eval.mmteb prefetch --tasks {task.metadata.name}`"
        raise AssetError(
            f"{_task_help(task)}: cannot load its data ({state}; {type(exc).__name__}: {str(exc)[:300]}). "
            + hub.provide_help(fetch=prefetch)
        ) from exc


def check_mmteb_reachable(tasks: Iterable[Any]) -> None:
    """Online only: one metadata request per task dataset, so an unreachable Hub fails before any work.

    Raises:
        AssetError: Naming the first task whose dataset cannot be reached.
    """
    if hub.offline():
        return
    for task in tasks:
        meta = task.metadata
        hub.probe(meta.dataset["path"], _task_help(task), revision=meta.dataset.get("revision"),
                  fetch=f"run `python -m retrofit.eval.mmteb prefetch --tasks {meta.name}`")


def evaluate_mmteb(
    model_path: str | Path,
    out_dir: str | Path,
    tasks: Sequence[Any] | None = None,
    batch_size: int = 128,
    model_name: str = "model",
    *,
    benchmark: str | None = DEFAULT_BENCHMARK,
    task_types: Sequence[str] = (RETRIEVAL,),
    device: str | None = None,
    bf16: bool = True,
    max_seq_length: int | None = None,
    expected: Sequence[str] | None = None,
    encoder: Any = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """Evaluate a local sentence-transformers model on mteb tasks (MMTEB(Multilingual) retrieval by default).

    Each task runs through ``mteb.evaluate`` with a :class:`retrofit.eval.xquad.PromptCachedEncoder` (explicit
    ``query: ``/``passage: `` prompts, every unique text embedded once per task; a fresh one per task bounds memory),
    a per-run ``mteb.ResultCache(out_dir / "mteb_cache")`` and ``overwrite_strategy="always"``: mteb's home cache
    keys results by the model's name and could hand a fine-tuned model its base model's scores.

    Args:
        model_path: A sentence-transformers model directory (no hub access).
        out_dir: Output directory (created); see the module docstring for its files. Per-task results from earlier
            or parallel (sharded) runs into the same directory are kept and summarised together.
        tasks: Task names to run (default: every task of ``task_types`` in ``benchmark``), or mteb task objects
            whose data is already loaded (:func:`retrofit.eval.official.load_task`): those run as they are, with no
            benchmark lookup and no hub access.
        batch_size: Texts per forward pass.
        model_name: Names the results (``retrofit/<model_name>`` in mteb); unique per evaluated model.
        benchmark: The mteb benchmark.
        task_types: The benchmark's task types to select from (``tasks`` names a subset of them).
        device: torch device; ``None`` lets sentence-transformers choose (a GPU when there is one).
        bf16: Encode under bf16 autocast.
        max_seq_length: Override the model's saved ``max_seq_length`` (``evaluate.max_seq_length``: a model trained
            at 128 tokens is saved with 128; the MMTEB leaderboard runs multilingual-e5 at 512).
        expected: The tasks ``metrics.json`` should cover (default: ``tasks``); a shard passes the whole list, so
            ``complete`` turns true only when every shard's results are in ``out_dir``.
        encoder: An already loaded :class:`retrofit.eval.xquad.PromptCachedEncoder` to use for every task (its
            embedding cache is shared with the caller's other evaluations); ``None`` loads ``model_path``.
        per_query: Also write ``per_query/<task>.json`` (:func:`retrofit.eval.xquad.per_query_scores`, checked
            against mteb's scores) for the bootstrap of :mod:`retrofit.eval.stats`.

    Returns:
        The content of ``metrics.json``.

    Raises:
        AssetError: A task's dataset cannot be obtained (offline and not cached, or Hub unreachable); raised
            before the model is loaded when online, and before that task is encoded when offline; the message
            names the dataset and how to provide it.
        AssetError: ``model_path`` is not a sentence-transformers directory with weights.
        ParamsError: Unknown benchmark or task names.
    """
    out_dir = Path(out_dir)
    chosen, preloaded = _chosen_tasks(tasks, benchmark, task_types)
    if encoder is None:
        check_model_dir(model_path)
    first = chosen[0] if preloaded else copy.deepcopy(chosen[0])
    if not preloaded:
        _load_task_data(first)  # offline: a cache miss fails here, before the model is loaded
    loaded = encoder or load_encoder(
        Path(model_path), model_name, batch_size=batch_size, device=device, bf16=bf16, max_seq_length=max_seq_length
    )
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    cache = mteb.ResultCache(out_dir / "mteb_cache")
    checks: dict[str, float] = {}
    for i, shared in enumerate(chosen):
        task = shared if preloaded else (first if i == 0 else copy.deepcopy(shared))
        if i and not preloaded:
            _load_task_data(task)
        run_encoder = encoder or PromptCachedEncoder(
            loaded.model, loaded.mteb_model_meta, batch_size=batch_size, bf16=bf16
        )
        check = _run_task(task, run_encoder, cache, out_dir, batch_size, per_query)
        if check is not None:
            checks[task.metadata.name] = check
        if not preloaded:
            task.unload_data()
    return summarize_mmteb(
        out_dir, list(expected) if expected is not None else [t.metadata.name for t in chosen],
        model=str(loaded.mteb_model_meta.name), benchmark=benchmark,
        max_seq_length=int(loaded.model.max_seq_length),
        per_query_check=checks or None,
    )


def _chosen_tasks(tasks: Sequence[Any] | None, benchmark: str | None,
                  task_types: Sequence[str]) -> tuple[list[Any], bool]:
    """The tasks to run and whether they came loaded; hub tasks are checked reachable before any work."""
    preloaded = tasks is not None and all(not isinstance(t, str) for t in tasks)
    if preloaded:
        chosen = list(tasks or [])
    elif benchmark is None:
        raise ValueError("evaluate_mmteb: give a benchmark to resolve task names, or loaded task objects")
    else:
        chosen = mmteb_tasks(benchmark, task_types, names=tasks)
    if not chosen:
        raise ValueError(f"no tasks to evaluate (tasks={tasks!r})")
    if not preloaded:
        check_mmteb_reachable(chosen)  # online: an unreachable Hub fails here, before any work
    return chosen, preloaded


def _run_task(task: Any, encoder: PromptCachedEncoder, cache: Any, out_dir: Path, batch_size: int,
              per_query: bool) -> float | None:
    """Evaluate one loaded task and write ``results/<task>.json`` (and ``per_query/<task>.json``).

    Returns:
        With ``per_query``, the largest gap between the per-query values and mteb's subset scores; else ``None``.
    """
    name = task.metadata.name
    result = mteb.evaluate(
        encoder,
        [task],
        cache=cache,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        co2_tracker=False,
        raise_error=True,
    )
    by_name = {r.task_name: r for r in result.task_results}
    if name not in by_name:
        raise RuntimeError(f"mteb returned no result for {name}; exceptions: {result.exceptions}")
    by_name[name].to_disk(out_dir / "results" / f"{name}.json")
    log.info("%s: main score %.4f (%d texts encoded)", name, by_name[name].get_score(), encoder.n_encoded)
    if not per_query:
        return None
    values = per_query_scores(task, encoder)
    write_json(out_dir / "per_query" / f"{name}.json", values)
    return check_per_query(task, by_name[name], values)


def summarize_mmteb(
    out_dir: str | Path, expected: Sequence[str] | None = None, *, model: str | None = None,
    benchmark: str | None = DEFAULT_BENCHMARK, max_seq_length: int | None = None,
    per_query_check: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-task scores and their means from ``out_dir/results/*.json``; writes ``metrics.json``, ``summary.json``
    and ``table.md``.

    Args:
        out_dir: An :func:`evaluate_mmteb` output directory (possibly filled by several shards).
        expected: The tasks the headline should cover (default: every Retrieval task of ``benchmark``); missing
            ones are listed and ``complete`` is false.
        model: The model name to record (default: read from the results).
        benchmark: The benchmark whose tasks are expected by default; ``None`` for tasks run on their own (the
            official tasks of :mod:`retrofit.eval.official`), which then need ``expected``.
        max_seq_length: The tokens per text the model was evaluated at, recorded as is.
        per_query_check: ``{task: largest gap between per-query values and mteb's subset scores}``, recorded.

    Returns:
        The ``metrics.json`` document.

    Raises:
        FileNotFoundError: No result file for any expected task.
    """
    out_dir = Path(out_dir)
    if expected is None and benchmark is None:
        raise ValueError("summarize_mmteb: give the expected tasks, or a benchmark to take them from")
    expected = list(expected) if expected is not None else mmteb_retrieval_tasks(benchmark)
    scores, recorded = _task_scores(out_dir, expected, benchmark)
    model = model or recorded
    if not scores:
        raise FileNotFoundError(f"{out_dir / 'results'}: no result file for any of {expected}")
    missing = [n for n in expected if n not in scores]
    headline = {
        "ndcg_at_10": float(np.mean([s["ndcg_at_10"] for s in scores.values() if s["ndcg_at_10"] is not None]
                                    or [np.nan])),
        "main_score": float(np.mean([s["main_score"] for s in scores.values()])),
    }
    metrics = {
        "model": model,
        "benchmark": benchmark,
        "tasks_expected": len(expected),
        "tasks_done": len(scores),
        "complete": not missing,
        "missing": missing,
        "headline": headline,
        "headline_definition": (
            "unweighted means over the tasks done; main_score is each task's mteb main score (the MMTEB leaderboard's "
            "Retrieval column, where the paper's 60.56 comes from), ndcg_at_10 is nDCG@10 for every task"
            if benchmark is not None else
            "unweighted means over the tasks done, outside any benchmark: main_score averages each task's own mteb "
            "main score (F1 for bitext mining, nDCG@10 for retrieval), ndcg_at_10 the tasks that have nDCG@10"
        ),
        "tasks": scores,
        "max_seq_length": max_seq_length,
        "per_query_check": dict(per_query_check) if per_query_check else None,
    }
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "summary.json", {"headline": headline, "complete": metrics["complete"]})
    (out_dir / "table.md").write_text(_table(metrics), encoding="utf-8")
    return metrics


def _task_scores(out_dir: Path, expected: Sequence[str],
                 benchmark: str | None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Each expected task's scores from ``out_dir/results/<task>.json`` (absent ones skipped), and the model name
    the first result records."""
    scores: dict[str, dict[str, Any]] = {}
    model = None
    for name in expected:
        path = out_dir / "results" / f"{name}.json"
        if not path.is_file():
            continue
        result = mteb.TaskResult.from_disk(path)
        entries = [e for split in result.scores.values() for e in split]
        scores[name] = {
            "main_score_name": _main_score_name(name, benchmark),
            "main_score": float(result.get_score()),
            "ndcg_at_10": (float(result.get_score(getter=lambda s: s["ndcg_at_10"]))
                           if all("ndcg_at_10" in e for e in entries) else None),  # bitext mining has none
            "splits": sorted(result.scores),
            "subsets": len({e.get("hf_subset") for e in entries}),
            "subset_scores": {e["hf_subset"]: float(e["main_score"]) for e in entries},
        }
        model = model or getattr(result, "model_name", None)
    return scores, model


def _table(metrics: Mapping[str, Any]) -> str:
    """``table.md``: the headline and one row per task."""
    benchmark, scores, headline = metrics["benchmark"], metrics["tasks"], metrics["headline"]
    missing = metrics["missing"]
    lines = [
        f"# {benchmark + ' retrieval' if benchmark else 'Official mteb tasks'}: {metrics['model']}",
        "",
        f"Mean main score {100 * headline['main_score']:.2f}, mean nDCG@10 {100 * headline['ndcg_at_10']:.2f} over "
        f"{len(scores)} of {metrics['tasks_expected']} tasks"
        + ("" if not missing else f" (missing: {', '.join(missing)})") + ".",
        "",
        "| task | main score | metric | nDCG@10 |",
        "|---|---:|---|---:|",
    ]
    lines += [
        f"| {n} | {100 * s['main_score']:.2f} | {s['main_score_name']} | "
        + ("-" if s["ndcg_at_10"] is None else f"{100 * s['ndcg_at_10']:.2f}") + " |"
        for n, s in scores.items()
    ]
    return "\n".join(lines) + "\n"


def _main_score_name(task: str, benchmark: str | None) -> str:
    if benchmark is not None:
        try:
            return next(t.metadata.main_score for t in mmteb_tasks(benchmark) if t.metadata.name == task)
        except (StopIteration, ValueError):
            pass
    try:  # a task outside the benchmark's selection (the official tasks of retrofit.eval.official)
        return str(mteb.get_task(task).metadata.main_score)
    except (KeyError, ValueError):
        return "main_score"


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _params_evaluate(params_path: str) -> dict[str, Any]:
    """The ``evaluate`` group of a params file as plain data (``{}`` if there is no file)."""
    if not Path(params_path).is_file():
        return {}
    return load_params(params_path).model_dump().get("evaluate", {})


def _cmd_tasks(args: argparse.Namespace) -> None:
    for task in mmteb_tasks(args.benchmark):
        s = mmteb_task_stats(task)
        print("\t".join((s["task"], s["dataset"], f"documents={s['documents']}", f"queries={s['queries']}",
                         f"main={s['main_score']}")))


def _cmd_prefetch(args: argparse.Namespace) -> None:
    chosen = mmteb_tasks(args.benchmark, names=args.tasks or None)
    check_mmteb_reachable(chosen)
    for shared in chosen:
        task = copy.deepcopy(shared)
        _load_task_data(task)
        print(f"cached {task.metadata.name} ({task.metadata.dataset['path']})")
        task.unload_data()


def _cmd_evaluate(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _params_evaluate(args.params)
    mm = cfg.get("mmteb") or {}
    local = args.local_data or ("data/raw" if mm.get("data") == "local" else None)
    benchmark = None if local else args.benchmark or mm.get("benchmark") or DEFAULT_BENCHMARK
    names = everything = args.tasks or mm.get("tasks") or mmteb_retrieval_tasks(benchmark)
    if args.shard:
        k, _, n = args.shard.partition("/")
        length = args.max_seq_length or mm.get("max_seq_length") or 512
        weights = None if local else mmteb_encode_tokens(benchmark, length)
        names = shard(names, int(k), int(n), weights)
        print(f"shard {args.shard}: {', '.join(names) or 'no task (more shards than tasks)'}")
        if not names:
            return
    set_threads(args.threads)
    if local:  # the offline stand-in: official tasks on the pinned files, loaded before the model
        from retrofit.eval.official import load_task

        names = [load_task(name, local) for name in names]
    metrics = evaluate_mmteb(
        args.model, args.out, names, batch_size=args.batch_size or cfg.get("batch_size", 128), model_name=args.name,
        benchmark=benchmark, device=args.device, bf16=not args.fp32,
        max_seq_length=args.max_seq_length or mm.get("max_seq_length"), expected=everything,
    )
    print(f"{args.name}: mean main score {metrics['headline']['main_score']:.4f} over {metrics['tasks_done']} task(s)")


def _cmd_summarize(args: argparse.Namespace) -> None:
    mm = _params_evaluate(args.params).get("mmteb") or {}
    local = args.local_data or mm.get("data") == "local"
    benchmark = None if local else args.benchmark or DEFAULT_BENCHMARK
    metrics = summarize_mmteb(args.out, args.tasks or (mm.get("tasks") if local else None), benchmark=benchmark)
    done = f"{metrics['tasks_done']}/{metrics['tasks_expected']}"
    print(f"{metrics['model']}: mean main score {metrics['headline']['main_score']:.4f} over {done} tasks")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m retrofit.eval.mmteb``: list, prefetch, evaluate and summarize the MMTEB retrieval tasks."""
    p = argparse.ArgumentParser(prog="python -m retrofit.eval.mmteb", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks", help="list the benchmark's Retrieval tasks with mteb's offline statistics")
    t.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    t.set_defaults(fn=_cmd_tasks)
    f = sub.add_parser("prefetch", help="download the tasks' datasets into HF_HOME (needs network)")
    f.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    f.add_argument("--tasks", nargs="+")
    f.set_defaults(fn=_cmd_prefetch)
    e = sub.add_parser("evaluate", help="evaluate a model on MMTEB retrieval (one shard of the tasks per GPU)")
    e.add_argument("--model", required=True, type=Path)
    e.add_argument("--name", required=True, help="unique model name for mteb")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--params", default="params.yaml", help="reads evaluate.batch_size and evaluate.mmteb if present")
    e.add_argument("--benchmark")
    e.add_argument("--tasks", nargs="+")
    e.add_argument("--shard", help="K/N: run shard K of N (tasks balanced by tokens to encode)")
    e.add_argument("--batch-size", type=int)
    e.add_argument("--max-seq-length", type=int)
    e.add_argument("--device")
    e.add_argument("--fp32", action="store_true", help="encode in fp32 instead of bf16 autocast")
    e.add_argument("--threads", type=int, default=4)
    e.add_argument("--local-data", help="official tasks from this raw-data directory, no hub (default: data/raw "
                   "where evaluate.mmteb.data is local)")
    e.set_defaults(fn=_cmd_evaluate)
    s = sub.add_parser("summarize", help="one metrics.json from the per-task results in --out")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--params", default="params.yaml", help="reads evaluate.mmteb if present")
    s.add_argument("--benchmark")
    s.add_argument("--tasks", nargs="+")
    s.add_argument("--local-data", action="store_true", help="tasks outside any benchmark (the offline stand-in)")
    s.set_defaults(fn=_cmd_summarize)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except (ParamsError, RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
