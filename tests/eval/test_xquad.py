"""Tests for retrofit.eval.xquad: task construction, prompts, the embedding cache and mteb scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from mteb.abstasks import AbsTaskRetrieval
from mteb.models import ModelMeta
from mteb.types import PromptType

from retrofit.errors import AssetError
from retrofit.eval.encoder import PromptCachedEncoder, load_encoder, resolve_prompts
from retrofit.eval.score import (
    evaluate_encoder,
    evaluate_model,
    render_table,
    summarize,
)
from retrofit.eval.xquad import build_tasks, select_question_ids
from retrofit.schema import EVAL_FAMILIES

torch.set_num_threads(1)

LANGS = ["de", "en", "es"]
_WORDS = {
    "de": ["Fluss", "Stadt", "Buch", "Musik", "Wald", "Berg"],
    "en": ["river", "city", "book", "music", "forest", "mountain"],
    "es": ["río", "ciudad", "libro", "música", "bosque", "montaña"],
}


def xquad_like(langs: list[str] = LANGS) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A parallel XQuAD-shaped pair of tables: 3 articles (0 is train, 1-2 test), 3 paragraphs, 2 questions each."""
    paragraphs, questions = [], []
    for lang in langs:
        for article in range(3):
            split = "train" if article == 0 else "test"
            for p in range(3):
                pid = f"a{article:02d}p{p}"
                word = _WORDS[lang][(article * 3 + p) % 6]
                paragraphs.append({
                    "id": pid, "lang": lang, "article": article, "title": f"Title_{article}",
                    "text": f"{lang} {word} paragraph {article} {p}: the {word} is near the {word}.", "split": split,
                })
                for q in range(2):
                    questions.append({
                        "id": f"{article:02d}{p}{q}" + "0" * 20, "lang": lang, "paragraph_id": pid,
                        "text": f"{lang} question {q} about the {word} {p}?", "split": split,
                    })
    return paragraphs, questions


def by_family(tasks: list[AbsTaskRetrieval]) -> dict[str, AbsTaskRetrieval]:
    return {t.family: t for t in tasks}  # type: ignore[attr-defined]


def split_of(task: AbsTaskRetrieval, subset: str) -> dict[str, Any]:
    task.load_data()
    return task.dataset[subset]["test"]


# ---------------------------------------------------------------------------------------------------------------
# Task construction
# ---------------------------------------------------------------------------------------------------------------


def test_family_subsets_and_metadata() -> None:
    paragraphs, questions = xquad_like()
    tasks = by_family(build_tasks(paragraphs, questions, LANGS, list(EVAL_FAMILIES), None, seed=0))
    assert set(tasks) == {"mono", "cross", "pooled"}
    assert tasks["mono"].hf_subsets == ["de", "en", "es"]
    assert sorted(tasks["cross"].hf_subsets) == ["de-en", "en-de", "en-es", "es-en"]
    assert tasks["pooled"].hf_subsets == ["de", "en", "es"]
    for task in tasks.values():
        assert isinstance(task, AbsTaskRetrieval)
        assert task.metadata.type == "Retrieval"
        assert task.metadata.main_score == "ndcg_at_10"
        assert task.metadata.is_multilingual
        assert task.metadata.is_filled()
        task.metadata._validate_metadata()  # mteb's own language-code check
    assert tasks["cross"].metadata.eval_langs["de-en"] == ["deu-Latn", "eng-Latn"]
    assert tasks["mono"].metadata.name != tasks["pooled"].metadata.name


