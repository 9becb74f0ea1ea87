"""Retrieval evaluation on the held-out XQuAD split, run through mteb's own retrieval machinery.

Three task families are built from ``retrofit.data.xquad``'s tables (one mteb :class:`~mteb.abstasks.AbsTaskRetrieval`
per family, one mteb subset per language or language pair). Queries are always held-out (``split == "test"``)
questions:

- ``mono`` (task ``XQuADHeldoutMonoRetrieval``, subsets ``ar``, ``de``, ...): queries and corpus in one language;
  the corpus is the language's held-out paragraphs and, with ``corpus="all"``, its training-pool paragraphs as
  distractors (all 160, or a seeded sample of ``distractors``), or the held-out ones alone (``corpus="test"``).
- ``cross`` (task ``XQuADHeldoutCrossRetrieval``, subsets ``X-en`` and ``en-X`` for every ``X != en``): queries in
  the first language of the subset name, corpus (as for mono) in the second.
- ``pooled`` (task ``XQuADHeldoutPooledRetrieval``, subsets named by the *query* language): one multilingual
  corpus holding every language's held-out paragraphs, LAReQA-style; a query's relevant passages are its paragraph
  in *every* language, so each query has ``len(langs)`` relevant documents. Its Recall@10 can therefore not
  exceed ``10 / len(langs)`` once there are more than 10 languages, and nDCG@10 rewards putting translations of
  the right paragraph above other paragraphs in the query's own language.

Scoring, the files written and the per-query values are in :mod:`retrofit.eval.score`; the encoder in
:mod:`retrofit.eval.encoder`.

References:
    On the Cross-lingual Transferability of Monolingual Representations (Artetxe, Ruder, Yogatama; arXiv
    1910.11856) -- XQuAD.
    LAReQA: Language-agnostic answer retrieval from a multilingual pool (Roy et al.; arXiv 2004.05484) -- the
    pooled setting.
    MMTEB: Massive Multilingual Text Embedding Benchmark (Enevoldsen et al.; arXiv 2502.13595) -- mteb.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from datasets import Dataset
from mteb.abstasks import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.types import PromptType

from retrofit.schema import EVAL_FAMILIES, XQUAD_LANGUAGES, check_languages

if TYPE_CHECKING:
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.timing import TimingStack

log = logging.getLogger(__name__)

#: The families averaged into the primary metric. Pooled (12 relevant documents per query, a construction no MMTEB
#: retrieval task shares) stays a reported diagnostic.
PRIMARY_FAMILIES: tuple[str, ...] = ("mono", "cross")


#: The metrics reported in ``metrics.json`` and ``table.md`` (mteb's score keys); the first is the main score.
METRICS: tuple[str, ...] = ("ndcg_at_10", "recall_at_10", "mrr_at_10")


METRIC_LABELS: dict[str, str] = {"ndcg_at_10": "nDCG@10", "recall_at_10": "Recall@10", "mrr_at_10": "MRR@10"}


#: ISO 639-1 -> the BCP-47 language-script code mteb uses for XQuAD (as in mteb's own ``XQuADRetrieval``).
MTEB_LANGUAGE_CODES: dict[str, str] = {
    "ar": "arb-Arab", "de": "deu-Latn", "el": "ell-Grek", "en": "eng-Latn", "es": "spa-Latn", "hi": "hin-Deva",
    "ro": "ron-Latn", "ru": "rus-Cyrl", "th": "tha-Thai", "tr": "tur-Latn", "vi": "vie-Latn", "zh": "zho-Hans",
}

TASK_NAMES: dict[str, str] = {
    "mono": "XQuADHeldoutMonoRetrieval",
    "cross": "XQuADHeldoutCrossRetrieval",
    "pooled": "XQuADHeldoutPooledRetrieval",
}

_DESCRIPTIONS: dict[str, str] = {
    "mono": "Held-out XQuAD articles: retrieve the paragraph answering a question, query and corpus in one language.",
    "cross": "Held-out XQuAD articles: retrieve the paragraph answering a question, with the query in one language "
    "and the corpus in another (subset 'X-en': X queries, English corpus; 'en-X': English queries, X corpus).",
    "pooled": "Held-out XQuAD articles, LAReQA-style: one corpus pooling every language's paragraphs; a question's "
    "relevant documents are its paragraph in every language. Subsets are named by the query language.",
}

_XQUAD_BIBTEX = r"""
@article{Artetxe:etal:2019,
  archiveprefix = {arXiv},
  author = {Mikel Artetxe and Sebastian Ruder and Dani Yogatama},
  eprint = {1910.11856},
  journal = {CoRR},
  title = {On the cross-lingual transferability of monolingual representations},
  volume = {abs/1910.11856},
  year = {2019},
}
"""

#: The split every held-out query and mteb result is under.
HELDOUT_SPLIT = "test"
_PARAGRAPH_KEYS = ("id", "lang", "text", "split")
_QUESTION_KEYS = ("id", "lang", "paragraph_id", "text", "split")

# ----------------------------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------------------------


class XQuADRetrievalTask(AbsTaskRetrieval):
    """An mteb retrieval task over in-memory held-out XQuAD data (one instance per family).

    mteb reads ``metadata`` from the class and its ``unload_data`` drops any instance-level copy, so each
    family gets its own subclass carrying its :class:`TaskMetadata` (see :func:`_make_task`); instances hold the
    prepared split data and :meth:`load_data` only hands it to mteb, never touching the hub.

    Attributes:
        family: ``"mono"``, ``"cross"`` or ``"pooled"``.
    """

    family: ClassVar[str]
    #: mteb keeps each query's top max(k_values) documents in a Python heap and scores every cutoff; the reports use
    #: cutoff 10 alone, so 1000 (mteb's default) only cost time: the @10 scores are the same at 100.
    k_values: ClassVar[tuple[int, ...]] = (1, 3, 5, 10, 20, 100)

    def __init__(self, splits: Mapping[str, RetrievalSplitData], seed: int = 42) -> None:
        """Create the task.

        Args:
            splits: Subset name -> the subset's test split, exactly the subsets of the class metadata.
            seed: Passed to mteb (which seeds Python, NumPy and torch with it).

        Raises:
            ValueError: ``splits`` does not match the subsets in the metadata.
        """
        expected = list(self.metadata.hf_subsets)
        if sorted(splits) != sorted(expected):
            raise ValueError(f"{self.metadata.name}: splits {sorted(splits)} do not match the subsets {expected}")
        self._splits = dict(splits)
        super().__init__(seed=seed)

    def load_data(self, num_proc: int | None = None, *, timer: TimingStack | None = None, **kwargs: Any) -> None:
        """Hand the prepared splits to mteb (``self.dataset[subset]["test"]``); no download."""
        if self.data_loaded:
            return
        self.dataset = {subset: {HELDOUT_SPLIT: dict(split)} for subset, split in self._splits.items()}  # type: ignore[misc]
        self.data_loaded = True

    def texts_by_prompt_type(self) -> dict[PromptType, list[str]]:
        """The unique query texts and passage texts of every subset, in first-seen order.

        Passages carry no title, so these are exactly the strings mteb hands the encoder.
        """
        out: dict[PromptType, dict[str, None]] = {PromptType.query: {}, PromptType.document: {}}
        for split in self._splits.values():
            out[PromptType.query].update(dict.fromkeys(split["queries"]["text"]))
            out[PromptType.document].update(dict.fromkeys(split["corpus"]["text"]))
        return {kind: list(texts) for kind, texts in out.items()}

    def subset_sizes(self) -> dict[str, dict[str, int]]:
        """``{subset: {"n_queries": ..., "n_documents": ...}}``."""
        return {
            subset: {"n_queries": len(split["queries"]), "n_documents": len(split["corpus"])}
            for subset, split in self._splits.items()
        }


def _make_task(family: str, langs: list[str], splits: dict[str, RetrievalSplitData], seed: int) -> XQuADRetrievalTask:
    """Build the family's task subclass (metadata on the class, as mteb expects) and instantiate it."""
    eval_langs: dict[str, list[str]] = {}
    for subset in splits:
        if family == "pooled":  # the query language, then every corpus language
            eval_langs[subset] = [MTEB_LANGUAGE_CODES[subset]] + [
                MTEB_LANGUAGE_CODES[lang] for lang in langs if lang != subset
            ]
        else:
            eval_langs[subset] = [MTEB_LANGUAGE_CODES[lang] for lang in subset.split("-")]
    metadata = TaskMetadata(
        name=TASK_NAMES[family],
        description=_DESCRIPTIONS[family],
        # not a hub dataset: the revision is a hash of the exact corpus, queries and qrels, so results from
        # different splits or subsamples never look alike
        dataset={"path": f"retrofit/xquad-heldout-{family}", "revision": _splits_fingerprint(splits)},
        reference="https://github.com/google-deepmind/xquad",
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[HELDOUT_SPLIT],
        eval_langs=eval_langs,
        main_score=METRICS[0],
        date=("2019-05-21", "2019-11-21"),
        domains=["Encyclopaedic", "Written"],
        task_subtypes=["Question answering"],
        license="cc-by-sa-4.0",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="human-translated",
        bibtex_citation=_XQUAD_BIBTEX,
        adapted_from=["XQuADRetrieval"],
    )
    cls = type(
        metadata.name,
        (XQuADRetrievalTask,),
        {"metadata": metadata, "family": family, "__module__": __name__},
    )
    return cls(splits, seed=seed)


