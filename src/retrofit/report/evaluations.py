"""Loading each model's evaluation outputs from ``reports/eval/<model>/`` and the names of the metrics compared."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrofit.errors import InputError
from retrofit.eval import stats
from retrofit.eval.beyond_score import STATISTICS, task_file
from retrofit.eval.xquad import question_of
from retrofit.schema import EVAL_FAMILIES, OFFICIAL_TASK_NAMES

#: The held-out XQuAD metrics: the primary metric and the three families.
XQUAD_METRICS = ("primary", *EVAL_FAMILIES)

#: Official tasks reported for every model (XQuADRetrieval is the base model's only).
OFFICIAL = tuple(t for t in OFFICIAL_TASK_NAMES if t != "XQuADRetrieval")


def _identity(query_id: str) -> str:
    """The unit of a task whose ids name the same item in every subset (a parallel row or question)."""
    return query_id


#: The resampling unit of each official task (absent: each subset on its own, as Tatoeba's languages hold different
#: sentences); Belebele's subsets ask the same questions (parallel eng/deu) under the same ids.
_UNIT: dict[str, stats.Unit] = {"BelebeleRetrieval": _identity}

LABELS = {"primary": "primary (mono+cross)", "BelebeleRetrieval": "Belebele",
           "LegalBenchCorporateLobbying": "LegalBench"}

#: The beyond family's task types, in the order of the cost-of-retrofitting table, with their labels.
BEYOND_TYPES: dict[str, str] = {"STS": "STS", "Classification": "classification", "Clustering": "clustering",
                                "BitextMining": "bitext (Tatoeba)"}


def beyond_cell(kind: str, seen: str) -> str:
    """The metric name of one cell of the cost table: a task type in the seen or the unseen languages."""
    return f"beyond:{kind}:{seen}"


def statistic_of(metric: str) -> stats.Statistic:
    """How a metric's per-query values make its score (:mod:`retrofit.eval.stats`)."""
    if metric == "Tatoeba":
        return "bitext_f1"
    if metric.startswith("beyond:"):
        return STATISTICS[metric.split(":")[1]][0]
    return "mean"


@dataclass
class Evaluation:
    """One model's evaluation outputs, as read from ``reports/eval/<model>/``."""

    name: str
    metrics: dict[str, Any]
    per_query: dict[str, Any]
    official: dict[str, Any] = field(default_factory=dict)
    official_per_query: dict[str, Any] = field(default_factory=dict)
    beyond: dict[str, Any] = field(default_factory=dict)
    beyond_per_query: dict[str, Any] = field(default_factory=dict)

    def beyond_cells(self) -> list[str]:
        """The cost-table cells this model was evaluated on (:func:`beyond_cell`), in table order."""
        have = {(t["type"], seen) for t in self.beyond.get("tasks", {}).values() for seen in t["seen"].values()}
        return [beyond_cell(k, s) for k in BEYOND_TYPES for s in ("seen", "unseen") if (k, s) in have]

    def cell_subsets(self, metric: str) -> list[tuple[str, str]]:
        """``[(task, subset)]`` of one cost-table cell."""
        _, kind, seen = metric.split(":")
        return [(name, s) for name, t in self.beyond.get("tasks", {}).items() if t["type"] == kind
                for s, where in t["seen"].items() if where == seen]

    def score(self, metric: str) -> float | None:
        """The model's score for ``metric`` (a name of :data:`XQUAD_METRICS`, an official task or a beyond cell:
        the mean of the cell's subset scores)."""
        if metric.startswith("beyond:"):
            subsets = self.cell_subsets(metric)
            tasks = self.beyond.get("tasks", {})
            return float(sum(tasks[t]["scores"][s] for t, s in subsets) / len(subsets)) if subsets else None
        if metric == "primary":
            return float(self.metrics["primary"]["ndcg_at_10"])
        if metric in self.metrics["families"]:
            return float(self.metrics["families"][metric]["ndcg_at_10"])
        task = self.official.get("tasks", {}).get(metric)
        return None if task is None else float(task["main_score"])

    def values(self, metric: str) -> tuple[dict[str, Any], stats.Unit | None]:
        """Per-query values of ``metric`` as ``({subset: {id: value}}, resampling unit)``."""
        if metric == "primary":
            return {"all": self.per_query["primary"]}, question_of  # keyed by the bare question id
        if metric in self.per_query["ndcg_at_10"]:
            return self.per_query["ndcg_at_10"][metric], question_of  # "<lang>:q:<question>" in every language
        if metric.startswith("beyond:"):  # parallel rows share ids across languages (retrofit.eval.beyond_score)
            values = {f"{t}/{s}": self.beyond_per_query[t][s] for t, s in self.cell_subsets(metric)}
            return values, _identity if STATISTICS[metric.split(":")[1]][1] else None
        return self.official_per_query[metric], _UNIT.get(metric)


def load_evaluations(eval_dir: Path, names: Sequence[str]) -> dict[str, Evaluation]:
    """Read every named model's evaluation.

    Raises:
        FileNotFoundError: A model has no held-out XQuAD ``metrics.json`` or ``per_query.json``; the message names
            the model and the stage to run.
    """
    out = {}
    for name in names:
        d = Path(eval_dir) / name
        need = [d / "metrics.json", d / "per_query.json"]
        missing = [str(p) for p in need if not p.is_file()]
        if missing:
            raise InputError(f"{name}: no evaluation ({', '.join(missing)}); run its evaluate stage first")
        official = d / "official" / "metrics.json"
        off = json.loads(official.read_text(encoding="utf-8")) if official.is_file() else {}
        per_task = {
            p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((d / "official" / "per_query").glob("*.json"))
        }
        beyond_metrics = d / "beyond" / "metrics.json"
        bey = json.loads(beyond_metrics.read_text(encoding="utf-8")) if beyond_metrics.is_file() else {}
        bey_pq = {t: json.loads((d / "beyond" / "per_query" / f"{task_file(t)}.json").read_text(encoding="utf-8"))
                  for t in bey.get("tasks", {})}
        out[name] = Evaluation(name, json.loads(need[0].read_text(encoding="utf-8")),
                               json.loads(need[1].read_text(encoding="utf-8")), off, per_task, bey, bey_pq)
    return out


def load_training(train_dir: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{model: mixture}`` from each trained model's ``reports/train/<model>/info.json``
    (:func:`retrofit.train.trainer.mixture_counts`); models without one (the base) are left out."""
    out = {}
    for name in names:
        path = Path(train_dir) / name / "info.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))["mixture"]
    return out


def load_mmteb(eval_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{model: mmteb/metrics.json}`` for every name evaluated on MMTEB (``evaluate.benchmarks`` with ``mmteb``)."""
    out = {}
    for name in names:
        path = eval_dir / name / "mmteb" / "metrics.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out
