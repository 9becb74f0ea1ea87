"""The oracle twins: same language and count, the same XQuAD passage where there is one, no test article."""

from __future__ import annotations

from retrofit.data.oracle import human_rows, oracle_rows
from retrofit.schema import HUMAN, ORACLE


def _paragraphs() -> list[dict]:
    return [{"id": f"a{a}p{p}", "lang": lang, "text": f"Sentence one of a{a}p{p}. The answer of a{a}p{p} is here.",
             "split": "test" if a == 9 else "train"} for lang in ("de", "zh") for a in (0, 1, 9) for p in (0, 1)]


def _questions() -> list[dict]:
    out = []
    for par in _paragraphs():
        for k in range(2):
            out.append({"id": f"q-{par['id']}-{k}", "lang": par["lang"], "paragraph_id": par["id"],
                        "text": f"{par['lang']} question {k} on {par['id']}?", "answer_start": par["text"].index("The"),
                        "split": par["split"]})
    return out


def _synthetic() -> list[dict]:
    rows = [{"id": f"syn-de-{i:06d}", "lang": "de", "task_type": t, "source_id": sid, "query": "q", "positive": "p"}
            for i, (t, sid) in enumerate([("short_query", "xquad:a0p0"), ("title", "xquad:a0p0"),
                                          ("paraphrase", "ntrex:n1"), ("short_query", "ntrex:n2")])]
    return rows + [{"id": "syn-zh-000000", "lang": "zh", "task_type": "short_query", "source_id": "xquad:a1p1",
                    "query": "q", "positive": "p"}]


def test_twins_keep_language_count_and_passage():
    syn = _synthetic()
    rows = oracle_rows(syn, _paragraphs(), _questions(), seed=0)
    assert [r["provenance"]["oracle_of"] for r in rows] == [r["id"] for r in syn]
    assert [r["lang"] for r in rows] == [r["lang"] for r in syn]
    assert all(r["source"] == ORACLE and r["task_type"] == "short_query" for r in rows)
    assert rows[0]["source_id"] == rows[1]["source_id"] == "xquad:a0p0"  # the twins' own XQuAD paragraph
    assert rows[0]["query"] != rows[1]["query"]  # two twins on one paragraph ask different questions
    assert rows[4]["source_id"] == "xquad:a1p1" and rows[4]["query"].startswith("zh question")
    stand_ins = {rows[2]["source_id"], rows[3]["source_id"]}  # NTREX passages: unused training paragraphs
    assert len(stand_ins) == 2 and "xquad:a0p0" not in stand_ins
    assert not any(r["source_id"].startswith("xquad:a9") for r in rows)  # never a held-out test article
    for r in rows:
        assert r["provenance"]["evidence"] == f"The answer of {r['source_id'][6:]} is here."
        assert r["provenance"]["evidence"] in r["positive"]
    assert rows == oracle_rows(syn, _paragraphs(), _questions(), seed=0)


def test_rows_beyond_the_available_questions_get_no_twin(caplog):
    from retrofit.data.sampling import rank_key

    syn = [{"id": f"syn-de-{i}", "lang": "de", "task_type": "title", "source_id": f"ntrex:{i}"} for i in range(9)]
    rows = oracle_rows(syn, _paragraphs(), _questions(), seed=0)
    assert len(rows) == 4  # de has four training paragraphs, each standing in once
    first = sorted(syn, key=lambda r: rank_key(0, r["id"]))[:4]  # the twins go to the first rows a mixture takes
    assert {r["provenance"]["oracle_of"] for r in rows} == {r["id"] for r in first}
    assert "de has questions for 4 of its 9 rows" in caplog.text


def test_human_rows_are_every_training_pool_question_of_the_languages_asked():
    rows = human_rows(_paragraphs(), _questions(), ["de"])
    train_de = [q for q in _questions() if q["lang"] == "de" and q["split"] == "train"]
    assert [r["provenance"]["question_id"] for r in rows] == sorted(q["id"] for q in train_de)  # no test article
    text = {p["id"]: p["text"] for p in _paragraphs() if p["lang"] == "de"}
    for r in rows:
        assert r["source"] == HUMAN and r["lang"] == "de" and r["task_type"] == "short_query"
        assert r["id"] == f"human-de-{r['provenance']['question_id']}"
        pid = r["source_id"].removeprefix("xquad:")
        assert r["positive"] == text[pid] and r["provenance"]["evidence"] == f"The answer of {pid} is here."
    assert human_rows(_paragraphs(), _questions(), []) == []
