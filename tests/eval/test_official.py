"""retrofit.eval.official: mteb's own task classes on the pinned local copies, row for row as mteb's hub copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrofit.eval import official
from retrofit.eval.mmteb import evaluate_mmteb
from tests.mirror import mirror_or_skip

EXPECTED = {  # (subsets, documents or bitext pairs of the first subset, queries of the first subset)
    "Tatoeba": (11, 1000, None),
    "BelebeleRetrieval": (4, 488, 900),
    "LegalBenchCorporateLobbying": (1, 319, 340),
    "XQuADRetrieval": (12, 240, None),
}


@pytest.mark.parametrize("name", list(official.TASKS))
def test_local_data_rebuilds_mteb_hub_copy(name: str) -> None:
    task = official.load_task(name, mirror_or_skip())
    assert type(task).__module__.startswith("mteb.tasks")  # mteb's own class, metadata and scoring
    assert task.data_loaded and sorted(task.hf_subsets) == sorted(official.TASKS[name][1])
    stats = official.local_stats(task)
    n_subsets, docs, queries = EXPECTED[name]
    assert len(stats) == n_subsets
    first = stats[sorted(stats)[0]]
    assert first.get("documents", first.get("num_samples")) == docs
    if queries:
        assert first["queries"] == queries
    diffs = official.check_against_mteb_stats(task)
    # the only documented difference: Belebele's mirror has 21 characters less of question whitespace
    assert diffs == ({s: {"queries_chars": -21} for s in task.hf_subsets} if name == "BelebeleRetrieval" else {})


def test_xquad_retrieval_keeps_the_first_of_repeated_questions() -> None:
    task = official.load_task("XQuADRetrieval", mirror_or_skip())
    de = task.dataset["de"]["validation"]
    assert len(de["queries"]) == 1181 and len(de["corpus"]) == 240  # 1190 questions, 9 repeated texts
    assert all(len(docs) == 1 for docs in de["relevant_docs"].values())


def _copy(src: Path, dst: Path, dataset: str) -> Path:
    shutil.copytree(src / dataset, dst / dataset)
    return dst


def test_altered_data_fails_naming_the_statistic(tmp_path: Path) -> None:
    mirror = mirror_or_skip()
    root = _copy(mirror, tmp_path, "tatoeba")
    path = root / "tatoeba" / "tatoeba.deu-eng.deu"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[0] = lines[0] + " extra"
    path.chmod(0o644)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(official.OfficialDataError, match=r"Tatoeba/deu-eng: sentence1_chars is \d+ locally"):
        official.load_task("Tatoeba", root)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(official.OfficialDataError, match="legalbench_corporate_lobbying/test.tsv: missing"):
        official.load_task("LegalBenchCorporateLobbying", tmp_path)
    with pytest.raises(official.OfficialDataError, match="unknown"):
        official.load_task("NoSuchTask", tmp_path)


def test_evaluate_through_evaluate_mmteb_with_per_query_values(tiny_model_dir: Path, tmp_path: Path) -> None:
    mirror = mirror_or_skip()
    tasks = [official.load_task(n, mirror) for n in ("LegalBenchCorporateLobbying", "Tatoeba")]
    for t in tasks[1:]:  # two Tatoeba languages keep the test short
        t.hf_subsets = ["deu-eng", "tha-eng"]
    metrics = evaluate_mmteb(tiny_model_dir, tmp_path / "out", tasks, model_name="tiny", benchmark=None,
                             per_query=True, max_seq_length=64, bf16=False, batch_size=64)
    assert metrics["complete"] and metrics["max_seq_length"] == 64
    assert metrics["benchmark"] is None and "outside any benchmark" in metrics["headline_definition"]
    assert metrics["tasks"]["Tatoeba"]["main_score_name"] == "f1" and metrics["tasks"]["Tatoeba"]["ndcg_at_10"] is None
    assert set(metrics["tasks"]["Tatoeba"]["subset_scores"]) == {"deu-eng", "tha-eng"}
    assert all(gap < 1e-3 for gap in metrics["per_query_check"].values())
    legal = json.loads((tmp_path / "out" / "per_query" / "LegalBenchCorporateLobbying.json").read_text())
    assert len(legal["default"]) == 340
    tatoeba = json.loads((tmp_path / "out" / "per_query" / "Tatoeba.json").read_text())
    assert len(tatoeba["tha-eng"]) == 548 and all(0 <= v < 548 for v in tatoeba["tha-eng"].values())


def test_published_table() -> None:
    lines = official.published_markdown({"LegalBenchCorporateLobbying": {"default": 0.9}})
    assert "| LegalBenchCorporateLobbying | default | 90.00 | 89.47 | +0.53 |" in lines


def test_sharded_cli_runs_the_offline_stand_in_and_summarizes(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    """``evaluate.mmteb.data: local``: two shards of official tasks through the MMTEB CLI, then one summary."""
    from retrofit.eval.mmteb import main

    mirror = mirror_or_skip()
    tasks = ["LegalBenchCorporateLobbying", "BelebeleRetrieval"]
    out = tmp_path / "mmteb"
    common = ["--model", str(tiny_model_dir), "--name", "tiny", "--out", str(out), "--local-data", str(mirror),
              "--tasks", *tasks, "--threads", "1", "--fp32", "--max-seq-length", "64", "--params", "none.yaml"]
    main(["evaluate", *common, "--shard", "0/2"])
    first = json.loads((out / "metrics.json").read_text())
    assert first["tasks_done"] == 1 and not first["complete"] and first["benchmark"] is None
    main(["evaluate", *common, "--shard", "1/2"])
    main(["summarize", "--out", str(out), "--tasks", *tasks, "--local-data", "--params", "none.yaml"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and sorted(metrics["tasks"]) == sorted(tasks) and metrics["benchmark"] is None
    printed = capsys.readouterr().out
    assert "shard 0/2: " in printed and "shard 1/2: " in printed and "over 2/2 tasks" in printed
