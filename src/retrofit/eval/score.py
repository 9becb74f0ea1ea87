"""Scoring a model on mteb tasks: the run itself, per-query scores for the bootstrap, and the summary tables.

:func:`evaluate_encoder` runs the held-out XQuAD families of :mod:`retrofit.eval.xquad` and writes, under
``out_dir``:

- ``results/<task name>.json``: mteb's ``TaskResult`` for each family, every metric mteb computes;
- ``mteb_cache/``: the stage's own mteb ``ResultCache`` (never the shared ``~/.cache/mteb``, see below);
- ``metrics.json``: ``{"model", "main_score", "primary": {metric: value}, "primary_definition",
  "families": {family: {metric: value}}, "subsets": {family: {subset: {metric: value, "n_queries": int,
  "n_documents": int}}}, "max_seq_length": int, "per_query_check": {family: largest gap}}``. A family's value is
  the unweighted mean over its subsets (every subset has the same number of queries, since XQuAD is parallel);
  the **primary** metric is the unweighted mean of the mono and cross family means (:data:`PRIMARY_FAMILIES`),
  so every language weighs the same in each; pooled is reported beside it as a diagnostic;
- ``per_query.json``: ``{"ndcg_at_10": {family: {subset: {query id: nDCG@10}}}, "primary": {question id: u}}``,
  the values the bootstrap of :mod:`retrofit.eval.stats` resamples (:func:`per_query_scores`,
  :func:`primary_per_question`); they reproduce mteb's subset scores to 1e-3 or the run fails
  (:func:`check_per_query`, whose largest gap is ``per_query_check``);
- ``table.md``: one table per metric, a row per language, columns mono / X->en / en->X / pooled;
- ``summary.json``: just ``primary`` and ``families`` (what ``dvc metrics show`` prints);
- ``timing.json``: wall-clock seconds per phase and encoding counts of the XQuAD run (kept out of ``metrics.json``
  so that a metrics diff shows only scores);
- ``stage_timing.json`` (written by the evaluate stage through :func:`write_stage_timing`, after every benchmark):
  ``{"stage_s", "backend", "runtime", "texts_encoded", "trunk_cache": {"layers", "hits", "misses"} | null,
  "work": {"texts", "tokens", "layer_tokens", "layer_attention"}, "beyond_s": float | null}``, the whole stage's
  wall time, its encoder's runtime choices and counts over all tasks, the encoder work it did
  (:mod:`retrofit.embed.work`) and the seconds of the beyond family (null where it did not run).

Scores are mteb's (pytrec_eval) under its own keys: ``ndcg_at_10`` (the main score), ``recall_at_10`` and
``mrr_at_10``. Every unique text is encoded once, longest first, before mteb runs, so the mteb pass itself only
scores (:class:`retrofit.eval.encoder.PromptCachedEncoder`).

*Stale results.* mteb's default ``ResultCache`` (``~/.cache/mteb``) keys results by the model's card name, which
for a fine-tuned model is often the base model's name; with mteb's default ``"only-missing"`` strategy a fine-tuned
model can then silently be given the base model's scores. Here every run uses a cache inside ``out_dir``,
``overwrite_strategy="always"`` and a name from the caller plus a revision hashed from the weights.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.types import PromptType

from retrofit.embed.work import WORK
from retrofit.eval.encoder import PromptCachedEncoder, load_encoder
from retrofit.eval.stats import task_score
from retrofit.eval.xquad import (
    question_of,
    HELDOUT_SPLIT,
    METRIC_LABELS,
    METRICS,
    PRIMARY_FAMILIES,
    XQuADRetrievalTask,
)
from retrofit.io import write_json
from retrofit.runtime import runtime_choices

if TYPE_CHECKING:
    from mteb.results import TaskResult

log = logging.getLogger(__name__)


def evaluate_model(
    model_path: Path,
    tasks: Sequence[XQuADRetrievalTask],
    out_dir: Path,
    model_name: str,
    batch_size: int = 32,
    device: str | None = None,
    bf16: bool = False,
    max_seq_length: int | None = None,
) -> dict[str, Any]:
    """Evaluate a local sentence-transformers model on the tasks and write the report files.

    Args:
        model_path: A sentence-transformers model directory (its ``prompts`` are applied, see
            :func:`resolve_prompts`).
        tasks: From :func:`build_tasks`.
        out_dir: Output directory (created); gets ``metrics.json``, ``table.md``, ``timing.json``, ``results/``
            and ``mteb_cache/`` (see the module docstring).
        model_name: Identifies this model in mteb's results; unique per evaluated model.
        batch_size: Texts per forward pass.
        device: torch device; ``None`` lets sentence-transformers choose.
        bf16: Encode under bf16 autocast.
        max_seq_length: Tokens per text for every model alike (see :func:`load_encoder`).

    Returns:
        The content of ``metrics.json`` plus ``"timing"`` (the content of ``timing.json``).
    """
    start = time.perf_counter()
    encoder = load_encoder(
        Path(model_path), model_name, batch_size=batch_size, device=device, bf16=bf16, max_seq_length=max_seq_length
    )
    loaded = time.perf_counter() - start
    report = evaluate_encoder(encoder, tasks, Path(out_dir))
    report["timing"]["load_model_s"] = round(loaded, 3)
    report["timing"]["total_s"] = round(time.perf_counter() - start, 3)
    write_json(Path(out_dir) / "timing.json", report["timing"])
    return report


def evaluate_encoder(encoder: AbsEncoder, tasks: Sequence[XQuADRetrievalTask], out_dir: Path) -> dict[str, Any]:
    """Run ``mteb.evaluate`` with a fresh cache policy and write the report files (see :func:`evaluate_model`).

    Args:
        encoder: Any mteb encoder whose ``mteb_model_meta`` names the model; a :class:`PromptCachedEncoder`
            first embeds every unique text once.
        tasks: From :func:`build_tasks` (at most one per family).
        out_dir: Output directory (created).

    Returns:
        The content of ``metrics.json`` plus ``"timing"``.

    Raises:
        ValueError: Two tasks of one family, or no tasks.
        RuntimeError: mteb returned no result for a task.
    """
    import mteb

    families = [task.family for task in tasks]
    if not tasks or len(set(families)) != len(families):
        raise ValueError(f"tasks: give at most one task per family, got families {families}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    embed_tasks(encoder, tasks)
    encoded = time.perf_counter()

    result = mteb.evaluate(
        encoder,
        list(tasks),
        cache=mteb.ResultCache(out_dir / "mteb_cache"),
        overwrite_strategy="always",
        encode_kwargs={"batch_size": getattr(encoder, "batch_size", 32), "show_progress_bar": False},
        co2_tracker=False,
        raise_error=True,
    )
    scored = time.perf_counter()

    metrics = _write_results(encoder, tasks, result, out_dir)
    timing = _timing(encoder, start, encoded, scored)
    write_json(out_dir / "timing.json", timing)
    log.info(
        "evaluated %s: primary %s %s; %s",
        metrics["model"], METRICS[0], (metrics["primary"] or {}).get(METRICS[0]), json.dumps(timing),
    )
    return {**metrics, "timing": timing}


def embed_tasks(encoder: AbsEncoder, tasks: Sequence[XQuADRetrievalTask]) -> None:
    """Load every task's data, then, for a :class:`PromptCachedEncoder`, embed every text of every task once:
    documents, then queries, each in one length-sorted pass (the batches the frozen-trunk cache keys its entries by).

    Loaded before mteb runs, so mteb neither reloads nor unloads them between families.
    """
    for task in tasks:
        task.load_data()
    if isinstance(encoder, PromptCachedEncoder):
        for prompt_type in (PromptType.document, PromptType.query):
            encoder.precompute([t for task in tasks for t in task.texts_by_prompt_type()[prompt_type]], prompt_type)


def _write_results(encoder: AbsEncoder, tasks: Sequence[XQuADRetrievalTask], result: Any,
                   out_dir: Path) -> dict[str, Any]:
    """Write mteb's results, ``per_query.json``, ``metrics.json``, ``summary.json`` and ``table.md``; return the
    metrics."""
    by_name = {r.task_name: r for r in result.task_results}
    results_dir = out_dir / "results"
    results_dir.mkdir(exist_ok=True)
    per_subset: dict[str, dict[str, dict[str, float | int]]] = {}
    for task in tasks:
        name = task.metadata.name
        if name not in by_name:
            raise RuntimeError(f"mteb returned no result for {name}; exceptions: {result.exceptions}")
        task_result: TaskResult = by_name[name]
        task_result.to_disk(results_dir / f"{name}.json")
        per_subset[task.family] = _subset_metrics(task_result, task.subset_sizes())

    metrics = summarize(per_subset, str(encoder.mteb_model_meta.name))
    if isinstance(encoder, PromptCachedEncoder):
        per_query = {task.family: per_query_scores(task, encoder) for task in tasks}
        metrics["max_seq_length"] = getattr(encoder.model, "max_seq_length", None)
        metrics["per_query_check"] = {
            task.family: check_per_query(task, by_name[task.metadata.name], per_query[task.family]) for task in tasks
        }
        primary = primary_per_question(per_query)
        write_json(out_dir / "per_query.json", {"ndcg_at_10": per_query, "primary": primary})
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "summary.json", {k: metrics[k] for k in ("primary", "families") if k in metrics})
    (out_dir / "table.md").write_text(render_table(metrics), encoding="utf-8")
    return metrics


def _timing(encoder: AbsEncoder, start: float, encoded: float, scored: float) -> dict[str, Any]:
    """``timing.json``: seconds per phase, and the encoder's counts and runtime choices."""
    timing: dict[str, Any] = {
        "encode_s": round(encoded - start, 3),
        "mteb_s": round(scored - encoded, 3),
        "total_s": round(time.perf_counter() - start, 3),
    }
    if isinstance(encoder, PromptCachedEncoder):
        timing["texts_encoded"] = encoder.n_encoded
        timing["texts_requested_by_mteb"] = encoder.n_requested
        timing["runtime"] = runtime_choices()
        timing["backend"] = encoder.backend
        if encoder.trunk is not None:
            timing["trunk_cache"] = {"layers": encoder.trunk.depth, "hits": encoder.trunk.hits,
                                     "misses": encoder.trunk.misses}
    return timing


