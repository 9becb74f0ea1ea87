"""Tests for retrofit.mine: the filters and rank windows on hand-built embeddings, mining through the embedding cache,
and the agreement of the vectorised miner with a plain reference and with sentence-transformers'
``mine_hard_negatives``. The cache and the encoder on their own: ``tests/embed``; the search kernel and the report's
statistics on their own: ``tests/test_mine_search.py`` and ``tests/test_mine_report.py``."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import torch
from conftest import params_group

from retrofit import mine_search
from retrofit.config import NegativesParams
from retrofit.embed.cache import EmbeddingCache
from retrofit.embed.encoder import SentenceTransformerEncoder
from retrofit.filter.text import normalize
from retrofit.mine import mine
from tests.embed.fakes import TableEncoder

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)

DIM = 96


class World:
    """Hand-built geometry. The probe query is e0; a passage planted at score s is s*e0 + sqrt(1 - s^2)*e_a on an
    axis a of its own, so its cosine with the probe is exactly s and with every other passage's own axis 0. A
    filler row holds a planted passage as its positive, with a query on that passage's axis."""

    def __init__(self) -> None:
        self.queries: dict[str, np.ndarray] = {}
        self.passages: dict[str, np.ndarray] = {}
        self.rows: list[dict[str, Any]] = []
        self._axis = 0

    def _vec(self, score: float) -> tuple[np.ndarray, int]:
        self._axis += 1
        assert self._axis < DIM
        v = np.zeros(DIM)
        v[0], v[self._axis] = score, math.sqrt(max(0.0, 1.0 - score * score))
        return v, self._axis

    def passage(self, text: str, score: float) -> int:
        self.passages[text], axis = self._vec(score)
        return axis

    def _row(self, query: str, positive: str, **extra: Any) -> dict[str, Any]:
        row = {
            "id": extra.pop("id", f"row-{len(self.rows)}"), "source": "synthetic", "lang": "de", "task_type": "qa",
            "query": query, "positive": positive, "negative": None, "source_id": None,
            "provenance": {"generator": "test"},
        }
        row.update(extra)
        self.rows.append(row)
        return row

    def probe(self, query: str, positive: str, positive_score: float, **extra: Any) -> dict[str, Any]:
        self.queries[query] = np.eye(DIM)[0]
        self.passage(positive, positive_score)
        return self._row(query, positive, **extra)

    def filler(self, text: str, score: float, **extra: Any) -> dict[str, Any]:
        axis = self.passage(text, score)
        query = f"filler query {len(self.rows)}"
        self.queries[query] = np.eye(DIM)[axis]
        return self._row(query, text, **extra)

    def encoder(self, fingerprint: str = "table-v1") -> TableEncoder:
        return TableEncoder(self.queries, self.passages, fingerprint)


