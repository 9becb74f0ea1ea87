"""The answerability read and the best-of-n bench: labels count only for the query they were given, and best-of-n
keeps the best-ranked sample.

``reports/bench/answerability.md`` backs a Done-when verdict of issue 13, so the tally's rules are tested here; the
generation, validation and round trip that ``bench/best_of.py`` drives are the stage's own (``tests/generate``).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from retrofit.generate.base import GenRequest
from tests.paper import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


answerability = _load("answerability")
best_of = _load("best_of")


def _label(set_: str, id_: str, query: str, label: str = "yes") -> dict:
    return {"set": set_, "lang": "de", "id": id_, "query_sha256": answerability.query_hash(query), "label": label,
            "gloss": "g"}


def test_a_label_counts_only_while_its_row_holds_the_labelled_query():
    current = {("stage", "syn-de-000001"): {"query": "Wer?", "rank": 0},
               ("stage", "syn-de-000002"): {"query": "Was jetzt?", "rank": 1}}
    labels = [_label("stage", "syn-de-000001", "Wer?"),
              _label("stage", "syn-de-000002", "Was vorher?"),  # the row now holds another query
              _label("best_of", "plan-de-7", "Wo?")]  # the row is gone
    live, stale = answerability.tally(labels, current)
    assert [(lab["id"], lab["rank"]) for lab in live] == [("syn-de-000001", 0)]
    assert [lab["id"] for lab in stale] == ["syn-de-000002", "plan-de-7"]


def test_an_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="maybe"):
        answerability.tally([_label("stage", "x", "q", "maybe")], {("stage", "x"): {"query": "q", "rank": 0}})


def test_current_queries_names_only_what_best_of_n_adds(tmp_path):
    examples = tmp_path / "examples.jsonl"
    row = {"id": "syn-de-000001", "lang": "de", "task_type": "short_query", "query": "Wer?", "positive": "P",
           "evidence": "P", "negative": None, "source": "xquad", "source_id": "xquad:a", "generator": {},
           "roundtrip_rank": 2}
    examples.write_text(json.dumps(row) + "\n", encoding="utf-8")
    rows = [
        {"index": 0, "greedy": {"rank": 5, "query": "g0"}, "best": {"sample": 2, "rank": 1, "query": "b0"}},  # added
        {"index": 1, "greedy": {"rank": 0, "query": "g1"}, "best": {"sample": 0, "rank": 0, "query": "g1"}},  # greedy
        {"index": 2, "greedy": None, "best": {"sample": 1, "rank": 4, "query": "b2"}},  # fails the cut
    ]
    bo = tmp_path / "best_of.json"
    bo.write_text(json.dumps({"settings": {"roundtrip_top_k": 3}, "languages": {"de": {"rows": rows}}}),
                  encoding="utf-8")
    current = answerability.current_queries(examples, bo)
    assert current == {("stage", "syn-de-000001"): {"query": "Wer?", "rank": 2},
                       ("best_of", "plan-de-0"): {"query": "b0", "rank": 1}}


def test_pick_best_takes_the_lowest_rank_and_the_earliest_sample_on_a_tie():
    assert best_of.pick_best({}) is None
    assert best_of.pick_best({0: (4, "greedy"), 2: (1, "late"), 1: (1, "early")}) == (1, 1, "early")
    assert best_of.pick_best({0: (0, "greedy"), 1: (0, "sample")}) == (0, 0, "greedy")


def test_samples_keep_the_greedy_request_first_and_vary_only_temperature_and_seed():
    req = GenRequest(prompt="Text: x\nQuestion:", max_tokens=48, temperature=0.0, seed=10, stop=("\n",))
    out = best_of.samples(req, 3, 0.8)
    assert out[0] is req
    assert [(r.temperature, r.seed) for r in out[1:]] == [(0.8, 11), (0.8, 12)]
    assert all(r.prompt == req.prompt and r.max_tokens == 48 for r in out)
    assert len({r.key for r in out}) == 3  # three distinct cache entries


def test_unread_names_the_first_rows_of_each_read_language_and_every_best_of_addition():
    current = {("stage", f"syn-de-{i:06d}"): {"query": f"q{i}", "rank": 0} for i in (3, 1, 2)}
    current[("stage", "syn-zh-000001")] = {"query": "z", "rank": 0}  # a language nobody read: not asked for
    current[("best_of", "plan-de-4")] = {"query": "b", "rank": 1}
    live, _ = answerability.tally([_label("stage", "syn-de-000001", "q1")], current)
    assert answerability.unread(live, current, first=2) == ["plan-de-4", "syn-de-000002"]
