"""Cross-lingual twins: a non-English query with the English version of its passage, only where that is meaningful."""

from __future__ import annotations

import json
from pathlib import Path

from retrofit.data.cross_lingual import cross_rows, english_passages
from retrofit.schema import CROSS


def _row(rid: str, lang: str, task_type: str = "short_query", source_id: str | None = "xquad:a01p0") -> dict:
    return {"id": rid, "source": "synthetic", "lang": lang, "task_type": task_type, "query": f"q {rid}",
            "positive": f"passage in {lang}", "negative": None, "source_id": source_id, "provenance": {}}


def test_a_twin_has_the_query_and_the_english_passage():
    english = {"xquad:a01p0": "The English paragraph."}
    [twin] = cross_rows([_row("syn-de-1", "de")], english)
    assert twin == {"id": "cross-syn-de-1", "source": CROSS, "lang": "de", "task_type": "short_query",
                    "query": "q syn-de-1", "positive": "The English paragraph.", "negative": None,
                    "source_id": "xquad:a01p0", "provenance": {"cross_of": "syn-de-1"}}


def test_no_twin_for_english_paraphrases_or_passages_without_an_english_version():
    english = {"xquad:a01p0": "The English paragraph."}
    rows = [_row("syn-en-1", "en"), _row("syn-de-2", "de", task_type="paraphrase"),
            _row("syn-de-3", "de", source_id="wiki:Berlin"), _row("syn-de-4", "de", source_id=None),
            _row("syn-zh-5", "zh", task_type="title")]
    assert [t["id"] for t in cross_rows(rows, english)] == ["cross-syn-zh-5"]


def test_english_passages_are_keyed_by_the_generators_source_ids(tmp_path: Path):
    (tmp_path / "xquad").mkdir()
    (tmp_path / "ntrex").mkdir()
    paragraphs = [
        {"id": "a01p0", "lang": "en", "article": 1, "title": "T", "text": "Train paragraph.", "split": "train"},
        {"id": "a02p0", "lang": "en", "article": 2, "title": "T", "text": "Held-out paragraph.", "split": "test"},
        {"id": "a01p0", "lang": "de", "article": 1, "title": "T", "text": "Absatz.", "split": "train"},
    ]
    passages = [{"id": "ntrex-d001-p00", "lang": "en", "doc_id": "ntrex-d001", "headline": "H", "text": "News."}]
    (tmp_path / "xquad" / "paragraphs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in paragraphs))
    (tmp_path / "ntrex" / "passages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in passages))
    # held-out articles never enter; ids are the pool's (retrofit.generate.pools.load_passages)
    assert english_passages(tmp_path) == {"xquad:a01p0": "Train paragraph.", "ntrex:ntrex-d001-p00": "News."}
