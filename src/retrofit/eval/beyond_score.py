"""Scoring the beyond family (:mod:`retrofit.eval.beyond`) with the per-unit values its intervals resample.

:func:`score_beyond_task` runs mteb on one loaded task and keeps, beside each subset's main score, the values behind
it; :func:`per_query_values` turns them into :mod:`retrofit.eval.stats`'s ``{subset: {id: value}}``; and
:func:`evaluate_beyond` runs the whole family for the evaluate stage and writes ``<out>/beyond/``:

- ``metrics.json``: ``{"tasks": {task: {"type", "unit", "main_score_name", "scores": {subset: score in [0, 1]},
  "seen": {subset: "seen" | "unseen"}, "spread_std": {subset: std of mteb's repeated runs}}}, "languages",
  "encode_s", "eval_s"}`` (``spread_std`` for classification and clustering only);
- ``per_query/<task file>.json`` (:func:`task_file`): ``{subset: {id: value}}`` (:func:`per_query_values`);
- ``spread.json``: mteb's own repeated runs per task and subset (classification draws, clustering resamples).

*Ids and resampling units* (:data:`STATISTICS`). SIB-200's test examples and STS-B's pairs are parallel across
languages (the same rows, translated; :func:`retrofit.eval.beyond._sib200` checks SIB-200's), so their ids are shared
by every subset, ``"<dataset>:<row>"``, and one bootstrap draw brings a row in every language, as an XQuAD question
does. KorSTS and JSTS rows have ids of their own. Bitext ids are sentence indices (each language its own sentences,
resampled on its own). Clustering has no per-example unit: its values are mteb's 10 k-means resamples, ``"run<k>"``
(the same sentence resample for every model: mteb seeds them), resampled per subset, so its interval says how
stable mteb's own estimate is, not how the sentences were drawn.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from mteb.models.abs_encoder import AbsEncoder
from mteb.types import PromptType

from retrofit.eval.beyond import BEYOND_TASKS, _split_data, load_beyond_task
from retrofit.eval.score import per_query_scores
from retrofit.eval.stats import Statistic, bitext_f1


#: task type -> the resampling unit of its per-unit values (clustering has none: mteb's own spread instead).
UNITS: dict[str, str | None] = {"STS": "pair", "Classification": "example", "BitextMining": "sentence",
                                "Clustering": None}


class _Recorder(AbsEncoder):
    """An mteb encoder that passes every ``encode`` call on and keeps the embeddings mteb was given.

    The per-unit values are then computed from exactly what mteb scored, for any mteb-compatible encoder, and nothing
    is encoded twice. Embeddings are keyed by ``(prompt type, text)``.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mteb_model_meta = inner.mteb_model_meta
        self.embeddings: dict[tuple[str | None, str], np.ndarray] = {}
        self.encode_s = 0.0
        self.n_requested = 0

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> Any:
        """mteb's ``EncoderProtocol.encode``: the inner encoder's embeddings, recorded."""
        texts = [text for batch in inputs for text in batch["text"]]  # a DataLoader: iterating it again is fine
        start = time.perf_counter()
        emb = self.inner.encode(inputs, task_metadata=task_metadata, hf_split=hf_split, hf_subset=hf_subset,
                                prompt_type=prompt_type, **kwargs)
        self.encode_s += time.perf_counter() - start
        self.n_requested += len(texts)
        rows = np.asarray(emb.detach().cpu() if hasattr(emb, "detach") else emb, dtype=np.float32)  # (n, dim)
        key = getattr(prompt_type, "value", prompt_type)
        self.embeddings.update({(key, text): row for text, row in zip(texts, rows, strict=True)})
        return emb

    def encode_texts(self, texts: list[str], prompt_type: PromptType | None, task: str | None = None) -> np.ndarray:
        """The recorded embeddings of ``texts``, shape ``(len(texts), dim)`` (what score.py's bitext path reads);
        ``task`` is the one that recorded them."""
        key = getattr(prompt_type, "value", prompt_type)
        return np.stack([self.embeddings[(key, text)] for text in texts])

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """The inner encoder's similarity, as mteb used it."""
        return self.inner.similarity(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        """The inner encoder's pairwise similarity, as mteb used it."""
        return self.inner.similarity_pairwise(embeddings1, embeddings2)


def _sts_units(recorder: _Recorder, data: Dataset) -> tuple[dict[str, list[float]], float]:
    """Per-pair cosine (mteb's formula) and gold score; returns them and their Spearman correlation."""
    from scipy.stats import spearmanr
    from sklearn.metrics.pairwise import paired_cosine_distances

    e1 = recorder.encode_texts(list(data["sentence1"]), None)  # (n_pairs, dim)
    e2 = recorder.encode_texts(list(data["sentence2"]), None)  # (n_pairs, dim)
    cosine = 1 - paired_cosine_distances(e1, e2)  # (n_pairs,)
    gold = [float(g) for g in data["score"]]
    return {"cosine": cosine.tolist(), "gold": gold}, float(spearmanr(gold, cosine)[0])


def _classification_units(draws: list[list[int]], labels: list[int]) -> tuple[dict[str, list[float]], float]:
    """Each test example's correctness averaged over mteb's draws; returns it and its mean (mteb's accuracy)."""
    pred = np.asarray(draws)  # (n_draws, n_test)
    correct = (pred == np.asarray(labels)[None, :]).mean(axis=0)  # (n_test,)
    return {"correct": correct.tolist()}, float(correct.mean())


def _subset_result(task: Any, subset: str, entry: Mapping[str, Any], recorder: _Recorder,
                   predictions: Mapping[str, Any], nearest: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """One subset's main score, per-unit values (or clustering's spread) and their check against mteb."""
    kind = task.metadata.type
    split = task.eval_splits[0]
    main = float(entry["main_score"])
    out: dict[str, Any] = {"main_score": main}
    if kind == "Clustering":
        runs = [float(v) for level in entry["v_measures"].values() for v in level]
        out["spread"] = {"v_measures": runs, "std": float(entry["v_measure_std"])}
        return out
    data = _split_data(task, subset)[split]
    if kind == "STS":
        out["units"], ours = _sts_units(recorder, data)
    elif kind == "Classification":
        out["units"], ours = _classification_units(predictions[subset][split], list(data["label"]))
        draws = [float(e["accuracy"]) for e in entry["scores_per_experiment"]]
        out["spread"] = {"accuracy_per_draw": draws, "std": float(np.std(draws))}
    elif kind == "BitextMining":
        pred = [int(nearest[subset][str(i)]) for i in range(len(nearest[subset]))]
        out["units"], ours = {"nearest": pred}, bitext_f1(np.asarray(pred))
    else:
        raise ValueError(f"{task.metadata.name}: task type {kind} is not part of the beyond family")
    if abs(ours - main) > 1e-6:
        raise RuntimeError(f"{task.metadata.name}/{subset}: per-unit values give {ours:.6f}, mteb reports {main:.6f}; "
                           "an interval over them would describe a different evaluation")
    return out


def score_beyond_task(task: Any, encoder: Any, batch_size: int = 32) -> dict[str, Any]:
    """Score a loaded task with mteb and return each subset's main score with the values intervals resample.

    Args:
        task: From :func:`load_beyond_task`.
        encoder: Any mteb encoder (:func:`retrofit.eval.encoder.load_encoder`'s wrapper applies each task's
            published protocol, :data:`retrofit.eval.beyond.SYMMETRIC_PROMPTS`); its ``mteb_model_meta`` names the
            model.
        batch_size: Texts per forward pass.

    Returns:
        ``{"task", "type", "unit", "main_score_name", "scores": {subset: main score in [0, 1]},
        "subsets": {subset: {"main_score", "units": {...}, "spread": {...}}}, "encode_s", "eval_s",
        "texts_requested"}``. ``units``: STS ``cosine`` and ``gold`` per pair; classification ``correct`` per test
        example (mean over draws); bitext ``nearest`` per sentence1; clustering has none. ``spread`` (mteb's own
        repeated runs): clustering ``v_measures`` over its 10 resamples, classification ``accuracy_per_draw``, and
        their ``std``.

    Raises:
        RuntimeError: mteb returned no result, or the per-unit values do not reproduce mteb's scores.
    """
    import mteb

    recorder = _Recorder(encoder)
    kind = task.metadata.type
    split = task.eval_splits[0]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is superseded by", category=UserWarning)  # chosen: see above
        result = mteb.evaluate(
            recorder, [task], cache=None, overwrite_strategy="always", co2_tracker=False, raise_error=True,
            prediction_folder=tmp if kind == "Classification" else None, show_progress_bar=False,
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        )
        predictions = {}
        if kind == "Classification":
            predictions = json.loads(task._predictions_path(tmp).read_text(encoding="utf-8"))
    if not result.task_results:
        raise RuntimeError(f"mteb returned no result for {task.metadata.name}; exceptions: {result.exceptions}")
    entries = {e["hf_subset"]: e for e in result.task_results[0].scores[split]}
    nearest = per_query_scores(task, recorder) if kind == "BitextMining" else {}
    subsets = {s: _subset_result(task, s, entries[s], recorder, predictions, nearest) for s in task.hf_subsets}
    return {
        "task": task.metadata.name, "type": kind, "unit": UNITS.get(kind), "main_score_name": task.metadata.main_score,
        "scores": {s: v["main_score"] for s, v in subsets.items()}, "subsets": subsets,
        "encode_s": round(recorder.encode_s, 3), "eval_s": round(time.perf_counter() - start, 3),
        "texts_requested": recorder.n_requested,
    }


#: task type -> (the statistic of its per-query values, whether its ids are shared units across subsets).
STATISTICS: dict[str, tuple[Statistic, bool]] = {"STS": ("spearman", True), "Classification": ("mean", True),
                                                 "BitextMining": ("bitext_f1", False), "Clustering": ("mean", False)}


def task_file(name: str) -> str:
    """The file stem of a task's per-query values (``"Tatoeba (unseen)"`` -> ``"Tatoeba_unseen"``)."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def per_query_values(name: str, result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{subset: {id: value}}`` of one scored task (:func:`score_beyond_task`), ids as the module docstring says.

    Values: STS ``[cosine, gold]`` per pair; classification the example's correctness over mteb's draws; bitext the
    nearest ``sentence2`` index; clustering each k-means resample's v-measure.
    """
    dataset = BEYOND_TASKS[name].dataset
    out: dict[str, dict[str, Any]] = {}
    for subset, r in result["subsets"].items():
        units = r.get("units", {})
        if result["type"] == "STS":
            out[subset] = {f"{dataset}:{i}": [c, g] for i, (c, g) in enumerate(zip(units["cosine"], units["gold"],
                                                                                      strict=True))}
        elif result["type"] == "Classification":
            out[subset] = {f"{dataset}:{i}": v for i, v in enumerate(units["correct"])}
        elif result["type"] == "BitextMining":
            out[subset] = {str(i): v for i, v in enumerate(units["nearest"])}
        else:
            out[subset] = {f"run{k}": v for k, v in enumerate(r["spread"]["v_measures"])}
    return out


def evaluate_beyond(names: Sequence[str], raw_dir: str | Path, languages: Sequence[str] | None, encoder: Any,
                    out_dir: Path, batch_size: int = 64) -> dict[str, Any]:
    """Score every task of ``names`` with ``encoder`` and write ``out_dir`` (the module docstring's files).

    Args:
        names: Keys of :data:`retrofit.eval.beyond.BEYOND_TASKS` (``evaluate.beyond.tasks``).
        raw_dir: The raw-data directory (or a mirror).
        languages: ``evaluate.beyond.languages`` (``None``: every subset).
        encoder: The stage's encoder (its embedding and trunk caches serve every task).
        out_dir: Written (created).
        batch_size: Texts per forward pass.

    Returns:
        The content of ``metrics.json``.
    """
    tasks = {name: load_beyond_task(name, raw_dir, languages) for name in names}  # bad data fails before encoding
    (out_dir / "per_query").mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"tasks": {}, "languages": None if languages is None else list(languages),
                               "encode_s": 0.0, "eval_s": 0.0}
    spread = {}
    for name, task in tasks.items():
        result = score_beyond_task(task, encoder, batch_size)
        seen = BEYOND_TASKS[name].seen
        metrics["tasks"][name] = {"type": result["type"], "unit": result["unit"],
                                  "main_score_name": result["main_score_name"], "scores": result["scores"],
                                  "seen": {s: seen[s] for s in result["scores"]},
                                  "spread_std": {s: r["spread"]["std"] for s, r in result["subsets"].items()
                                                 if "spread" in r}}
        metrics["encode_s"] += result["encode_s"]
        metrics["eval_s"] += result["eval_s"]
        spread[name] = {s: r["spread"] for s, r in result["subsets"].items() if "spread" in r}
        (out_dir / "per_query" / f"{task_file(name)}.json").write_text(
            json.dumps(per_query_values(name, result)) + "\n", encoding="utf-8")
        print(f"evaluate: beyond {name}: " + ", ".join(f"{s} {v:.4f}" for s, v in result["scores"].items()))
    (out_dir / "spread.json").write_text(json.dumps(spread, indent=1) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
