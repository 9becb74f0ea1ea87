"""MMTEB(Multilingual) retrieval offline: the summary, and evaluation that fails fast naming the dataset. The tasks,
their statistics and shards: ``tests/eval/test_mmteb_tasks.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from retrofit.errors import AssetError
from retrofit.eval.mmteb import evaluate_mmteb, summarize_mmteb
from retrofit.eval.mmteb_tasks import mmteb_tasks


def test_summarize_mmteb_means_main_scores_and_flags_missing(tmp_path: Path):
    from mteb import TaskResult

    tasks = {t.metadata.name: t for t in mmteb_tasks(names=["ArguAna", "LEMBPasskeyRetrieval"])}
    (tmp_path / "results").mkdir()
    arguana = {"test": {"default": {"main_score": 0.5, "ndcg_at_10": 0.5, "ndcg_at_1": 0.4}}}
    lemb = {s: {"default": {"main_score": 0.2, "ndcg_at_10": 0.3, "ndcg_at_1": 0.2}}
            for s in tasks["LEMBPasskeyRetrieval"].eval_splits}
    for name, scores in (("ArguAna", arguana), ("LEMBPasskeyRetrieval", lemb)):
        result = TaskResult.from_task_results(tasks[name], scores, evaluation_time=1.0)
        result.to_disk(tmp_path / "results" / f"{name}.json")
    metrics = summarize_mmteb(tmp_path, ["ArguAna", "LEMBPasskeyRetrieval", "SCIDOCS"], model="retrofit/toy")
    assert metrics["missing"] == ["SCIDOCS"] and not metrics["complete"]
    assert metrics["headline"]["main_score"] == pytest.approx((0.5 + 0.2) / 2)
    assert metrics["headline"]["ndcg_at_10"] == pytest.approx((0.5 + 0.3) / 2)
    assert metrics["tasks"]["LEMBPasskeyRetrieval"]["main_score_name"] == "ndcg_at_1"
    assert json.loads((tmp_path / "summary.json").read_text())["complete"] is False
    assert "| ArguAna | 50.00 | ndcg_at_10 | 50.00 |" in (tmp_path / "table.md").read_text()


def test_evaluate_mmteb_offline_names_the_dataset(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(AssetError) as info:
        evaluate_mmteb(tiny_model_dir, tmp_path / "out", ["ArguAna"], batch_size=8, model_name="tiny")
    msg = str(info.value)
    assert "ArguAna" in msg and "mteb/arguana" in msg
    assert "HF_HOME" in msg and "HF_HUB_OFFLINE" in msg and "HF_ENDPOINT" in msg
    assert "python -m retrofit.eval.mmteb prefetch --tasks ArguAna" in msg


def test_evaluate_mmteb_end_to_end_on_an_in_memory_task(tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    """The whole evaluate -> results -> metrics path, with a held-out-XQuAD-shaped task standing in for MMTEB's."""
    from retrofit.eval import mmteb
    from retrofit.eval.xquad import build_tasks

    paragraphs, questions = [], []
    for a in range(2):
        for p in range(3):
            pid = f"a{a}p{p}"
            word = ["river", "city", "book", "music", "forest", "mountain"][a * 3 + p]
            paragraphs.append({"id": pid, "lang": "en", "text": f"the {word} paragraph {p}", "split": "test"})
            questions.append({"id": f"q{a}{p}", "lang": "en", "paragraph_id": pid, "text": f"which {word}?",
                              "split": "test"})
    [task] = build_tasks(paragraphs, questions, ["en"], ["mono"], None, seed=0)
    name = task.metadata.name
    monkeypatch.setattr(mmteb, "mmteb_tasks", lambda benchmark=None, task_types=None, names=None: [task])
    out = tmp_path / "mmteb"
    metrics = evaluate_mmteb(tiny_model_dir, out, [name], batch_size=4, model_name="tiny", device="cpu", bf16=False,
                             max_seq_length=64)
    assert metrics["complete"] and metrics["tasks_done"] == 1 and metrics["model"] == "retrofit/tiny"
    assert 0.0 <= metrics["headline"]["ndcg_at_10"] <= 1.0
    assert (out / "results" / f"{name}.json").is_file() and (out / "mteb_cache").is_dir()
    written = json.loads((out / "metrics.json").read_text())
    assert written["tasks"][name]["ndcg_at_10"] == metrics["headline"]["ndcg_at_10"]


def test_evaluate_stage_mmteb_branch_fails_fast_offline(tiny_model_dir: Path, tmp_path: Path):
    """The evaluate stage with evaluate.benchmarks [mmteb], offline and uncached: exit 2, naming the dataset."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, str(root / "stages/evaluate.py"), "--params", str(root / "params.yaml"),
         "--model", str(tiny_model_dir), "--name", "t", "--out", str(tmp_path / "out"),
         "--set", "evaluate.benchmarks=[mmteb]", "evaluate.mmteb.tasks=[SpartQA]",
         "evaluate.official.tasks=[]", "evaluate.max_seq_length=128"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "SpartQA" in proc.stderr and "HF_HOME" in proc.stderr
    assert not (tmp_path / "out" / "mmteb" / "metrics.json").exists()