def test_mono_and_cross_data() -> None:
    paragraphs, questions = xquad_like()
    tasks = by_family(build_tasks(paragraphs, questions, LANGS, ["mono", "cross"], None, seed=0))
    mono = split_of(tasks["mono"], "de")
    # queries: held-out rows only (2 articles x 3 paragraphs x 2); corpus: every paragraph, train-pool ones too
    assert len(mono["corpus"]) == 9 and len(mono["queries"]) == 12
    assert all(i.startswith("de:") for i in mono["corpus"]["id"])
    assert all(len(docs) == 1 for docs in mono["relevant_docs"].values())
    assert "de:a00p0" in mono["corpus"]["id"]  # article 0 (train pool) is a distractor
    assert not any(q.split(":")[-1].startswith("00") for q in mono["queries"]["id"])  # but never a query
    assert not any(d.startswith("de:a00") for docs in mono["relevant_docs"].values() for d in docs)
    held_out = by_family(build_tasks(paragraphs, questions, LANGS, ["mono"], None, seed=0, corpus="test"))["mono"]
    assert sorted(split_of(held_out, "de")["corpus"]["id"]) == [f"de:a0{a}p{p}" for a in (1, 2) for p in range(3)]

    de_en = split_of(tasks["cross"], "de-en")
    assert all(i.startswith("en:") for i in de_en["corpus"]["id"])
    assert all(i.startswith("de:") for i in de_en["queries"]["id"])
    qid = de_en["queries"]["id"][0]
    [(doc, rel)] = de_en["relevant_docs"][qid].items()
    assert doc.startswith("en:") and rel == 1
    en_de = split_of(tasks["cross"], "en-de")
    assert all(i.startswith("de:") for i in en_de["corpus"]["id"])
    assert all(i.startswith("en:") for i in en_de["queries"]["id"])


def test_distractors_keep_a_nested_sample_of_the_training_pool_in_every_language() -> None:
    paragraphs, questions = xquad_like()
    held = [f"a0{a}p{p}" for a in (1, 2) for p in range(3)]

    def corpus_ids(count: int | None, lang: str = "de", seed: int = 0) -> list[str]:
        tasks = by_family(build_tasks(paragraphs, questions, LANGS, ["mono", "cross"], None, seed=seed,
                                      distractors=count))
        mono = [i.split(":")[1] for i in split_of(tasks["mono"], lang)["corpus"]["id"]]
        # a cross subset's corpus is its corpus language's mono corpus
        assert mono == [i.split(":")[1] for i in split_of(tasks["cross"], f"en-{lang}" if lang != "en" else "de-en")[
            "corpus"]["id"]]
        return mono

    assert corpus_ids(None) == corpus_ids(3) == sorted(held + ["a00p0", "a00p1", "a00p2"])
    assert corpus_ids(0) == held  # the held-out paragraphs always stay
    one, two = set(corpus_ids(1)) - set(held), set(corpus_ids(2)) - set(held)
    assert len(one) == 1 and len(two) == 2 and one < two  # nested
    assert all(set(corpus_ids(2, lang)) - set(held) == two for lang in LANGS)  # the same paragraphs everywhere
    assert {frozenset(set(corpus_ids(1, seed=s)) - set(held)) for s in range(8)} != {frozenset(one)}  # seeded
    with pytest.raises(ValueError, match="distractors"):
        build_tasks(paragraphs, questions, LANGS, ["mono"], None, seed=0, distractors=-1)


def test_pooled_qrels_have_one_relevant_doc_per_language() -> None:
    paragraphs, questions = xquad_like()
    [pooled] = build_tasks(paragraphs, questions, LANGS, ["pooled"], None, seed=0)
    for lang in LANGS:
        data = split_of(pooled, lang)
        assert len(data["corpus"]) == 6 * len(LANGS)
        assert all(q.startswith(f"{lang}:") for q in data["queries"]["id"])
        corpus_ids = set(data["corpus"]["id"])
        for docs in data["relevant_docs"].values():
            assert sorted(d.split(":")[0] for d in docs) == sorted(LANGS)
            assert len({d.split(":", 1)[1] for d in docs}) == 1  # the same paragraph in every language
            assert set(docs) <= corpus_ids