def _splits_fingerprint(splits: Mapping[str, RetrievalSplitData]) -> str:
    digest = hashlib.sha256()
    for subset in sorted(splits):
        split = splits[subset]
        payload = {
            "subset": subset,
            "corpus": [list(split["corpus"]["id"]), list(split["corpus"]["text"])],
            "queries": [list(split["queries"]["id"]), list(split["queries"]["text"])],
            "qrels": {q: sorted(d.items()) for q, d in sorted(split["relevant_docs"].items())},
        }
        digest.update(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:16]


def _doc_id(lang: str, paragraph_id: str) -> str:
    return f"{lang}:{paragraph_id}"


def _query_id(lang: str, question_id: str) -> str:
    return f"{lang}:q:{question_id}"


def question_of(query_id: str) -> str:
    """The XQuAD question behind a query id: ``"de:q:<qid>"`` -> ``"<qid>"`` (a bare question id, as the primary
    metric's per-question values are keyed, is returned as it is).

    The same question is asked in every language, so it is the unit a bootstrap resamples
    (:func:`retrofit.eval.stats.paired_bootstrap`): a drawn question brings its values in every language and direction.
    """
    return query_id.split(":q:", 1)[1] if ":q:" in query_id else query_id


def _check_rows(rows: list[dict[str, Any]], keys: tuple[str, ...], what: str) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{what} row {i} (id={row.get('id')!r}): missing key(s) {missing}; expected {list(keys)}")
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise ValueError(f"{what} row {i} (id={row['id']!r}, lang={row['lang']!r}): empty or non-string text")