def write_stage_timing(path: Path, encoder: PromptCachedEncoder, started: float, **extra: Any) -> dict[str, Any]:
    """Write ``stage_timing.json`` (module docstring): the stage's wall time since ``started`` (``perf_counter``), and
    ``extra`` keys (the beyond family's seconds, ``beyond_s``)."""
    trunk = encoder.trunk
    timing = {
        "stage_s": round(time.perf_counter() - started, 3),
        "backend": encoder.backend,
        "runtime": runtime_choices(),
        "texts_encoded": encoder.n_encoded,
        "trunk_cache": None if trunk is None else {"layers": trunk.depth, "hits": trunk.hits, "misses": trunk.misses},
        "work": WORK.to_json(),
        **extra,
    }
    write_json(path, timing)
    return timing


def per_query_scores(task: Any, encoder: PromptCachedEncoder) -> dict[str, dict[str, float]]:
    """The per-query values behind a loaded mteb task's main score, from the encoder's cached embeddings.

    The scores are computed on mteb's own path, so that near-ties (a weak model's embeddings can be almost
    collinear) rank exactly as mteb ranked them: the encoder's ``similarity`` on the embeddings mteb received, in the
    shapes mteb used, then ``torch.topk`` as mteb does. Retrieval: each query's nDCG@10 over its subset's whole
    corpus, from ``pytrec_eval`` (``ndcg_cut.10``, mteb's scorer, with trec_eval's tie order). BitextMining: the
    index of each ``sentence1``'s nearest ``sentence2``, searched in mteb's chunks of 100 (mteb's F1 follows from
    these, :func:`retrofit.eval.stats.bitext_f1`). Nothing is encoded again after ``mteb.evaluate``.

    Args:
        task: An mteb task with its data loaded (retrieval data in mteb's v2 layout).
        encoder: The encoder that ran the task.

    Returns:
        ``{subset: {query id (bitext: sentence index): value}}``.
    """
    import pytrec_eval
    import torch

    split = task.eval_splits[0]
    out: dict[str, dict[str, float]] = {}
    for subset in task.hf_subsets:
        data = task.dataset[subset][split]
        if task.metadata.type == "BitextMining":
            left = encoder.encode_texts(list(data["sentence1"]), None, task.metadata.name)  # (n, dim)
            right = encoder.encode_texts(list(data["sentence2"]), None, task.metadata.name)  # (n, dim)
            nearest: dict[str, float] = {}
            for start in range(0, len(left), _MTEB_BITEXT_QUERY_CHUNK):
                sims = torch.as_tensor(encoder.similarity(left[start : start + _MTEB_BITEXT_QUERY_CHUNK], right))
                top = torch.topk(sims, 1, dim=1, largest=True, sorted=False).indices[:, 0].tolist()
                nearest.update({str(start + i): int(j) for i, j in enumerate(top)})
            out[subset] = nearest
            continue
        queries, corpus, qrels = data["queries"], data["corpus"], data["relevant_docs"]
        doc_texts = [
            (f"{t} {x}".strip() if t else x)
            for t, x in zip(corpus["title"] if "title" in corpus.column_names else [""] * len(corpus),
                            corpus["text"], strict=True)
        ]
        q = encoder.encode_texts(list(queries["text"]), PromptType.query)  # (n_queries, dim)
        d = encoder.encode_texts(doc_texts, PromptType.document)  # (n_docs, dim)
        doc_ids = list(corpus["id"])
        sims = torch.as_tensor(encoder.similarity(q, d))  # (n_queries, n_docs)
        # nDCG@10 only reads the top 10 (and documents tied with them), which the top 100 always hold
        values, index = torch.topk(sims, min(_TOP_FOR_NDCG10, sims.shape[1]), dim=1, largest=True)
        run = {
            str(qid): {doc_ids[j]: float(v) for j, v in zip(idx, val, strict=True)}
            for qid, idx, val in zip(queries["id"], index.tolist(), values.tolist(), strict=True)
        }
        positives = {str(qid): {doc: int(g) for doc, g in rel.items()} for qid, rel in qrels.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(positives, {"ndcg_cut.10"})
        # mteb averages over the queries pytrec_eval scores: those with a relevant document
        out[subset] = {qid: float(v["ndcg_cut_10"]) for qid, v in evaluator.evaluate(run).items()}
    return out


_MTEB_BITEXT_QUERY_CHUNK = 100  # mteb's BitextMiningEvaluator query_chunk_size


_TOP_FOR_NDCG10 = 100


def check_per_query(task: Any, result: TaskResult, per_query: Mapping[str, Mapping[str, float]]) -> float:
    """Check that per-query values reproduce mteb's own subset scores; returns the largest absolute gap.

    The bootstrap intervals rest on the per-query values, so they must describe exactly what mteb scored.

    Raises:
        RuntimeError: A subset's recomputed score differs from mteb's by more than 1e-3.
    """
    statistic = "bitext_f1" if task.metadata.type == "BitextMining" else "mean"
    scores = {e["hf_subset"]: e for split in result.scores.values() for e in split}
    main = task.metadata.main_score if statistic == "bitext_f1" else METRICS[0]
    gap = 0.0
    for subset, values in per_query.items():
        ours = task_score({subset: values}, statistic)
        theirs = float(scores[subset][main])
        gap = max(gap, abs(ours - theirs))
        if abs(ours - theirs) > 1e-3:
            raise RuntimeError(
                f"{task.metadata.name}/{subset}: per-query {main} averages to {ours:.5f}, mteb reports {theirs:.5f}; "
                "the bootstrap would describe a different evaluation"
            )
    return gap


def primary_per_question(per_query: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """Each held-out question's contribution to the primary metric.

    Every mono and cross subset asks the same question ids (XQuAD is parallel), so the primary metric, the mean of
    the mono and cross family means, equals the mean over questions of ``u(q)`` = the mean over families of the
    family's mean over subsets of ``q``'s nDCG@10. The paired bootstrap resamples these ``u(q)``.

    Args:
        per_query: ``{family: {subset: {query id: nDCG@10}}}``, query ids as built by :func:`build_tasks`.

    Returns:
        ``{question id: u}`` (empty when neither mono nor cross was run).
    """
    families = [f for f in PRIMARY_FAMILIES if f in per_query]
    units: dict[str, list[float]] = {}
    for family in families:
        by_question: dict[str, list[float]] = {}
        for values in per_query[family].values():
            for query_id, value in values.items():
                by_question.setdefault(question_of(query_id), []).append(value)
        for question, vals in by_question.items():
            units.setdefault(question, []).append(float(np.mean(vals)))
    return {q: float(np.mean(v)) for q, v in sorted(units.items()) if len(v) == len(families)}


def _subset_metrics(task_result: TaskResult, sizes: dict[str, dict[str, int]]) -> dict[str, dict[str, float | int]]:
    scores = {entry["hf_subset"]: entry for entry in task_result.scores[HELDOUT_SPLIT]}
    missing = sorted(set(sizes) - set(scores))
    if missing:
        raise RuntimeError(f"{task_result.task_name}: mteb returned no scores for subset(s) {missing}")
    return {subset: {**{m: float(scores[subset][m]) for m in METRICS}, **sizes[subset]} for subset in sizes}


def summarize(per_subset: Mapping[str, Mapping[str, Mapping[str, float | int]]], model: str) -> dict[str, Any]:
    """Family means and the primary metric from per-subset scores.

    Args:
        per_subset: ``{family: {subset: {metric: value, ...}}}`` for the families that were run.
        model: The model's name, recorded in the output.

    Returns:
        The ``metrics.json`` document (schema in the module docstring); ``primary`` is ``None`` when neither
        mono nor cross was run.
    """
    families = {
        family: {m: float(np.mean([s[m] for s in subsets.values()])) for m in METRICS}
        for family, subsets in per_subset.items()
    }
    used = [f for f in PRIMARY_FAMILIES if f in families]
    primary = {m: float(np.mean([families[f][m] for f in used])) for m in METRICS} if used else None
    return {
        "model": model,
        "main_score": METRICS[0],
        "primary": primary,
        "primary_definition": "unweighted mean of the " + " and ".join(used) + " family means" if used else None,
        "families": families,
        "subsets": {family: {s: dict(v) for s, v in subsets.items()} for family, subsets in per_subset.items()},
    }


def render_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown report: one table per metric, a row per language, columns mono / X->en / en->X / pooled.

    Args:
        metrics: The ``metrics.json`` document from :func:`summarize`.

    Returns:
        Markdown text; scores are shown x100 with one decimal, ``-`` where a cell does not apply or was not run.
    """
    subsets = metrics["subsets"]
    langs: list[str] = []
    for family in ("mono", "pooled"):
        langs += [s for s in subsets.get(family, {}) if s not in langs]
    for pair in subsets.get("cross", {}):
        langs += [lang for lang in pair.split("-") if lang not in langs]
    columns = [
        ("mono", "mono", lambda lang: lang),
        ("cross", "X→en", lambda lang: f"{lang}-en"),
        ("cross", "en→X", lambda lang: f"en-{lang}"),
        ("pooled", "pooled", lambda lang: lang),
    ]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [
        f"# Held-out XQuAD retrieval: {metrics['model']}",
        "",
        "Primary: " + ", ".join(f"{METRIC_LABELS[m]} {cell((metrics['primary'] or {}).get(m))}" for m in METRICS)
        + f" ({metrics['primary_definition']}; pooled is a diagnostic family, outside the primary metric).",
        "",
        "Scores x100. mono: query and corpus in language X. X→en: X queries, English corpus. en→X: English "
        "queries, X corpus. pooled: X queries against every language's passages at once, all translations of the "
        "right paragraph relevant.",
    ]
    for metric in METRICS:
        lines += ["", f"## {METRIC_LABELS[metric]}", "", "| lang | " + " | ".join(c[1] for c in columns) + " |"]
        lines.append("|---|" + "---:|" * len(columns))
        for lang in langs:
            row = [cell(subsets.get(fam, {}).get(key(lang), {}).get(metric)) for fam, _, key in columns]
            lines.append(f"| {lang} | " + " | ".join(row) + " |")
        means = []
        for fam, _, key in columns:
            values = [subsets[fam][key(lang)][metric] for lang in langs if key(lang) in subsets.get(fam, {})]
            means.append(cell(float(np.mean(values)) if values else None))
        lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"
