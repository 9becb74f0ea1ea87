"""The answerability read, the best-of-n bench and the pivot bench: labels count only for the query they were given,
best-of-n keeps the best-ranked sample, and the pivot's prompts pair the right texts.

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
pivot = _load("pivot")


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


def test_valid_pivot_queries_are_named_counted_below_the_cut_and_must_be_read(tmp_path):
    rows = [{"id": "gemma_pivot-th-0", "method": "gemma_pivot", "query": "a", "reason": None, "rank": 0},
            {"id": "gemma_pivot-th-1", "method": "gemma_pivot", "query": "b", "reason": None, "rank": 7},
            {"id": "qwen_pivot-th-0", "method": "qwen_pivot", "query": "", "reason": "empty", "rank": None}]
    pv = tmp_path / "pivot.json"
    pv.write_text(json.dumps({"settings": {"roundtrip_top_k": 3}, "languages": {"th": rows}}), encoding="utf-8")
    examples = tmp_path / "examples.jsonl"
    examples.write_text("", encoding="utf-8")
    current = answerability.current_queries(examples, tmp_path / "no_best_of.json", pv)
    assert current == {("pivot:gemma_pivot", "gemma_pivot-th-0"): {"query": "a", "rank": 0},
                       ("pivot:gemma_pivot", "gemma_pivot-th-1"): {"query": "b", "rank": 7}}  # the invalid one: no
    labels = [{**_label("pivot:gemma_pivot", "gemma_pivot-th-0", "a", "yes"), "lang": "th"}]
    live, stale = answerability.tally(labels, current)
    assert not stale and answerability.unread(live, current) == ["gemma_pivot-th-1"]
    labels.append({**_label("pivot:gemma_pivot", "gemma_pivot-th-1", "b", "no"), "lang": "th"})
    live, _ = answerability.tally(labels, current)
    assert "| th | 2 | 1 | 0 | 1 | 50% |" in answerability.counts_table(live, "pivot:gemma_pivot")
    assert "| th | 1 | 1 | 0 | 0 | 100% |" in answerability.counts_table(live, "pivot:gemma_pivot", below=3)


def test_the_pivot_pairs_a_sentence_with_its_english_twin():
    from retrofit.data.passages import Passage, snippet

    text = "Erster Satz hier. Zweiter Satz dort. Dritter Satz."
    passage = Passage("xquad:a1p0:de", "de", "xquad", "xquad:a1p0", text, "xquad:a1p0")
    english = {"xquad:a1p0": "First sentence here. Second one there. Third one."}
    plan = type("Plan", (), {"passage": passage, "target": snippet(text, 240, 1)})()
    assert pivot.english_twin(plan, english, 240) == "Second one there."
    plan.target = "not a sentence of the passage"  # Thai: one unsplit "sentence", paired with the first
    assert pivot.english_twin(plan, english, 240) == "First sentence here."


def test_the_few_shot_translation_prompt_ends_where_the_model_writes():
    prompt = pivot.translation_prompt([("Who?", "Wer?"), ("Where?", "Wo?")], "de", "When did it open?")
    assert prompt == ("English: Who?\nGerman: Wer?\n\nEnglish: Where?\nGerman: Wo?\n\n"
                      "English: When did it open?\nGerman:")
    system, user = pivot.translate_messages("When did it open?", "th", "TEXT")
    assert system[0] == "system" and "Thai (th)" in user[1] and user[1].endswith("Thai text:\nTEXT")
    assert '{"query": "..."}' in pivot.bilingual_messages("EN", "hi", "HI")[1][1]


def test_question_pairs_take_training_pool_questions_with_both_languages(tmp_path):
    q = tmp_path / "xquad" / "questions.jsonl"
    q.parent.mkdir()
    rows = [("1", "en", "Who?", "train"), ("1", "de", "Wer?", "train"), ("2", "en", "Why?", "train"),
            ("3", "en", "Held?", "test"), ("3", "de", "Gehalten?", "test")]
    q.write_text("".join(json.dumps({"id": i, "lang": la, "paragraph_id": "a0p1", "text": t, "split": s}) + "\n"
                         for i, la, t, s in rows), encoding="utf-8")
    assert pivot.question_pairs(tmp_path, "de") == [("Who?", "Wer?", "xquad:a0p1")]