def select_question_ids(question_ids: Iterable[str], max_queries: int | None, seed: int) -> list[str]:
    """Deterministically subsample question ids (the same ids are then used in every language).

    Args:
        question_ids: Candidate ids; order does not matter (they are sorted first).
        max_queries: Keep at most this many; ``None`` keeps all.
        seed: Sampling seed.

    Returns:
        The kept ids, sorted.

    Raises:
        ValueError: ``max_queries`` is below 1.
    """
    ids = sorted(set(question_ids))
    if max_queries is None or max_queries >= len(ids):
        return ids
    if max_queries < 1:
        raise ValueError(f"max_queries_per_lang must be at least 1 or None, got {max_queries}")
    return sorted(random.Random(seed).sample(ids, max_queries))


def build_tasks(
    paragraphs: list[dict[str, Any]],
    questions: list[dict[str, Any]],
    langs: list[str],
    families: list[str],
    max_queries_per_lang: int | None,
    seed: int,
    corpus: Literal["all", "test"] = "all",
    distractors: int | None = None,
) -> list[XQuADRetrievalTask]:
    """Build the mteb retrieval tasks for the requested families from ``retrofit.data.xquad``'s tables.

    Queries come only from ``split == "test"`` rows (held-out articles). With ``corpus="all"`` the mono and cross
    corpora hold *every* paragraph of the language (240 per language): the training-pool paragraphs serve as
    distractors, which gives the families headroom that an 80-paragraph corpus lacks (the base model scores 96 on
    that). With ``corpus="test"`` they hold the held-out paragraphs only. The pooled corpus is always the held-out
    paragraphs of every language. Unsampled paragraphs always stay in as distractors. ``distractors`` keeps only that
    many training-pool paragraphs (the same ids in every language, a seeded shuffle's first ones, so a smaller count's
    corpus is a subset of a larger one's): each one costs every model its encoding, and the held-out paragraphs,
    their articles' nearest neighbours, always stay.

    Args:
        paragraphs: Rows of ``paragraphs.jsonl`` (``id``, ``lang``, ``text``, ``split``; schema in
            ``retrofit.data.xquad``).
        questions: Rows of ``questions.jsonl`` (``id``, ``lang``, ``paragraph_id``, ``text``, ``split``).
        langs: ISO 639-1 codes, a subset of the XQuAD languages; ``cross`` needs ``"en"``.
        families: Any of ``"mono"``, ``"cross"``, ``"pooled"``; tasks come back in :data:`EVAL_FAMILIES` order.
        max_queries_per_lang: Cap on questions per language (the same question ids in every language, chosen by
            :func:`select_question_ids`); ``None`` keeps all.
        seed: Query subsampling seed (``evaluate.query_seed``; also handed to mteb).
        corpus: ``"all"`` or ``"test"``: which paragraphs form the mono and cross corpora (see above).
        distractors: With ``corpus="all"``, training-pool paragraphs kept per language (``None``: every one).

    Returns:
        One task per requested family.

    Raises:
        ValueError: An unknown family or language, ``cross`` without English, a negative ``distractors``, a row
            missing a key, no held-out rows for a language, or languages that are not parallel (different paragraph
            or question ids, or a question answered by different paragraphs).
    """
    _check_request(paragraphs, questions, langs, families, corpus, distractors)
    passages, every, asked = _held_out_tables(paragraphs, questions, langs)
    ref = langs[0]
    family_corpus = passages
    if corpus == "all":
        kept = distractor_ids(every[ref], passages[ref], distractors, seed)
        family_corpus = {lang: {pid: text for pid, text in every[lang].items() if pid in passages[lang] or pid in kept}
                         for lang in langs}
    qids = select_question_ids(asked[ref], max_queries_per_lang, seed)
    log.info(
        "XQuAD: %d held-out paragraphs (%d in the mono/cross corpus) and %d held-out questions per language; "
        "evaluating %d questions per language",
        len(passages[ref]), len(family_corpus[ref]), len(asked[ref]), len(qids),
    )
    splits = _Splits(asked, qids, family_corpus)
    tasks = []
    for family in EVAL_FAMILIES:
        if family == "mono" and family in families:
            tasks.append(_make_task(family, list(langs), {lang: splits.make(lang, [lang]) for lang in langs}, seed))
        elif family == "cross" and family in families:
            pairs: dict[str, RetrievalSplitData] = {}
            for lang in langs:
                if lang != "en":
                    pairs[f"{lang}-en"] = splits.make(lang, ["en"])
                    pairs[f"en-{lang}"] = splits.make("en", [lang])
            if not pairs:
                raise ValueError("families: 'cross' needs at least one language besides 'en'")
            tasks.append(_make_task(family, list(langs), pairs, seed))
        elif family == "pooled" and family in families:
            pooled = _corpus(langs, passages)
            tasks.append(_make_task(family, list(langs),
                                    {lang: splits.make(lang, list(langs), pooled) for lang in langs}, seed))
    return tasks


