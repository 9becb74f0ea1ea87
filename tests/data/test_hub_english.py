"""English task data from the hub or a local copy: the pair schema, column choice, and fast failures offline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from retrofit import hub
from retrofit.config import ParamsError
from retrofit.data.hub_english import hub_english_pairs
from retrofit.errors import AssetError


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


def test_prepare_hub_english_writes_pairs_beside_the_embedded_sources(toy_jsonl: Path, tmp_path: Path):
    from retrofit.data.english import totals
    from retrofit.data.hub_english import prepare_hub_english
    from retrofit.io import read_jsonl

    out = tmp_path / "english"
    out.mkdir()
    counts = prepare_hub_english({"toy": {"dataset": str(toy_jsonl), "task_type": "duplicate"}}, out, 10, seed=1,
                                 cache_dir=tmp_path / "c")
    rows = read_jsonl(out / "toy.jsonl")
    assert [r["query"] for r in rows] and all(r["source"] == "toy" and r["lang"] == "en" for r in rows)
    assert counts["toy"] == {"candidates": 6, "dropped": {"duplicate_pair": 1, "empty_text": 1},
                             "per_lang": {"en": 4}, "task_type": "duplicate", "with_negative": 2, "written": 4}
    assert totals({**counts, "total": {}}) == {"written": 4, "per_task_type": {"duplicate": 4}}


def test_a_folder_recreated_with_other_rows_is_read_afresh(tmp_path: Path):
    """``datasets`` keys a local folder's cache by name, config and file patterns: the rows must come from the files."""
    from retrofit.data.hub_layout import write_hub_dataset

    folder, spec = tmp_path / "hub" / "natural-questions", {"dataset": "", "config": "pair", "task_type": "qa"}
    for first in (0, 100):
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        rows = [{"query": f"q{i}", "answer": f"a{i}"} for i in range(first, first + 5)]
        write_hub_dataset(folder, {"pair": {"train": rows}}, "sentence-transformers/natural-questions")
        got = hub_english_pairs({**spec, "dataset": str(folder)}, 5, name="nq", cache_dir=tmp_path / "cache")
        assert sorted(r["query"] for r in got) == [f"q{i}" for i in range(first, first + 5)]
