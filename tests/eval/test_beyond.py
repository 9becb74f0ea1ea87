"""retrofit.eval.beyond: mteb's own classification, clustering, STS and bitext tasks on the pinned local copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from retrofit.eval import beyond
from retrofit.eval.official import OfficialDataError
from retrofit.schema import XQUAD_LANGUAGES
from tests.mirror import mirror_or_skip

EXPECTED = {  # (subset, split, rows) of one subset; (subset, split) pairs checked against mteb's statistics
    "Tatoeba (unseen)": (("fra-eng", "test", 1000), 14),
    "SIB200Classification": (("eng_Latn", "train", 701), 23 * 3),  # arb_Arab, zho_Hans: no mteb statistics
    "SIB200ClusteringS2S": (("eng_Latn", "test", 1004), 23),
    "STSBenchmarkMultilingualSTS": (("en", "test", 1379), 10),
    "KorSTS": (("default", "test", 1376), 1),
    "JSTS": (("default", "validation", 1457), 1),
}


def test_table_marks_training_languages_seen() -> None:
    tasks = beyond.BEYOND_TASKS
    assert set(tasks) == set(EXPECTED) == set(beyond.PUBLISHED_E5_SMALL_BEYOND)
    sib = tasks["SIB200Classification"].seen
    assert len(sib) == 25 and list(sib.values()).count("seen") == 12 == len(XQUAD_LANGUAGES)
    assert sib["arb_Arab"] == sib["zho_Hans"] == "seen" and sib["yor_Latn"] == "unseen"
    sts = tasks["STSBenchmarkMultilingualSTS"].seen
    assert [s for s, v in sts.items() if v == "unseen"] == ["fr", "it", "nl", "pl", "pt"]
    assert set(tasks["Tatoeba (unseen)"].seen.values()) == {"unseen"} and len(tasks["Tatoeba (unseen)"].subsets) == 14
    assert tasks["KorSTS"].seen == {"default": "unseen"}
    assert beyond.seen_subsets("KorSTS", ["ko"]) == {"default": "seen"}
    for name, published in beyond.PUBLISHED_E5_SMALL_BEYOND.items():
        assert set(published) <= set(tasks[name].subsets)
    assert set(beyond.PUBLISHED_PROTOCOL) == set(tasks)
    assert set(beyond.PUBLISHED_E5_SMALL_TATOEBA_MTEB112) == set(tasks["Tatoeba (unseen)"].subsets)


@pytest.mark.parametrize("name", list(beyond.BEYOND_TASKS))
def test_local_data_rebuilds_mteb_hub_copy(name: str) -> None:
    task = beyond.load_beyond_task(name, mirror_or_skip())
    spec = beyond.BEYOND_TASKS[name]
    assert type(task).__module__.startswith("mteb.tasks") and task.metadata.name == spec.mteb_name
    assert task.data_loaded and task.hf_subsets == list(spec.subsets)
    (subset, split, rows), n_checked = EXPECTED[name]
    data = beyond._split_data(task, subset)[split]
    assert len(data) == rows
    checked = beyond.check_beyond_stats(task)
    assert len(checked) == n_checked
    if task.metadata.type != "BitextMining":  # every figure mteb ships equals ours (bitext: official's check)
        stats = beyond.local_beyond_stats(task, subset, split)
        shipped = task.metadata.descriptive_stats[split]
        shipped = shipped.get("hf_subset_descriptive_stats", {}).get(subset, shipped)
        assert stats["num_samples"] == shipped["num_samples"] == rows
        if task.metadata.type == "STS":
            assert stats["unique_pairs"] == shipped["unique_pairs"]
            assert stats["label_statistics.avg_score"] == shipped["label_statistics"]["avg_score"]
        else:
            labels = "label_statistics" if task.metadata.type == "Classification" else "labels_statistics"
            assert {k: stats[f"{labels}.labels.{k}.count"] for k in shipped[labels]["labels"]} == {
                k: v["count"] for k, v in shipped[labels]["labels"].items()}


def test_sib200_keeps_the_published_protocol() -> None:
    task = beyond.load_beyond_task("SIB200Classification", mirror_or_skip())
    assert task.eval_splits == ["test"] and task.samples_per_label == 8 and task.n_experiments == 10
    assert task.seed == 42 and type(task.evaluator_model).__name__ == "LogisticRegression"
    assert sorted(set(task.dataset["eng_Latn"]["test"]["label"])) == list(range(7))
    clustering = beyond.load_beyond_task("SIB200ClusteringS2S", mirror_or_skip())
    assert clustering.max_document_to_embed == 1004 and clustering.n_clusters == 10


def _tampered(tmp_path: Path, dataset: str, file: str, edit: Any) -> Path:
    shutil.copytree(mirror_or_skip() / dataset, tmp_path / dataset)
    path = tmp_path / dataset / file
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[1] = edit(lines[1])
    path.chmod(0o644)
    path.write_text("\n".join(lines), encoding="utf-8")
    return tmp_path


def test_one_changed_row_is_caught(tmp_path: Path) -> None:
    root = _tampered(tmp_path / "a", "stsb_multi_mt", "data__stsb-de-test.csv", lambda row: row.replace(",3.6", ",4.9"))
    with pytest.raises(OfficialDataError, match=r"STSBenchmarkMultilingualSTS/de/test: label_statistics.avg_score"):
        beyond.load_beyond_task("STSBenchmarkMultilingualSTS", root)
    root = _tampered(tmp_path / "b", "sib200", "fra_Latn__test.tsv", lambda row: row + " extra")
    with pytest.raises(OfficialDataError, match=r"SIB200ClusteringS2S/fra_Latn/test: text_statistics.total_text_len"):
        beyond.load_beyond_task("SIB200ClusteringS2S", root)


def test_languages_without_mteb_statistics_are_held_to_the_parallel_rows(tmp_path: Path) -> None:
    def relabel(row: str) -> str:
        index_id, category, text = row.split("\t")
        return "\t".join([index_id, "sports" if category != "sports" else "health", text])

    root = _tampered(tmp_path, "sib200", "zho_Hans__train.tsv", relabel)
    with pytest.raises(OfficialDataError, match=r"zho_Hans__train.tsv: its \(index_id, category\) rows differ"):
        beyond.load_beyond_task("SIB200Classification", root)


def test_missing_file_and_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(OfficialDataError, match="jsts/datasets__jsts-v1.3__valid-v1.3.json: missing"):
        beyond.load_beyond_task("JSTS", tmp_path)
    with pytest.raises(OfficialDataError, match="unknown"):
        beyond.load_beyond_task("NoSuchTask", tmp_path)


def test_languages_cut_the_subsets_and_keep_table_order() -> None:
    assert beyond.task_subsets("SIB200Classification", ["sw", "de", "zh"]) == ("deu_Latn", "zho_Hans", "swh_Latn")
    assert beyond.task_subsets("KorSTS", ["de"]) == ()
    assert beyond.task_subsets("STSBenchmarkMultilingualSTS") == beyond.BEYOND_TASKS["STSBenchmarkMultilingualSTS"].subsets
    task = beyond.load_beyond_task("STSBenchmarkMultilingualSTS", mirror_or_skip(), ["fr", "en"])
    assert task.hf_subsets == ["en", "fr"]
    with pytest.raises(OfficialDataError, match="KorSTS: no subset in languages"):
        beyond.load_beyond_task("KorSTS", mirror_or_skip(), ["de"])


def test_symmetric_prompts_follow_the_published_protocol() -> None:
    assert beyond.SYMMETRIC_PROMPTS == {"Tatoeba": "", "STSBenchmarkMultilingualSTS": "", "JSTS": ""}