def run(world: World, tmp_path: Path, **params: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Mine ``world`` (fresh cache) and return the output rows by id and the report."""
    rank_window = params.pop("rank_window", "search")
    params = {"range_min": 0, "range_max": 10, "scope": "all", **params}
    rows, report = mine(world.rows, world.encoder(), params_group("negatives", **params), EmbeddingCache(tmp_path / "cache"),
                        rank_window=rank_window)
    return {r["id"]: r for r in rows}, report


def texts(row: dict[str, Any]) -> list[str]:
    return [n["text"] for n in row["negatives"]]


# --- filters ----------------------------------------------------------------------------------------------------


def test_margin_filter_drops_planted_false_negative(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.90, id="probe", lang="xx")
    for text, score in [("FN", 0.95), ("near", 0.86), ("n85", 0.85), ("n80", 0.80), ("n70", 0.70), ("n60", 0.60)]:
        w.filler(text, score)

    out, report = run(w, tmp_path, relative_margin=0.05, num_negatives=3)
    probe = out["probe"]
    # threshold 0.9 - 0.9 * 0.05 = 0.855: the planted false negative (0.95) and 0.86 go, 0.85 stays
    assert texts(probe) == ["n85", "n80", "n70"]
    assert [n["score"] for n in probe["negatives"]] == pytest.approx([0.85, 0.80, 0.70], abs=1e-6)
    assert probe["positive_score"] == pytest.approx(0.90, abs=1e-6)
    assert report["by_lang"]["xx"]["dropped"] == {
        "self_or_duplicate": 1, "same_query_positive": 0, "same_source_id": 0, "dataset_negative": 0, "margin": 2,
    }

    out, _ = run(w, tmp_path / "m0", relative_margin=0.0, num_negatives=3)
    assert texts(out["probe"]) == ["near", "n85", "n80"]  # margin 0 keeps everything below the positive


@pytest.mark.parametrize(
    ("rank_window", "range_min", "range_max", "num_negatives", "expected"),
    [
        # raw ranks: 0 = the positive (0.99), 1 = c0 (0.80), 2 = c1 (0.79), ..., 10 = c9 (0.71)
        ("search", 2, 6, 4, ["c1", "c2", "c3", "c4"]),
        ("search", 2, 6, 2, ["c1", "c2"]),
        ("search", 0, 3, 3, ["c0", "c1"]),  # rank 0 is the positive: only two candidates left in the window
        ("search", 9, 12, 3, ["c8", "c9"]),  # the corpus ends at rank 10
        # survivor ranks: the positive is removed first, so c0 is survivor rank 0
        ("filtered", 2, 6, 4, ["c2", "c3", "c4", "c5"]),
        ("filtered", 0, 3, 3, ["c0", "c1", "c2"]),
    ],
)
def test_range_params_select_exact_ranks(
    tmp_path: Path, rank_window: str, range_min: int, range_max: int, num_negatives: int, expected: list[str]
) -> None:
    w = World()
    w.probe("q", "P", 0.99, id="probe")
    for i in range(10):
        w.filler(f"c{i}", 0.80 - 0.01 * i)
    out, report = run(w, tmp_path, rank_window=rank_window, range_min=range_min, range_max=range_max,
                      num_negatives=num_negatives)
    assert texts(out["probe"]) == expected
    assert out["probe"]["positive_score"] == pytest.approx(0.99, abs=1e-6)
    assert report["rows"]["short"] == sum(len(texts(r)) < num_negatives for r in out.values())


def test_positive_duplicates_translations_and_co_positives_excluded(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "Paris is the capital.", 0.90, id="probe", lang="xx", source_id="src-1")
    w.probe("q", "Second positive", 0.60, id="co", lang="zz")  # same query text: its positive is a positive too
    w.filler("paris  is the CAPITAL.", 0.89, lang="yy")  # normalises to the positive
    w.filler("Paris ist die Hauptstadt.", 0.88, lang="yy", source_id="src-1")  # translations of the positive
    w.filler("Paris est la capitale.", 0.87, lang="yy", source_id="src-1")
    for text, score in [("a", 0.5), ("b", 0.4), ("c", 0.3), ("d", 0.2)]:
        w.filler(text, score, lang="yy")

    out, report = run(w, tmp_path, relative_margin=0.0, num_negatives=3)  # margin 0.0: only identity filters act
    assert texts(out["probe"]) == ["a", "b", "c"]
    assert report["by_lang"]["xx"]["dropped"] == {
        "self_or_duplicate": 2, "same_query_positive": 1, "same_source_id": 2, "dataset_negative": 0, "margin": 0,
    }
    assert normalize("paris  is the CAPITAL.") == normalize("Paris is the capital.")


def test_scope_language_searches_own_language_and_dataset(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.95, id="probe", lang="en", source="qed_nq")
    w.filler("de1", 0.90, lang="de", source="synthetic")
    w.filler("nli1", 0.80, lang="en", source="snli_via_esnli")
    w.filler("syn1", 0.70, lang="en", source="synthetic")
    w.filler("nq1", 0.50, lang="en", source="qed_nq")
    w.filler("nq2", 0.40, lang="en", source="qed_nq")

    out, report = run(w, tmp_path / "language", scope="language", num_negatives=3)
    assert texts(out["probe"]) == ["nq1", "nq2"]
    assert report["corpus"]["partitions"] == 4
    assert report["by_source"]["qed_nq"]["short"] == 3  # probe and both qed_nq fillers lack a third negative
    out, report = run(w, tmp_path / "all", scope="all", num_negatives=3)
    assert texts(out["probe"]) == ["de1", "nli1", "syn1"]
    assert report["corpus"]["partitions"] == 1


def test_dataset_negative_is_kept_first(tmp_path: Path) -> None:
    w = World()
    w.passage("contradiction", 0.93)  # above the margin threshold 0.855: kept anyway, the dataset says negative
    w.probe("q", "P", 0.90, id="probe", negative="contradiction", lang="xx")
    for text, score in [("m1", 0.80), ("m2", 0.70), ("m3", 0.60)]:
        w.filler(text, score)
    out, report = run(w, tmp_path, num_negatives=3)
    assert texts(out["probe"]) == ["contradiction", "m1", "m2"]
    assert out["probe"]["negatives"][0]["score"] == pytest.approx(0.93, abs=1e-6)
    assert report["dataset_negatives"]["kept"] == 1
    assert report["dataset_negatives"]["above_margin"] == 1
    assert report["by_lang"]["xx"]["dropped"]["margin"] == 0  # the contradiction is excluded as itself, not by margin
    assert report["by_lang"]["xx"]["dropped"]["dataset_negative"] == 1
    assert "contradiction" in {t for r in out.values() if r["id"] != "probe" for t in texts(r)}  # others may use it


def test_hard_false_gives_empty_negatives_without_a_teacher(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.9, id="probe", negative="N")
    w.filler("x", 0.5)
    rows, report = mine(w.rows, None, params_group("negatives", hard=False), None)
    assert [r["id"] for r in rows] == [r["id"] for r in w.rows]
    assert all(r["negatives"] == [] and r["positive_score"] is None for r in rows)
    assert rows[0]["provenance"] == {"generator": "test"}
    assert report["dataset_negatives"]["dropped_not_hard"] == 1
    with pytest.raises(ValueError, match="needs a teacher encoder"):
        mine(w.rows, None, params_group("negatives"), None)


def test_output_schema_and_report(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.9, id="probe", negative="N", source_id="s1")
    w.passage("N", 0.1)
    for i in range(5):
        w.filler(f"f{i}", 0.5 - 0.05 * i)
    out, report = run(w, tmp_path, num_negatives=3)
    assert list(out["probe"]) == [
        "id", "query", "positive", "negatives", "positive_score", "lang", "task_type", "source", "source_id",
        "provenance",
    ]
    assert out["probe"]["source_id"] == "s1"
    assert all(set(n) == {"text", "score", "source_id"} for r in out.values() for n in r["negatives"])
    assert out["probe"]["negatives"][0] == {"text": "N", "score": pytest.approx(0.1), "source_id": None}
    assert report["rows"] == {"in": 6, "out": 6, "with_dataset_negative": 1, "short": report["rows"]["short"],
                              "without_negatives": report["rows"]["without_negatives"]}
    assert report["negatives"]["total"] == sum(len(r["negatives"]) for r in out.values())
    assert report["scores"]["positive"]["count"] == 6
    assert sum(report["scores"]["mined_negative"]["histogram"]["counts"]) == report["negatives"]["mined"]
    json.dumps(report)  # a DVC metric: plain JSON


def test_pool_passages_are_candidates_with_their_source_id_and_exclusion(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.9, id="probe", source_id="s1")
    w.filler("other positive", 0.2, source_id="s2")
    w.passage("pool near", 0.7)  # a pool passage no row owns: the hardest candidate
    w.passage("pool translation", 0.8)  # same source_id as the probe's passage: never its negative
    w.passage("pool far", 0.1)
    pool = [{"lang": "de", "source": "synthetic", "source_id": sid, "text": text}
            for sid, text in [("s3", "pool near"), ("s1", "pool translation"), ("s4", "pool far")]]
    rows, report = mine(w.rows, w.encoder(), params_group("negatives", range_min=0, range_max=10, num_negatives=2),
                        EmbeddingCache(tmp_path / "cache"), pool=pool)
    probe = rows[0]
    assert [(n["text"], n["source_id"]) for n in probe["negatives"]] == [("pool near", "s3"), ("other positive", "s2")]
    assert report["corpus"]["passages"] == 5
    assert report["candidates"]["dropped"]["same_source_id"] == 1
    # the random baseline draws from the non-excluded candidates: below the mined ones here
    assert report["scores"]["random_negative"]["count"] == 2
    assert report["scores"]["random_negative"]["mean"] < report["scores"]["mined_negative"]["mean"]


def test_english_pool_passages_join_their_dataset_and_skip_the_rows_queries(tmp_path: Path) -> None:
    """Pool entries as retrofit.data.english_pool writes them: in their (lang, dataset) partition only, never a negative
    of a row whose query they answer."""
    w = World()
    w.probe("q", "P", 0.9, id="probe", lang="en", source="qed_nq")
    w.filler("nli positive", 0.85, id="nli", lang="en", source="snli_via_esnli")
    for text, score in [("nq co-positive", 0.8), ("nli pool", 0.78), ("de nq", 0.76), ("nq near", 0.7),
                        ("nq far", 0.3)]:
        w.passage(text, score)
    pool = [{"lang": lang, "source": source, "source_id": f"{source}:pool{i}", "text": text, "queries": queries}
            for i, (lang, source, text, queries) in enumerate([
                ("en", "qed_nq", "P", ["q"]),  # the row's own positive is in the sample too
                ("en", "qed_nq", "nq co-positive", ["q"]),  # another positive of the probe's query
                ("en", "snli_via_esnli", "nli pool", ["premise"]),  # another dataset's partition
                ("de", "qed_nq", "de nq", ["frage"]),  # another language's partition (no rows there)
                ("en", "qed_nq", "nq near", ["another question"]),
                ("en", "qed_nq", "nq far", []),
            ])]
    params = params_group("negatives", range_min=0, range_max=10, num_negatives=3, scope="language")
    rows, report = mine(w.rows, w.encoder(), params, EmbeddingCache(tmp_path / "cache"), pool=pool)
    assert [(n["text"], n["source_id"]) for n in rows[0]["negatives"]] == [("nq near", "qed_nq:pool4"),
                                                                            ("nq far", "qed_nq:pool5")]
    assert report["by_source"]["qed_nq"]["dropped"]["same_query_positive"] == 1
    assert report["by_source"]["qed_nq"]["dropped"]["self_or_duplicate"] == 1
    assert texts(rows[1]) == ["nli pool"]
    # without its queries the co-positive is the probe's hardest negative: the exclusion is what keeps it out
    rows, _ = mine(w.rows, w.encoder(), params, EmbeddingCache(tmp_path / "cache"),
                   pool=[{k: v for k, v in p.items() if k != "queries"} for p in pool])
    assert texts(rows[0])[0] == "nq co-positive"


def test_rows_are_validated_with_their_id() -> None:
    good = {"id": "a", "source": "synthetic", "lang": "de", "task_type": "qa", "query": "q", "positive": "p"}
    with pytest.raises(ValueError, match=r"row 1 \(id='b'\): 'query' must be a non-empty string"):
        mine([good, {**good, "id": "b", "query": ""}], None, params_group("negatives", hard=False), None)
    with pytest.raises(ValueError, match="duplicate id"):
        mine([good, dict(good)], None, params_group("negatives", hard=False), None)
    with pytest.raises(ValueError, match="'negative' must be a string or null"):
        mine([{**good, "negative": 3}], None, params_group("negatives", hard=False), None)


# --- determinism, batching, agreement with a reference ----------------------------------------------------------


def random_rows(n: int, seed: int) -> tuple[list[dict[str, Any]], TableEncoder]:
    """Random rows with repeated queries, duplicate positives, shared source ids and dataset negatives."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    rows, queries, passages = [], {}, {}

    def unit() -> np.ndarray:
        v = gen.normal(size=16)
        return v / np.linalg.norm(v)

    for i in range(n):
        query = f"query {rng.randrange(int(n * 0.8))}"
        positive = " ".join(rng.choices(words, k=6))
        if i > 5 and rng.random() < 0.1:  # a case/space variant of an earlier positive
            positive = "  " + rows[rng.randrange(i)]["positive"].upper()
        negative = " ".join(rng.choices(words, k=5)) if rng.random() < 0.2 else None
        for text in (positive, negative):
            if text is not None and text not in passages:
                passages[text] = unit()
        queries.setdefault(query, unit())
        rows.append({
            "id": f"r{i}", "source": rng.choice(["synthetic", "qed_nq"]), "lang": rng.choice(["de", "en"]),
            "task_type": "qa", "query": query, "positive": positive, "negative": negative,
            "source_id": f"s{rng.randrange(n // 3)}" if rng.random() < 0.7 else None, "provenance": None,
        })
    return rows, TableEncoder(queries, passages, fingerprint=f"random-{seed}")


def reference_mine(
    rows: list[dict[str, Any]], enc: TableEncoder, params: NegativesParams, rank_window: str
) -> list[list[str]]:
    """Plain per-row mining over full score vectors: the definition that the vectorised miner implements."""
    out = []
    for row in rows:
        key = (lambda r: "all") if params.scope == "all" else (lambda r: (r["lang"], r["source"]))
        part = [r for r in rows if key(r) == key(row)]
        corpus = list(dict.fromkeys(t for r in part for t in (r["positive"], r["negative"]) if t is not None))
        emb = np.stack([enc.tables["passage"][t] for t in corpus]).astype(np.float32)
        q = enc.tables["query"][row["query"]].astype(np.float32)
        scores = emb @ q
        order = sorted(range(len(corpus)), key=lambda c: -scores[c])
        ps = float(np.float32(q @ enc.tables["passage"][row["positive"]].astype(np.float32)))
        threshold = ps - abs(ps) * params.relative_margin
        norm = normalize(row["positive"])
        excluded = {c for c, t in enumerate(corpus) if normalize(t) == norm}
        excluded |= {corpus.index(r["positive"]) for r in part if r["query"] == row["query"]}
        if row["source_id"] is not None:
            excluded |= {corpus.index(r["positive"]) for r in part if r["source_id"] == row["source_id"]}
        negs = []
        if row["negative"] is not None and normalize(row["negative"]) != norm:
            negs.append(row["negative"])
            excluded |= {c for c, t in enumerate(corpus) if normalize(t) == normalize(row["negative"])}
        want = params.num_negatives - len(negs)
        if rank_window == "search":
            cands = [c for c in order[params.range_min : params.range_max] if c not in excluded]
            cands = [c for c in cands if scores[c] <= threshold][:want]
        else:
            pool = order[: params.range_max + len(excluded)]
            survivors = [c for c in pool if c not in excluded and scores[c] <= threshold]
            cands = survivors[params.range_min : params.range_max][:want]
        out.append(negs + [corpus[c] for c in cands])
    return out


@pytest.mark.parametrize("scope", ["language", "all"])
@pytest.mark.parametrize("rank_window", ["search", "filtered"])
def test_vectorised_miner_matches_reference(tmp_path: Path, scope: str, rank_window: str) -> None:
    rows, enc = random_rows(160, seed=3)
    params = params_group("negatives", range_min=1, range_max=12, num_negatives=4, relative_margin=0.05, scope=scope)
    mined, report = mine(rows, enc, params, EmbeddingCache(tmp_path), rank_window=rank_window, search_batch_size=7)
    assert [texts(r) for r in mined] == reference_mine(rows, enc, params, rank_window)
    assert report["candidates"]["dropped"]["same_source_id"] > 0
    assert report["candidates"]["dropped"]["same_query_positive"] > 0
    assert report["candidates"]["dropped"]["self_or_duplicate"] > 0


def test_determinism(tmp_path: Path) -> None:
    rows, enc = random_rows(80, seed=5)
    params = params_group("negatives")
    a = mine(copy.deepcopy(rows), enc, params, EmbeddingCache(tmp_path / "a"))
    b = mine(copy.deepcopy(rows), enc, params, EmbeddingCache(tmp_path / "b"))
    c = mine(copy.deepcopy(rows), enc, params, EmbeddingCache(tmp_path / "a"))  # from the cache
    assert json.dumps(a[0]) == json.dumps(b[0]) == json.dumps(c[0])
    assert a[1]["candidates"] == b[1]["candidates"] == c[1]["candidates"]


@pytest.mark.parametrize("rank_window", ["search", "filtered"])
def test_search_runs_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank_window: str) -> None:
    shapes: list[tuple[int, int]] = []
    original = mine_search._Searcher.search

    def spy(self: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, idx = original(self, q, k)
        shapes.append(scores.shape)
        return scores, idx

    monkeypatch.setattr(mine_search._Searcher, "search", spy)
    rows, enc = random_rows(50, seed=7)
    mine(rows, enc, params_group("negatives", scope="all"), EmbeddingCache(tmp_path), rank_window=rank_window,
         search_batch_size=8)
    assert len(shapes) == math.ceil(50 / 8)
    assert max(b for b, _ in shapes) <= 8
    assert max(k for _, k in shapes) <= 30 + (10 if rank_window == "filtered" else 0)  # never the whole corpus


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: str) -> None:
    gen = np.random.default_rng(0)
    n = 1200
    centers = gen.normal(size=(20, 16))
    vecs = centers[gen.integers(0, 20, size=n)] + 0.5 * gen.normal(size=(n, 16))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = [{"id": f"r{i}", "source": "synthetic", "lang": "de", "task_type": "qa", "query": f"q{i}",
             "positive": f"p{i}"} for i in range(n)]
    enc = TableEncoder({f"q{i}": v for i, v in enumerate(vecs)}, {f"p{i}": v for i, v in enumerate(vecs)}, "clustered")
    cache = EmbeddingCache(tmp_path)
    exact, _ = mine(rows, enc, params_group("negatives"), cache)
    monkeypatch.setattr(mine_search, "APPROX_MIN_PASSAGES", 100)
    approx, report = mine(rows, enc, params_group("negatives", index=index), cache)
    assert report["corpus"]["index"] == {index: 1}
    jaccard = [len(set(texts(a)) & set(texts(b))) / max(1, len(set(texts(a)) | set(texts(b))))
               for a, b in zip(exact, approx, strict=True)]
    assert np.mean(jaccard) > 0.8