def test_query_subsampling_is_deterministic_and_parallel() -> None:
    paragraphs, questions = xquad_like()
    a = by_family(build_tasks(paragraphs, questions, LANGS, ["mono"], 5, seed=3))["mono"]
    b = by_family(build_tasks(paragraphs, questions, LANGS, ["mono"], 5, seed=3))["mono"]
    ids = {lang: [q.split(":")[-1] for q in split_of(a, lang)["queries"]["id"]] for lang in LANGS}
    assert all(len(v) == 5 for v in ids.values())
    assert ids["de"] == ids["en"] == ids["es"]  # the same questions in every language
    assert ids["de"] == [q.split(":")[-1] for q in split_of(b, "de")["queries"]["id"]]
    assert a.metadata.dataset["revision"] == b.metadata.dataset["revision"]
    # the corpus is not subsampled
    assert len(split_of(a, "de")["corpus"]) == 9

    pool = [f"q{i:03d}" for i in range(100)]
    assert select_question_ids(pool, 10, seed=1) == select_question_ids(list(reversed(pool)), 10, seed=1)
    assert select_question_ids(pool, 10, seed=1) != select_question_ids(pool, 10, seed=2)
    assert select_question_ids(pool, None, seed=1) == pool
    assert select_question_ids(pool, 1000, seed=1) == pool


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"families": ["mono", "bogus"]}, "families"),
        ({"langs": ["de", "xx"]}, "unsupported"),
        ({"langs": ["de", "es"], "families": ["cross"]}, "'en'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    paragraphs, questions = xquad_like()
    args: dict[str, Any] = {"langs": LANGS, "families": ["mono"], "max_queries_per_lang": None, "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_tasks(paragraphs, questions, **args)


def test_non_parallel_data_is_rejected() -> None:
    paragraphs, questions = xquad_like()
    questions = [q for q in questions if not (q["lang"] == "es" and q["id"].startswith("011"))]
    with pytest.raises(ValueError, match="not parallel.*'es'"):
        build_tasks(paragraphs, questions, LANGS, ["mono"], None, seed=0)
    paragraphs, questions = xquad_like()
    del paragraphs[4]["text"]
    with pytest.raises(ValueError, match=r"paragraphs row 4 .*missing key"):
        build_tasks(paragraphs, questions, LANGS, ["mono"], None, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Prompts and the embedding cache
# ---------------------------------------------------------------------------------------------------------------


def test_resolve_prompts_sees_past_the_empty_document_prompt() -> None:
    # sentence-transformers 6 loads {"query", "passage"} configs as {"query", "document": "", "passage"}
    assert resolve_prompts({"query": "query: ", "document": "", "passage": "passage: "}) == ("query: ", "passage: ")
    assert resolve_prompts({"query": "q: ", "document": "d: "}) == ("q: ", "d: ")
    assert resolve_prompts({}) == ("", "")
    assert resolve_prompts(None) == ("", "")


def test_encoder_applies_prompts_and_encodes_each_text_once(tiny_model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = load_encoder(tiny_model_dir, "tiny", batch_size=4)
    model: SentenceTransformer = encoder.model
    assert "document" in model.prompts  # the sentence-transformers 6 default this module must see past
    assert (encoder.query_prompt, encoder.passage_prompt) == ("query: ", "passage: ")
    texts = ["the river flows through the city", "a book about music", "the quick brown fox"]

    passages = encoder.encode_texts(texts, PromptType.document)
    queries = encoder.encode_texts(texts, PromptType.query)
    np.testing.assert_allclose(passages, model.encode(texts, prompt="passage: "), atol=1e-5)
    np.testing.assert_allclose(queries, model.encode(texts, prompt="query: "), atol=1e-5)
    assert not np.allclose(passages, model.encode(texts, prompt=""), atol=1e-3)
    assert not np.allclose(passages, queries, atol=1e-3)
    assert encoder.n_encoded == 6

    again = encoder.encode_texts(list(reversed(texts)) + texts[:1], PromptType.document)
    np.testing.assert_array_equal(again, passages[[2, 1, 0, 0]])
    assert encoder.n_encoded == 6  # all cache hits


def test_symmetric_tasks_take_their_published_protocol(tiny_model_dir: Path) -> None:
    encoder = load_encoder(tiny_model_dir, "tiny", batch_size=4, symmetric_prompts={"Tatoeba": ""})
    texts = ["the river flows through the city", "a book about music"]
    bare = encoder.encode_texts(texts, None, "Tatoeba")  # mteb >= 1.18: no prefix on bitext sentences
    np.testing.assert_allclose(bare, encoder.model.encode(texts, prompt=""), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(texts, None, "KorSTS"), encoder.encode_texts(texts, PromptType.query))
    assert encoder.prompt_for(None) == "query: " and encoder.prompt_for(PromptType.document, "Tatoeba") == "passage: "


def test_model_dir_is_checked(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="modules.json"):
        load_encoder(tmp_path, "x")


# ---------------------------------------------------------------------------------------------------------------
# Scoring through mteb
# ---------------------------------------------------------------------------------------------------------------


class FakeModel:
    """A sentence-transformers stand-in with fixed, hand-chosen embeddings; records the prompts it gets."""

    prompts = {"query": "query: ", "document": "", "passage": "passage: "}

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.calls: list[tuple[str, str]] = []

    def encode(self, inputs: list[str], *, prompt: str, batch_size: int, show_progress_bar: bool) -> np.ndarray:
        self.calls += [(prompt, text) for text in inputs]
        return np.array([self.vectors[prompt + text] for text in inputs], dtype=np.float32)


def test_known_scores_through_mteb(tmp_path: Path) -> None:
    paragraphs = [
        {"id": f"a00p{i}", "lang": "en", "article": 0, "title": "T", "text": f"paragraph {i}", "split": "test"}
        for i in range(3)
    ]
    questions = [
        {"id": "q1", "lang": "en", "paragraph_id": "a00p0", "text": "first question", "split": "test"},
        {"id": "q2", "lang": "en", "paragraph_id": "a00p1", "text": "second question", "split": "test"},
    ]
    model = FakeModel({
        "passage: paragraph 0": [1.0, 0.0, 0.0],
        "passage: paragraph 1": [0.0, 1.0, 0.0],
        "passage: paragraph 2": [0.0, 0.0, 1.0],
        "query: first question": [1.0, 0.0, 0.0],  # its paragraph (0) ranks 1st
        "query: second question": [0.0, 0.6, 0.8],  # paragraph 2 (0.8) above its paragraph 1 (0.6): rank 2
    })
    meta = ModelMeta.create_empty(overwrites={"name": "retrofit/fake", "revision": "1"})
    encoder = PromptCachedEncoder(model, meta, show_progress_bar=False)
    tasks = build_tasks(paragraphs, questions, ["en"], ["mono"], None, seed=0)

    report = evaluate_encoder(encoder, tasks, tmp_path)

    scores = report["subsets"]["mono"]["en"]
    # mteb rounds its scores to 5 decimals
    assert scores["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(3)) / 2, abs=1e-5)
    assert scores["mrr_at_10"] == pytest.approx((1 + 1 / 2) / 2, abs=1e-5)
    assert scores["recall_at_10"] == pytest.approx(1.0, abs=1e-5)
    assert scores["n_queries"] == 2 and scores["n_documents"] == 3
    assert report["primary"]["ndcg_at_10"] == pytest.approx(scores["ndcg_at_10"])  # mono only was run
    # per-query values behind the bootstrap: query 1 finds its paragraph first, query 2 second
    per_query = json.loads((tmp_path / "per_query.json").read_text())
    assert sorted(per_query["ndcg_at_10"]["mono"]["en"].values()) == pytest.approx([1 / math.log2(3), 1.0])
    assert sorted(per_query["primary"].values()) == pytest.approx([1 / math.log2(3), 1.0])
    assert report["per_query_check"]["mono"] < 1e-4
    # every text went to the model exactly once, with its own prompt
    assert sorted(model.calls) == sorted([
        ("passage: ", "paragraph 0"), ("passage: ", "paragraph 1"), ("passage: ", "paragraph 2"),
        ("query: ", "first question"), ("query: ", "second question"),
    ])
    mteb_json = json.loads((tmp_path / "results" / "XQuADHeldoutMonoRetrieval.json").read_text())
    [entry] = mteb_json["scores"]["test"]
    assert entry["hf_subset"] == "en" and entry["main_score"] == pytest.approx(scores["ndcg_at_10"])


def test_summary_means_and_table() -> None:
    per_subset = {
        "mono": {"de": {"ndcg_at_10": 0.5, "recall_at_10": 0.6, "mrr_at_10": 0.4},
                 "en": {"ndcg_at_10": 0.7, "recall_at_10": 0.8, "mrr_at_10": 0.6}},
        "cross": {"de-en": {"ndcg_at_10": 0.2, "recall_at_10": 0.3, "mrr_at_10": 0.1},
                  "en-de": {"ndcg_at_10": 0.4, "recall_at_10": 0.5, "mrr_at_10": 0.3}},
    }
    metrics = summarize(per_subset, "retrofit/x")
    assert metrics["families"]["mono"]["ndcg_at_10"] == pytest.approx(0.6)
    assert metrics["families"]["cross"]["ndcg_at_10"] == pytest.approx(0.3)
    assert metrics["primary"]["ndcg_at_10"] == pytest.approx(0.45)  # mean of family means, not of subsets
    table = render_table(metrics)
    assert "| de | 50.0 | 20.0 | 40.0 | - |" in table
    assert "| en | 70.0 | - | - | - |" in table


def test_evaluate_model_writes_report(tiny_model_path: Path, tmp_path: Path) -> None:
    paragraphs, questions = xquad_like()
    tasks = build_tasks(paragraphs, questions, LANGS, list(EVAL_FAMILIES), None, seed=0)
    out = tmp_path / "eval"

    report = evaluate_model(tiny_model_path, tasks, out, model_name="tiny", batch_size=8)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "retrofit/tiny"
    assert metrics["main_score"] == "ndcg_at_10"
    assert set(metrics["families"]) == set(EVAL_FAMILIES)
    assert set(metrics["subsets"]["mono"]) == set(LANGS)
    assert set(metrics["subsets"]["cross"]) == {"de-en", "en-de", "es-en", "en-es"}
    assert set(metrics["subsets"]["pooled"]) == set(LANGS)
    for family, subsets in metrics["subsets"].items():
        for subset, values in subsets.items():
            for metric in ("ndcg_at_10", "recall_at_10", "mrr_at_10"):
                assert 0.0 <= values[metric] <= 1.0, (family, subset, metric)
    expected = np.mean([np.mean([s["ndcg_at_10"] for s in metrics["subsets"][f].values()]) for f in ("mono", "cross")])
    assert metrics["primary"]["ndcg_at_10"] == pytest.approx(expected)  # pooled stays out of the primary metric
    per_query = json.loads((out / "per_query.json").read_text())
    # mteb rounds each subset's score to 5 decimals; the per-question values are unrounded
    assert np.mean(list(per_query["primary"].values())) == pytest.approx(expected, abs=1e-5)
    for family, subsets in per_query["ndcg_at_10"].items():
        for subset, values in subsets.items():
            assert np.mean(list(values.values())) == pytest.approx(
                metrics["subsets"][family][subset]["ndcg_at_10"], abs=1e-4)
    assert {k: v for k, v in report.items() if k != "timing"} == metrics

    table = (out / "table.md").read_text()
    assert table.count("| lang | mono | X→en | en→X | pooled |") == 3
    assert "| en | " in table and "| **mean** | " in table
    for name in ("XQuADHeldoutMonoRetrieval", "XQuADHeldoutCrossRetrieval", "XQuADHeldoutPooledRetrieval"):
        assert (out / "results" / f"{name}.json").is_file()
    assert list((out / "mteb_cache").rglob("XQuADHeldoutMonoRetrieval.json"))

    timing = json.loads((out / "timing.json").read_text())
    # 3 languages x (9 passages, train pool included + 12 questions), each embedded once though mteb asks repeatedly
    assert timing["texts_encoded"] == 3 * (9 + 12)
    assert timing["texts_requested_by_mteb"] > timing["texts_encoded"]


def _mteb_scores(out: Path) -> dict[str, Any]:
    """Every score mteb wrote (continuous nAUC values included), by task and subset."""
    scores = {}
    for path in sorted((out / "results").glob("*.json")):
        for entry in json.loads(path.read_text())["scores"]["test"]:
            scores[(path.stem, entry["hf_subset"])] = {
                k: v for k, v in entry.items() if isinstance(v, float)
            }
    return scores


def test_no_stale_scores_across_models(tiny_model_path: Path, tmp_path: Path) -> None:
    """A second model evaluated into the same directory under the same name gets its own scores."""
    other = build_tiny_model(tmp_path / "other_model", seed=1)
    paragraphs, questions = xquad_like()
    tasks = build_tasks(paragraphs, questions, LANGS, ["mono", "pooled"], None, seed=0)
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"

    evaluate_model(tiny_model_path, tasks, shared, model_name="candidate")
    first = _mteb_scores(shared)
    evaluate_model(other, tasks, shared, model_name="candidate")
    second = _mteb_scores(shared)
    evaluate_model(other, tasks, fresh, model_name="candidate")

    assert first != second
    assert second == _mteb_scores(fresh)
    # the shared mteb cache files each model's results under its own weights hash
    revisions = {p.parent.name for p in (shared / "mteb_cache").rglob("XQuADHeldoutMonoRetrieval.json")}
    assert len(revisions) == 2


def test_every_model_is_evaluated_at_the_param_length(tiny_model_path: Path, tmp_path: Path) -> None:
    """A model saved at 16 tokens (as train saves its training length) is scored at evaluate.max_seq_length."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu", local_files_only=True)
    model.max_seq_length = 16
    model.save(str(tmp_path / "short"))
    assert SentenceTransformer(str(tmp_path / "short"), local_files_only=True).max_seq_length == 16
    paragraphs, questions = xquad_like()
    for i, p in enumerate(paragraphs):  # long passages, the answer's words only at the end (distinct starts: no ties)
        p["text"] = f"{i} " + " ".join(["filler"] * 60) + " " + p["text"]
    tasks = build_tasks(paragraphs, questions, LANGS, ["mono"], None, seed=0)
    at_param = evaluate_model(tmp_path / "short", tasks, tmp_path / "a", model_name="a", max_seq_length=96)
    as_saved = evaluate_model(tmp_path / "short", tasks, tmp_path / "b", model_name="b")
    assert at_param["max_seq_length"] == 96 and as_saved["max_seq_length"] == 16
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["max_seq_length"] == 96
    # cut at 16 tokens every passage is the same filler, so the length changes the scores; by how much depends on
    # the random tiny model (its WordPiece vocabulary differs between processes: 0.0001 to 0.04 measured), so the
    # test asks for a difference, not a size
    assert at_param["primary"]["ndcg_at_10"] != as_saved["primary"]["ndcg_at_10"]


def test_a_length_beyond_the_position_embeddings_is_a_params_error(tiny_model_dir: Path) -> None:
    from retrofit.config import ParamsError

    with pytest.raises(ParamsError, match=r"evaluate.max_seq_length 4096 exceeds .*\(128 tokens"):
        load_encoder(tiny_model_dir, "x", max_seq_length=4096)


def test_per_query_ndcg_matches_pytrec_eval_including_ties() -> None:
    """Tied documents rank as trec_eval ranks them (by document id, descending), so per-query values match."""
    from types import SimpleNamespace

    import pytrec_eval
    import torch
    from datasets import Dataset
    from sentence_transformers.util import cos_sim

    from retrofit.eval.score import per_query_scores

    docs = {"d1": [1.0, 0.0], "d2": [1.0, 0.0], "d3": [0.0, 1.0], "d0": [0.6, 0.8]}  # d1 and d2 tie exactly
    queries = {"q1": [1.0, 0.0], "q2": [0.0, 1.0], "q3": [0.7, 0.7]}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d1": 1, "d3": 1}}
    vectors = {**{f"doc {k}": v for k, v in docs.items()}, **{f"ask {k}": v for k, v in queries.items()}}
    encoder = SimpleNamespace(
        encode_texts=lambda texts, _kind: np.array([vectors[t] for t in texts], dtype=np.float32),
        similarity=lambda a, b: cos_sim(torch.as_tensor(a), torch.as_tensor(b)),
    )
    split = {"corpus": Dataset.from_dict({"id": list(docs), "text": [f"doc {k}" for k in docs]}),
             "queries": Dataset.from_dict({"id": list(queries), "text": [f"ask {k}" for k in queries]}),
             "relevant_docs": qrels}
    task = SimpleNamespace(eval_splits=["test"], hf_subsets=["x"], metadata=SimpleNamespace(type="Retrieval"),
                           dataset={"x": {"test": split}})
    ours = per_query_scores(task, encoder)["x"]
    run = {q: {d: float(np.dot(v, w) / np.linalg.norm(v) / np.linalg.norm(w)) for d, w in docs.items()}
           for q, v in queries.items()}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    assert ours == pytest.approx({q: theirs[q]["ndcg_cut_10"] for q in queries})
    assert ours["q1"] == pytest.approx(1 / math.log2(3))  # d2 outranks its tie d1 (descending id)
