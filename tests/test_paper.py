"""Paper scale, offline: the profile merges and validates, MMTEB resolves to the paper's 18 tasks through mteb,
and every hub-facing path fails fast with a message that names the asset and how to provide it."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from retrofit import hub
from retrofit.config import ParamsError, load_params, validate_params
from retrofit.errors import AssetError
from retrofit.paper import (
    ANCHORS,
    apply_profile,
    evaluate_mmteb,
    hub_english_pairs,
    merge_profile_text,
    mmteb_retrieval_tasks,
    mmteb_task_stats,
    mmteb_tasks,
    shard,
    summarize_mmteb,
)

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "paper.yaml"

#: The 18 Retrieval tasks of MTEB(Multilingual) that the paper's 60.56 averages over.
PAPER_TASKS = {
    "StackOverflowQA", "TwitterHjerneRetrieval", "AILAStatutes", "ArguAna", "HagridRetrieval",
    "LegalBenchCorporateLobbying", "LEMBPasskeyRetrieval", "SCIDOCS", "SpartQA", "TempReasonL1", "TRECCOVID",
    "WinoGrande", "BelebeleRetrieval", "MLQARetrieval", "StatcanDialogueDatasetRetrieval",
    "WikipediaRetrievalMultilingual", "CovidRetrieval", "MIRACLRetrievalHardNegatives",
}


@pytest.fixture
def params_copy(tmp_path: Path) -> Path:
    """A private copy of the repository's params.yaml."""
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------------
# The profile
# ----------------------------------------------------------------------------------------------------------------


def test_paper_profile_merges_and_validates(params_copy: Path):
    out = apply_profile(PROFILE, params_copy, backup=True)
    assert out["written"]
    params = load_params(params_copy)  # what every stage will load
    assert params.model.base == "intfloat/multilingual-e5-base"
    assert params.generate.backend == "openai" and params.generate.openai.model == "gpt-4o-mini"
    assert params.generate.openai.price_per_1m_input == 0.15 and params.generate.openai.price_per_1m_output == 0.60
    assert len(params.generate.languages) == 20 and params.generate.passage_sources == ["wikipedia"]
    assert params.negatives.teacher != "base" and params.train.bf16
    assert 4000 in params.scale.per_language
    assert params_copy.with_name("params.yaml.bak").read_text() == (REPO / "params.yaml").read_text()
    # the merged file keeps the profile's comments and re-applying it changes nothing
    text = params_copy.read_text()
    assert "# 20: 12 XQuAD + 8 MIRACL" in text and "profiles/paper.yaml" in text.splitlines()[0]
    again = apply_profile(PROFILE, params_copy)
    assert again["changes"] == [] and not again["written"]