def distractor_ids(every: Mapping[str, str], held_out: Mapping[str, str], count: int | None, seed: int) -> set[str]:
    """The training-pool paragraph ids kept as distractors: all of them (``count`` ``None``), or the first ``count``
    of a shuffle seeded by ``seed`` (nested: a smaller count keeps a subset of a larger one's)."""
    pool = sorted(set(every) - set(held_out))
    if count is None or count >= len(pool):
        return set(pool)
    random.Random(f"distractors:{seed}").shuffle(pool)
    return set(pool[:count])


def _check_request(paragraphs: list[dict[str, Any]], questions: list[dict[str, Any]], langs: list[str],
                   families: list[str], corpus: str, distractors: int | None = None) -> None:
    """Raise ``ValueError`` for an unknown language, family or corpus, a negative distractor count, or rows missing a
    key (see build_tasks)."""
    check_languages(list(langs), XQUAD_LANGUAGES, key="langs")
    if not langs:
        raise ValueError("langs: give at least one XQuAD language")
    unknown = [f for f in families if f not in EVAL_FAMILIES]
    if unknown or not families:
        raise ValueError(f"families: unknown or empty {unknown or families}; choose from {list(EVAL_FAMILIES)}")
    if "cross" in families and "en" not in langs:
        raise ValueError("families: 'cross' pairs every language with English, so langs must include 'en'")
    _check_rows(paragraphs, _PARAGRAPH_KEYS, "paragraphs")
    _check_rows(questions, _QUESTION_KEYS, "questions")
    if corpus not in ("all", "test"):
        raise ValueError(f"corpus: expected 'all' or 'test', got {corpus!r}")
    if distractors is not None and distractors < 0:
        raise ValueError(f"distractors: expected a count >= 0 or None, got {distractors}")


