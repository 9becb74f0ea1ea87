"""Loading each model's evaluation outputs from ``reports/eval/<model>/`` and the names of the metrics compared."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrofit.errors import InputError
from retrofit.eval import stats
from retrofit.eval.xquad import question_of
from retrofit.schema import EVAL_FAMILIES, OFFICIAL_TASK_NAMES

#: The held-out XQuAD metrics: the primary metric and the three families.
XQUAD_METRICS = ("primary", *EVAL_FAMILIES)

#: Official tasks reported for every model (XQuADRetrieval is the base model's only).
OFFICIAL = tuple(t for t in OFFICIAL_TASK_NAMES if t != "XQuADRetrieval")

#: The resampling unit of each official task (absent: each subset on its own, as Tatoeba's languages hold different
#: sentences); Belebele's subsets ask the same questions (parallel eng/deu) under the same ids.
_UNIT: dict[str, stats.Unit] = {"BelebeleRetrieval": lambda query_id: query_id}

LABELS = {"primary": "primary (mono+cross)", "BelebeleRetrieval": "Belebele",
           "LegalBenchCorporateLobbying": "LegalBench"}


@dataclass
class Evaluation:
    """One model's evaluation outputs, as read from ``reports/eval/<model>/``."""

    name: str
    metrics: dict[str, Any]
    per_query: dict[str, Any]
    official: dict[str, Any] = field(default_factory=dict)
    official_per_query: dict[str, Any] = field(default_factory=dict)

    def score(self, metric: str) -> float | None:
        """The model's score for ``metric`` (a name of :data:`XQUAD_METRICS` or an official task)."""
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
        out[name] = Evaluation(name, json.loads(need[0].read_text(encoding="utf-8")),
                               json.loads(need[1].read_text(encoding="utf-8")), off, per_task)
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