def test_profile_overlay_comments_every_value():
    """Every leaf value of the profile carries an inline comment, except those whose key says it all."""
    obvious = {"backend", "checkpoint_every", "languages", "english", "task_types", "benchmark", "batch_size"}
    lines = [ln for ln in PROFILE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    bare = [
        ln for ln in lines
        if ":" in ln and not ln.rstrip().endswith(":") and "#" not in ln
        and ln.split(":")[0].strip() not in obvious
    ]
    assert bare == []


def test_apply_existing_keys_merges_groups_and_replaces_values(params_copy: Path):
    before = yaml.safe_load(params_copy.read_text())
    overlay = _write(
        params_copy.with_name("overlay.yaml"),
        "generate:\n"
        "  per_language: 30         # a test value\n"
        "  task_types: {short_query: 1.0}   # replaced whole\n"
        "runs:\n"
        "  seed2: train.seed=44     # only run left\n"
        "evaluate:\n"
        "  official:\n"
        "    models: [base, seed2]\n"
        "plot:\n"
        "  seed_runs: [seed2]\n",
    )
    out = apply_profile(overlay, params_copy)
    after = yaml.safe_load(params_copy.read_text())
    assert after["generate"]["per_language"] == 30
    assert after["generate"]["task_types"] == {"short_query": 1.0}  # a value mapping is replaced, not merged
    assert after["runs"] == {"seed2": "train.seed=44"}
    assert after["evaluate"]["official"]["models"] == ["base", "seed2"]
    assert after["evaluate"]["official"]["tasks"] == before["evaluate"]["official"]["tasks"]
    assert after["generate"]["local"] == before["generate"]["local"]  # groups merge key by key
    assert {k: v for k, v in after.items() if k not in ("generate", "runs", "plot", "evaluate")} == {
        k: v for k, v in before.items() if k not in ("generate", "runs", "plot", "evaluate")
    }
    assert [c["key"] for c in out["changes"]] == ["generate.per_language", "generate.task_types", "runs",
                                                  "evaluate.official.models", "plot.seed_runs"]
    text = params_copy.read_text()
    assert "per_language: 30         # a test value" in text
    assert "the paper uses ~4K" not in text  # the replaced value's stale comment went with it
    assert "ngram: 5                   # character n-grams" in text  # untouched values keep theirs
    assert "\n\ndedupe:" in text and "\n\nscale:" in text and "\n\nevaluate:" in text  # blank lines between groups
    assert not params_copy.with_name("params.yaml.bak").exists()  # no backup unless asked
    validate_params(after)


def test_apply_invalid_writes_nothing(params_copy: Path):
    original = params_copy.read_bytes()
    overlay = _write(params_copy.with_name("bad.yaml"), "generate:\n  per_languag: 5\n")
    with pytest.raises(ParamsError, match=r"generate\.per_languag"):
        apply_profile(overlay, params_copy, backup=True)
    assert params_copy.read_bytes() == original
    assert not params_copy.with_name("params.yaml.bak").exists()
    negative = _write(params_copy.with_name("neg.yaml"), "train:\n  max_steps: -1\n")
    with pytest.raises(ParamsError, match=r"train\.max_steps"):
        apply_profile(negative, params_copy)
    assert params_copy.read_bytes() == original


def test_dry_run_validates_and_writes_nothing(params_copy: Path):
    original = params_copy.read_bytes()
    overlay = _write(params_copy.with_name("o.yaml"), "train:\n  max_steps: 7   # seven\n")
    out = apply_profile(overlay, params_copy, dry_run=True)
    assert not out["written"] and params_copy.read_bytes() == original
    assert out["changes"] == [{"key": "train.max_steps", "old": 20, "new": 7, "new_key": False}]
    assert "+  max_steps: 7   # seven" in out["diff"]


def test_new_key_lands_inside_its_group():
    text, merged, changes = merge_profile_text(
        "data:\n  a: 1  # one\n\nmodel:\n  base: x\n", "data:\n  b: 2  # two\n", "p.yaml"
    )
    assert merged == {"data": {"a": 1, "b": 2}, "model": {"base": "x"}}
    assert changes == [("data.b", None, 2)]
    assert "  a: 1  # one\n  b: 2  # two\n\nmodel:" in text
    assert yaml.safe_load(text) == merged


def test_apply_cli_dry_run(params_copy: Path, capsys):
    from retrofit.paper import main

    overlay = _write(params_copy.with_name("o.yaml"), "train:\n  max_steps: 9\n")
    main(["apply", str(overlay), "--params", str(params_copy), "--dry-run"])
    out = capsys.readouterr().out
    assert "train.max_steps: 20 -> 9" in out and "nothing written" in out
    with pytest.raises(SystemExit) as info:
        main(["apply", str(params_copy.with_name("missing.yaml")), "--params", str(params_copy)])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------------------------------
# MMTEB(Multilingual) retrieval, resolved through mteb offline
# ----------------------------------------------------------------------------------------------------------------


def test_mmteb_resolves_the_papers_18_tasks():
    names = mmteb_retrieval_tasks()
    assert len(names) == 18
    assert set(names) == PAPER_TASKS


def test_mmteb_stats_offline_for_every_task():
    stats = {t.metadata.name: mmteb_task_stats(t) for t in mmteb_tasks()}
    assert set(stats) == PAPER_TASKS
    for name, s in stats.items():
        assert s["documents"] > 0 and s["queries"] > 0, name
        assert s["document_chars"] > 0 and s["query_chars"] > 0, name
        assert s["dataset"].startswith("mteb/") and s["splits"], name
    assert (stats["ArguAna"]["documents"], stats["ArguAna"]["queries"]) == (8674, 1406)
    assert stats["MIRACLRetrievalHardNegatives"]["documents"] > 2_000_000  # the corpus that dominates encoding
    assert len(stats["LEMBPasskeyRetrieval"]["splits"]) == 8


def test_unknown_benchmark_or_task_names_the_problem():
    with pytest.raises(ParamsError, match="MTEB\\(Multilingual, v9\\)"):
        mmteb_tasks("MTEB(Multilingual, v9)")
    with pytest.raises(ParamsError, match="NoSuchRetrieval"):
        mmteb_tasks(names=["ArguAna", "NoSuchRetrieval"])
    assert [t.metadata.name for t in mmteb_tasks(names=["SCIDOCS", "ArguAna"])] == ["ArguAna", "SCIDOCS"]


def test_shard_covers_every_task_once_and_balances():
    names = mmteb_retrieval_tasks()
    weights = {n: 1.0 for n in names} | {"MIRACLRetrievalHardNegatives": 100.0}
    shards = [shard(names, k, 3, weights) for k in range(3)]
    assert sorted(n for s in shards for n in s) == sorted(names)
    assert ["MIRACLRetrievalHardNegatives"] in shards  # the heaviest task gets a GPU of its own
    with pytest.raises(ValueError, match="shard 3/3"):
        shard(names, 3, 3)


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


def test_anchor_table_is_the_readme_one():
    assert ANCHORS["Tu et al. (2025), ~300M retrofitted"] == 60.56
    assert ANCHORS["multilingual-e5-base"] == 52.72 and ANCHORS["gte-multilingual-base"] == 57.11


# ----------------------------------------------------------------------------------------------------------------
# Hub-facing paths fail fast offline, naming the asset and how to provide it
# ----------------------------------------------------------------------------------------------------------------


def test_evaluate_mmteb_offline_names_the_dataset(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(AssetError) as info:
        evaluate_mmteb(tiny_model_dir, tmp_path / "out", ["ArguAna"], batch_size=8, model_name="tiny")
    msg = str(info.value)
    assert "ArguAna" in msg and "mteb/arguana" in msg
    assert "HF_HOME" in msg and "HF_HUB_OFFLINE" in msg and "HF_ENDPOINT" in msg
    assert "python -m retrofit.paper prefetch --tasks ArguAna" in msg


def test_hub_english_offline_names_the_dataset(tmp_path: Path):
    spec = {"dataset": "sentence-transformers/all-nli", "config": "triplet", "task_type": "nli"}
    with pytest.raises(AssetError) as info:
        hub_english_pairs(spec, 10, name="all_nli", cache_dir=tmp_path)
    msg = str(info.value)
    assert "data.hub_english.all_nli" in msg and "sentence-transformers/all-nli" in msg and "'triplet'" in msg
    assert "HF_HOME" in msg and "local copy" in msg and "HF_ENDPOINT" in msg


def test_hub_english_unreachable_hub_fails_in_the_probe(tmp_path: Path, monkeypatch):
    """Online mode with no reachable Hub: the single metadata probe fails, no download is attempted."""

    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(AssetError, match="cannot get it from the Hugging Face Hub") as info:
        hub_english_pairs({"dataset": "sentence-transformers/fever", "task_type": "fact"}, 5, name="fever")
    assert "sentence-transformers/fever" in str(info.value)


@pytest.fixture
def toy_jsonl(tmp_path: Path) -> Path:
    rows = [
        {"anchor": "q1", "positive": "p1", "negative": "n1"},
        {"anchor": "q2", "positive": "p2", "negative": ""},
        {"anchor": " ", "positive": "p3", "negative": "n3"},
        {"anchor": "q1", "positive": "p1", "negative": "n9"},
        {"anchor": "q5", "positive": "p5", "negative": None},
        {"anchor": "q6", "positive": "p6", "negative": "n6"},
    ]
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_hub_english_local_copy_gives_the_pair_schema(toy_jsonl: Path, tmp_path: Path):
    drops: Counter[str] = Counter()
    rows = hub_english_pairs({"dataset": str(toy_jsonl), "task_type": "duplicate"}, 10, name="toy",
                             cache_dir=tmp_path / "cache", drops=drops)
    assert drops == Counter({"empty_text": 1, "duplicate_pair": 1})
    assert {r["query"] for r in rows} == {"q1", "q2", "q5", "q6"}
    for r in rows:
        assert set(r) == {"id", "source", "task_type", "lang", "query", "positive", "negative"}
        assert r["source"] == "toy" and r["task_type"] == "duplicate" and r["lang"] == "en"
        assert r["id"].startswith("toy-train-")
    assert {r["query"]: r["negative"] for r in rows}["q2"] is None  # a blank negative is null
    # a smaller limit is a prefix of a larger one, and the order is the seed's
    small = hub_english_pairs({"dataset": str(toy_jsonl), "task_type": "duplicate"}, 2, name="toy",
                              cache_dir=tmp_path / "cache")
    assert small == rows[:2]


def test_hub_english_columns_explicit_or_explained(toy_jsonl: Path, tmp_path: Path):
    spec = {"dataset": str(toy_jsonl), "task_type": "x", "query": "positive", "positive": "anchor", "negative": None}
    rows = hub_english_pairs(spec, 3, name="toy", cache_dir=tmp_path / "c")
    assert all(r["query"].startswith("p") for r in rows)
    with pytest.raises(ParamsError, match="no column 'title'.*'anchor'"):
        hub_english_pairs({**spec, "query": "title"}, 3, name="toy", cache_dir=tmp_path / "c")
    with pytest.raises(ParamsError, match="unknown key"):
        hub_english_pairs({**spec, "colum": "x"}, 3)
    with pytest.raises(AssetError, match="not a hub dataset id"):
        hub_english_pairs({"dataset": "no/such/file.jsonl", "task_type": "x"}, 3)


def test_every_hub_asset_of_the_profile_fails_fast_offline(tmp_path: Path):
    """model.base, negatives.teacher and Wikipedia, as the profile names them: each error names the asset."""
    from retrofit.generate.pools import wikipedia_passages
    from retrofit.models import materialize_base_model

    profile = yaml.safe_load(PROFILE.read_text())
    for key, spec in (("model.base", profile["model"]["base"]), ("negatives.teacher", profile["negatives"]["teacher"])):
        with pytest.raises(AssetError) as info:
            materialize_base_model(spec, tmp_path / spec.replace("/", "_"), param=key)
        assert spec in str(info.value) and key in str(info.value) and "HF_HOME" in str(info.value)
    with pytest.raises(AssetError, match="wikimedia/wikipedia"):
        wikipedia_passages(profile["generate"]["languages"][0], limit=1)


def test_wikipedia_unreachable_hub_fails_in_the_probe(monkeypatch):
    """Online mode with no route to the Hub: one metadata probe fails; no streaming read is attempted."""
    import huggingface_hub

    from retrofit.generate.pools import wikipedia_passages

    monkeypatch.setattr(hub, "offline", lambda: False)

    def unreachable(self, repo_id, **kwargs):
        assert kwargs.get("timeout") == hub.PROBE_TIMEOUT_S
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(AssetError, match=r"(?s)wikimedia/wikipedia \(20231101\.sw\).*unreachable.*generate"):
        wikipedia_passages("sw", limit=1)


def test_evaluate_mmteb_end_to_end_on_an_in_memory_task(tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    """The whole evaluate -> results -> metrics path, with a held-out-XQuAD-shaped task standing in for MMTEB's."""
    import retrofit.paper as paper
    from retrofit.evaluation import build_tasks

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
    monkeypatch.setattr(paper, "mmteb_tasks", lambda benchmark=None, task_types=None, names=None: [task])
    out = tmp_path / "mmteb"
    metrics = evaluate_mmteb(tiny_model_dir, out, [name], batch_size=4, model_name="tiny", device="cpu", bf16=False,
                             max_seq_length=64)
    assert metrics["complete"] and metrics["tasks_done"] == 1 and metrics["model"] == "retrofit/tiny"
    assert 0.0 <= metrics["headline"]["ndcg_at_10"] <= 1.0
    assert (out / "results" / f"{name}.json").is_file() and (out / "mteb_cache").is_dir()
    written = json.loads((out / "metrics.json").read_text())
    assert written["tasks"][name]["ndcg_at_10"] == metrics["headline"]["ndcg_at_10"]


def test_prepare_hub_english_writes_pairs_beside_the_embedded_sources(toy_jsonl: Path, tmp_path: Path):
    from retrofit.english import totals
    from retrofit.jsonl import read_jsonl
    from retrofit.paper import prepare_hub_english

    out = tmp_path / "english"
    out.mkdir()
    counts = prepare_hub_english({"toy": {"dataset": str(toy_jsonl), "task_type": "duplicate"}}, out, 10, seed=1,
                                 cache_dir=tmp_path / "c")
    rows = read_jsonl(out / "toy.jsonl")
    assert [r["query"] for r in rows] and all(r["source"] == "toy" and r["lang"] == "en" for r in rows)
    assert counts["toy"] == {"candidates": 6, "dropped": {"duplicate_pair": 1, "empty_text": 1},
                             "per_lang": {"en": 4}, "task_type": "duplicate", "with_negative": 2, "written": 4}
    assert totals({**counts, "total": {}}) == {"written": 4, "per_task_type": {"duplicate": 4}}


def test_evaluate_stage_mmteb_branch_fails_fast_offline(tiny_model_dir: Path, tmp_path: Path):
    """The evaluate stage with evaluate.benchmarks [mmteb], offline and uncached: exit 2, naming the dataset."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
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