def _held_out_tables(paragraphs: list[dict[str, Any]], questions: list[dict[str, Any]], langs: list[str]) -> tuple[
        dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, dict[str, tuple[str, str]]]]:
    """Per language: held-out paragraph id -> text, every paragraph id -> text, held-out question id ->
    (text, paragraph id); checked to be parallel across languages."""
    wanted = set(langs)
    passages: dict[str, dict[str, str]] = {lang: {} for lang in langs}
    every: dict[str, dict[str, str]] = {lang: {} for lang in langs}
    asked: dict[str, dict[str, tuple[str, str]]] = {lang: {} for lang in langs}
    for row in paragraphs:
        if row["lang"] in wanted:
            every[row["lang"]][row["id"]] = row["text"].strip()
            if row["split"] == HELDOUT_SPLIT:
                passages[row["lang"]][row["id"]] = row["text"].strip()
    for row in questions:
        if row["split"] == HELDOUT_SPLIT and row["lang"] in wanted:
            asked[row["lang"]][row["id"]] = (row["text"].strip(), row["paragraph_id"])
    _check_parallel(passages, asked, langs)
    for lang in langs:
        if set(every[lang]) != set(every[langs[0]]):
            raise ValueError(f"XQuAD is not parallel: paragraph ids of {lang!r} differ from {langs[0]!r}")
    return passages, every, asked


def _corpus(corpus_langs: Iterable[str], source: dict[str, dict[str, str]]) -> Dataset:
    """The paragraphs of ``corpus_langs`` from ``source`` (lang -> paragraph id -> text), in id order."""
    ids, texts = [], []
    for lang in corpus_langs:
        for pid, text in sorted(source[lang].items()):
            ids.append(_doc_id(lang, pid))
            texts.append(text)
    return Dataset.from_dict({"id": ids, "text": texts})


class _Splits:
    """Builds the mteb splits (corpus, queries, qrels) of one evaluation from the held-out tables."""

    def __init__(self, asked: dict[str, dict[str, tuple[str, str]]], qids: list[str],
                 family_corpus: dict[str, dict[str, str]]) -> None:
        self.asked, self.qids, self.family_corpus = asked, qids, family_corpus

    def make(self, query_lang: str, doc_langs: list[str], corpus_ds: Dataset | None = None) -> RetrievalSplitData:
        """Queries in ``query_lang`` against the ``doc_langs`` corpus (or ``corpus_ds``); each query's paragraph
        in every doc language is relevant."""
        queries = Dataset.from_dict({"id": [_query_id(query_lang, q) for q in self.qids],
                                     "text": [self.asked[query_lang][q][0] for q in self.qids]})
        qrels = {_query_id(query_lang, q): {_doc_id(d, self.asked[query_lang][q][1]): 1 for d in doc_langs}
                 for q in self.qids}
        return {
            "corpus": corpus_ds if corpus_ds is not None else _corpus(doc_langs, self.family_corpus),
            "queries": queries,
            "relevant_docs": qrels,
            "top_ranked": None,
        }


def _check_parallel(
    passages: dict[str, dict[str, str]], asked: dict[str, dict[str, tuple[str, str]]], langs: list[str]
) -> None:
    ref = langs[0]
    if not passages[ref] or not asked[ref]:
        raise ValueError(f"language {ref!r}: no held-out (split='test') paragraphs or questions")
    for lang in langs:
        for what, mine, theirs in (("paragraph", passages[lang], passages[ref]), ("question", asked[lang], asked[ref])):
            if set(mine) != set(theirs):
                only_here = sorted(set(mine) - set(theirs))[:5]
                only_ref = sorted(set(theirs) - set(mine))[:5]
                raise ValueError(
                    f"held-out XQuAD is not parallel: {what} ids of {lang!r} differ from {ref!r} "
                    f"(only in {lang!r}: {only_here}; only in {ref!r}: {only_ref}); re-run the xquad stage"
                )
        for qid, (_, pid) in asked[lang].items():
            if pid != asked[ref][qid][1]:
                raise ValueError(
                    f"held-out XQuAD is not parallel: question {qid!r} is answered by paragraph {pid!r} in "
                    f"{lang!r} but {asked[ref][qid][1]!r} in {ref!r}"
                )
            if pid not in passages[lang]:
                raise ValueError(f"question {qid!r} ({lang!r}) points to paragraph {pid!r}, not a held-out paragraph")


# ----------------------------------------------------------------------------------------------------------------
# Running and reporting
# ----------------------------------------------------------------------------------------------------------------