def test_small_partitions_fall_back_to_exact_search(tmp_path: Path) -> None:
    rows, enc = random_rows(60, seed=9)
    exact, _ = mine(rows, enc, params_group("negatives"), EmbeddingCache(tmp_path))
    for index in ("ivf", "hnsw"):
        approx, report = mine(rows, enc, params_group("negatives", index=index), EmbeddingCache(tmp_path))
        assert report["corpus"]["index"] == {f"{index}->flat": 4}
        assert [texts(r) for r in approx] == [texts(r) for r in exact]


# --- mining through the embedding cache --------------------------------------------------------------------------


def test_cache_avoids_reencoding_and_survives_reopening(tmp_path: Path) -> None:
    w = World()
    w.probe("q", "P", 0.99, id="probe")
    for i in range(10):
        w.filler(f"c{i}", 0.80 - 0.01 * i)
    enc = w.encoder()
    first, report = mine(w.rows, enc, params_group("negatives"), EmbeddingCache(tmp_path))
    assert enc.n_encoded("passage") == 11 and enc.n_encoded("query") == 11
    assert report["encoding"]["passage"] == {"unique": 11, "encoded": 11, "cached": 0}

    # a different mining parameter, same cache object: nothing is encoded
    cache = EmbeddingCache(tmp_path)
    mine(w.rows, enc, params_group("negatives", relative_margin=0.2, range_min=1), cache)
    assert enc.n_encoded() == 22
    # reopened by a new process (new cache and encoder objects): nothing encoded, same result
    enc2 = w.encoder()
    again, report = mine(w.rows, enc2, params_group("negatives"), EmbeddingCache(tmp_path))
    assert enc2.calls == [] and again == first
    assert report["encoding"]["query"] == {"unique": 11, "encoded": 0, "cached": 11}
    # one new row: only its query and positive are encoded
    w.filler("new passage", 0.1)
    mine(w.rows, enc2, params_group("negatives"), EmbeddingCache(tmp_path))
    assert enc2.calls == [("passage", ["new passage"]), ("query", [w.rows[-1]["query"]])]
    # another model (fingerprint) has its own namespace
    enc3 = w.encoder(fingerprint="table-v2")
    mine(w.rows, enc3, params_group("negatives"), EmbeddingCache(tmp_path))
    assert enc3.n_encoded() == 24
    assert not list(tmp_path.rglob("*.tmp"))


