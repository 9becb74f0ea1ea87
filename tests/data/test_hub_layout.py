"""retrofit.data.hub_layout: local folders laid out like the paper profile's hub datasets, read by the hub code as is."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from retrofit.data.hub_english import hub_english_pairs
from retrofit.data.hub_layout import HUB_ENGLISH, english_rows, write_english, write_hub_dataset, write_wikipedia
from retrofit.errors import InputError
from retrofit.io import write_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """Prepared English rows of every stand-in source (retrofit.data.english's schema)."""
    folder = tmp_path / "english"
    for source in {layout.source for layout in HUB_ENGLISH.values()}:
        rows = [{"id": f"{source}-{i}", "source": source, "task_type": "qa", "lang": "en", "query": f"{source} q{i}",
                 "positive": f"{source} passage {i}", "negative": None} for i in range(90)]
        write_jsonl(folder / f"{source}.jsonl", rows)
    return folder


def test_the_paper_profile_reads_every_collection_through_the_hub_code(prepared: Path, tmp_path: Path) -> None:
    folders = write_english(tmp_path / "hub", prepared, rows=30)
    profile = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())["data"]["hub_english"]
    assert set(folders) == set(profile) == set(HUB_ENGLISH)  # every collection the profile names has a layout
    for name, spec in profile.items():
        layout = HUB_ENGLISH[name]
        assert spec["dataset"] == layout.dataset and spec.get("config") in (layout.config, None), name
        rows = hub_english_pairs({**spec, "dataset": str(folders[name])}, 10, name=name, seed=0)
        assert len(rows) == 10, name  # the profile's spec, with a folder for the hub id, finds its columns
        assert all(r["query"].startswith(layout.source) and "passage" in r["positive"] for r in rows), name
        assert all((r["negative"] is not None) == (len(layout.columns) == 3) for r in rows), name
    queries = {name: {r["query"] for r in hub_english_pairs({**spec, "dataset": str(folders[name])}, 30, name=name,
                                                            seed=0)} for name, spec in profile.items()}
    shared = [n for n in HUB_ENGLISH if HUB_ENGLISH[n].source == "qed_nq"]
    assert len(shared) == 3 and not set.intersection(*(queries[n] for n in shared))  # dedupe keeps all three


def test_splits_follow_the_card(prepared: Path) -> None:
    nli = english_rows(HUB_ENGLISH["all_nli"], prepared, 30)
    assert {s: len(r) for s, r in nli.items()} == {"train": 24, "dev": 3, "test": 3}
    assert list(nli["train"][0]) == ["anchor", "positive", "negative"]
    assert nli["train"][0]["negative"] != nli["train"][0]["positive"]
    assert list(english_rows(HUB_ENGLISH["s2orc"], prepared, 5)["train"][0]) == ["title", "abstract"]


def test_wikipedia_layout_loads_per_language_config(tmp_path: Path) -> None:
    from datasets import load_dataset

    articles = {lang: [{"id": f"{lang}{i}", "url": f"https://{lang}.wikipedia.org/wiki/A{i}", "title": f"A{i}",
                        "text": f"First paragraph {i}.\n\nSecond."} for i in range(3)] for lang in ("de", "sw")}
    folder = write_wikipedia(tmp_path / "wikimedia" / "wikipedia", articles)
    ds = load_dataset(str(folder), "20231101.sw", split="train")
    assert ds.column_names == ["id", "url", "title", "text"] and ds[0]["id"] == "sw0" and len(ds) == 3


def test_generation_reads_wikipedia_from_a_local_folder_without_the_hub(tmp_path: Path, monkeypatch) -> None:
    """``generate.wikipedia.dataset`` as a local folder: no probe, the first paragraph over 200 characters, limit."""
    from retrofit import hub
    from retrofit.config import WikipediaParams
    from retrofit.data.passages import load_passages

    monkeypatch.setattr(hub, "probe", lambda *a, **k: pytest.fail("a local folder must not probe the hub"))
    long = "A first paragraph long enough to be a passage. " * 6
    articles = {lang: [{"id": str(i), "url": f"https://{lang}.wikipedia.org/wiki/A{i}", "title": f"A{i}",
                        "text": f"Short.\n{long}{lang} {i}\nMore."} for i in range(4)] for lang in ("sw", "bn")}
    folder = write_wikipedia(tmp_path / "wiki", articles, date="20240101")
    where = WikipediaParams(dataset=str(folder), date="20240101")
    got = load_passages(tmp_path, ["wikipedia"], ["sw", "bn"], where, wikipedia_limit=3)
    assert {lang: [p.source_id for p in ps] for lang, ps in got.items()} == {
        lang: [f"wikipedia:{i}" for i in range(3)] for lang in ("sw", "bn")}
    assert got["sw"][0].text == f"{long}sw 0".strip() and got["sw"][0].id == "wikipedia:0:sw"


def test_bad_layouts_are_refused(tmp_path: Path) -> None:
    write_hub_dataset(tmp_path / "x", {"c": {"train": [{"a": "1"}]}}, "x")
    with pytest.raises(InputError, match="exists"):
        write_hub_dataset(tmp_path / "x", {"c": {"train": [{"a": "1"}]}}, "x")
    with pytest.raises(InputError, match="different columns"):
        write_hub_dataset(tmp_path / "y", {"c": {"train": [{"a": "1"}, {"b": "2"}]}}, "y")
