"""Tests for retrofit.data.heldout: every text of every evaluation task, and that none of them enters training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import params_group

from retrofit.data import xquad
from retrofit.data.english import build_pairs
from retrofit.data.heldout import HELDOUT_ROW, eval_texts, heldout_rows, prepare_heldout
from retrofit.data.sources import DataError
from retrofit.filter.dedupe import dedupe
from retrofit.filter.text import normalize
from retrofit.io import read_jsonl
from retrofit.schema import XQUAD_LANGUAGES
from tests.mirror import mirror_or_skip

#: Texts per evaluation in the mirror's files (empty lines aside), and held-out XQuAD's 12 test articles.
EXPECTED = {"Tatoeba": 47876, "STSBenchmarkMultilingualSTS": 30338, "SIB200": 25100, "xquad_heldout": 4896,
            "JSTS": 2914, "BelebeleRetrieval": 2776, "KorSTS": 2755, "LegalBenchCorporateLobbying": 980}


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    mirror = mirror_or_skip()
    out = tmp_path_factory.mktemp("prepared")
    xquad.prepare_xquad(mirror / "xquad", out / "xquad", list(XQUAD_LANGUAGES), 12, 0)
    counts = prepare_heldout(mirror, out / "xquad", out / "heldout.jsonl")
    rows = read_jsonl(out / "heldout.jsonl", HELDOUT_ROW)
    assert counts == dict(sorted(Counter(r["eval"] for r in rows).items()))
    return rows


def test_every_evaluation_is_in_the_set(heldout: list[dict[str, Any]]) -> None:
    assert dict(Counter(r["eval"] for r in heldout)) == EXPECTED
    assert len({r["id"] for r in heldout}) == len(heldout)  # unique ids: ContaminationIndex needs them
    texts = {r["text"] for r in heldout}
    # both sides of a pair task, and each language a task covers
    assert "La mutation ajoute une nouvelle variation génétique, et la sélection l'enlève de la réserve des " \
           "variations exprimées." in texts  # SIB-200, French (outside training)
    assert any(r["id"].startswith("tatoeba-kor-eng-") and r["id"].endswith("-kor") for r in heldout)
    assert any(r["id"].startswith("stsb-pl-test-") for r in heldout)
    assert not any(r["id"].startswith("stsb-en-train-") for r in heldout)  # English train is training data


def test_no_text_of_any_evaluation_enters_training(heldout: list[dict[str, Any]]) -> None:
    # one text of each evaluation, planted as a query, a positive or a negative of otherwise clean rows
    firsts = {}
    for r in heldout:
        firsts.setdefault(r["eval"], r["text"])
    rows = []
    for k, (name, text) in enumerate(sorted(firsts.items())):
        field = ("query", "positive", "negative")[k % 3]
        row = {"id": f"planted-{name}", "source": "qed_nq", "task_type": "qa", "lang": "en",
               "query": f"an unrelated question number {k} about nothing in particular",
               "positive": f"An unrelated passage number {k}, written for this test and for nothing else.",
               "negative": None}
        row[field] = text
        rows.append(row)
    rows.append({"id": "clean", "source": "qed_nq", "task_type": "qa", "lang": "en",
                 "query": "which river runs through the made-up town of Zorblefield",
                 "positive": "The Glimmer river runs through Zorblefield, a town invented for this test.",
                 "negative": None})
    result = dedupe(rows, eval_texts(heldout), params_group("dedupe"))
    assert [r["id"] for r in result.rows] == ["clean"]
    assert result.report["dropped"]["overall"]["decontam"] == len(firsts)
    assert sum(result.report["decontam"]["by_eval"].values()) == len(firsts)


def test_stsb_english_train_is_clean_of_every_evaluation(heldout: list[dict[str, Any]]) -> None:
    # the English STS-B rows that are training data share no text with the test splits (STS-B reuses sentences)
    rows, _ = build_pairs(mirror_or_skip(), "stsb_multi_mt")
    assert {r["lang"] for r in rows} == {"en"} and all("-train-" in r["id"] for r in rows)
    result = dedupe(rows, eval_texts(heldout), params_group("dedupe"))
    kept = {r["id"] for r in result.rows}
    tests = {normalize(r["text"]) for r in heldout}
    equal = {r["id"] for r in rows if normalize(r["query"]) in tests or normalize(r["positive"]) in tests}
    assert equal  # STS-B's splits share sentences: there is something to remove
    assert not equal & kept  # every row with a test sentence is gone
    assert result.report["decontam"]["by_eval"].get("stsb", 0) >= len(equal)


def test_a_missing_evaluation_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "xquad").mkdir()
    for name in ("paragraphs", "questions"):
        (tmp_path / "xquad" / f"{name}.jsonl").write_text("")
    with pytest.raises(DataError, match=r"tatoeba/tatoeba\.\*-eng\.\*: no Tatoeba file; run the fetch stage"):
        heldout_rows(tmp_path / "raw", tmp_path / "xquad")