# --- a real (tiny) sentence-transformers teacher ------------------------------------------------------------------


def word_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Rows of random lowercase words (the tiny tokenizer spells them out); each query takes 3 positive words."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 8)))

    rows = []
    for i in range(n):
        positive = [word() for _ in range(rng.randint(5, 14))]
        rows.append({"id": f"r{i}", "source": "synthetic", "lang": "en", "task_type": "qa",
                     "query": " ".join(rng.sample(positive, 3)) + f" {i}?", "positive": " ".join(positive),
                     "negative": None, "source_id": None, "provenance": None})
    return rows


@pytest.mark.parametrize("relative_margin", [0.0, 0.01])  # the random tiny model packs cosines near 0.96
def test_filtered_window_matches_sentence_transformers(
    tiny_model_dir: Path, tmp_path: Path, relative_margin: float
) -> None:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    rows = word_rows(150, seed=1)
    params = params_group("negatives", range_min=2, range_max=12, num_negatives=3, relative_margin=relative_margin, scope="all")
    enc = SentenceTransformerEncoder(tiny_model_dir, batch_size=params.batch_size)
    ours, report = mine(rows, enc, params, EmbeddingCache(tmp_path), rank_window="filtered")
    assert report["negatives"]["mined"] > 50 and report["candidates"]["below_range_min"] > 0

    model = SentenceTransformer(str(tiny_model_dir), device="cpu", local_files_only=True)
    theirs = mine_hard_negatives(
        Dataset.from_dict({"query": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}),
        model, range_min=2, range_max=12, relative_margin=relative_margin, num_negatives=3, sampling_strategy="top",
        use_faiss=True, batch_size=params.batch_size, query_prompt_name="query", corpus_prompt_name="passage",
        output_format="labeled-list", output_scores=True, verbose=False,
    )
    st = {r["query"]: (r["positive"][1:], r["scores"][1:]) for r in theirs}
    differ = 0
    for row in ours:
        st_texts, st_scores = st.get(row["query"], ([], []))
        ours_scores = [n["score"] for n in row["negatives"]]
        if texts(row) == st_texts:
            assert ours_scores == pytest.approx(st_scores, abs=1e-5), row["id"]
            continue
        # This model packs cosines near 0.96 and the two encode paths batch differently, so the last float bit can
        # differ: two passages at one score may swap, and a passage at the margin's threshold may pass in one and
        # not in the other. Any other difference fails.
        differ += 1
        ps = row["positive_score"]
        threshold = ps - abs(ps) * relative_margin
        at_threshold = any(abs(x - threshold) < 1e-5 for x in [*ours_scores, *st_scores])
        tied = len(ours_scores) == len(st_scores) and ours_scores == pytest.approx(st_scores, abs=1e-5)
        # two candidates tied at range_min's edge: one path skips one of them, the other the next, so the window
        # shifts by one rank (seen once under load: [.977459, .977368, .977329] against [.977368, .977329, .977149])
        shifted = len(ours_scores) == len(st_scores) > 1 and (
            ours_scores[1:] == pytest.approx(st_scores[:-1], abs=1e-5)
            or ours_scores[:-1] == pytest.approx(st_scores[1:], abs=1e-5))
        assert at_threshold or tied or shifted, (row["id"], ours_scores, st_scores, threshold, texts(row), st_texts)
    assert differ <= len(ours) // 20  # the exception
