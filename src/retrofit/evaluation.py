"""Retrieval evaluation on the held-out XQuAD split, run through mteb's own retrieval machinery.

Three task families are built from ``retrofit.xquad``'s tables (one mteb :class:`~mteb.abstasks.AbsTaskRetrieval`
per family, one mteb subset per language or language pair). Queries are always held-out (``split == "test"``)
questions:

- ``mono`` (task ``XQuADHeldoutMonoRetrieval``, subsets ``ar``, ``de``, ...): queries and corpus in one language;
  the corpus is every paragraph of that language (``corpus="all"``: the 160 training-pool paragraphs are
  distractors beside the 80 held-out ones) or only the held-out ones (``corpus="test"``).
- ``cross`` (task ``XQuADHeldoutCrossRetrieval``, subsets ``X-en`` and ``en-X`` for every ``X != en``): queries in
  the first language of the subset name, corpus (as for mono) in the second.
- ``pooled`` (task ``XQuADHeldoutPooledRetrieval``, subsets named by the *query* language): one multilingual
  corpus holding every language's held-out paragraphs, LAReQA-style; a query's relevant passages are its paragraph
  in *every* language, so each query has ``len(langs)`` relevant documents. Its Recall@10 can therefore not
  exceed ``10 / len(langs)`` once there are more than 10 languages, and nDCG@10 rewards putting translations of
  the right paragraph above other paragraphs in the query's own language.

Scores are mteb's (pytrec_eval) under its own keys: ``ndcg_at_10`` (the main score), ``recall_at_10`` and
``mrr_at_10``. :func:`evaluate_encoder` writes, under ``out_dir``:

- ``results/<task name>.json``: mteb's ``TaskResult`` for each family, every metric mteb computes;
- ``mteb_cache/``: the stage's own mteb ``ResultCache`` (never the shared ``~/.cache/mteb``, see below);
- ``metrics.json``: ``{"model", "main_score", "primary": {metric: value}, "primary_definition",
  "families": {family: {metric: value}}, "subsets": {family: {subset: {metric: value, "n_queries": int,
  "n_documents": int}}}, "max_seq_length": int, "per_query_check": {family: largest gap}}``. A family's value is
  the unweighted mean over its subsets (every subset has the same number of queries, since XQuAD is parallel);
  the **primary** metric is the unweighted mean of the mono and cross family means (:data:`PRIMARY_FAMILIES`),
  so every language weighs the same in each; pooled is reported beside it as a diagnostic;
- ``per_query.json``: ``{"ndcg_at_10": {family: {subset: {query id: nDCG@10}}}, "primary": {question id: u}}``,
  the values the bootstrap of :mod:`retrofit.stats` resamples (:func:`per_query_scores`,
  :func:`primary_per_question`); they reproduce mteb's subset scores to 1e-3 or the run fails
  (:func:`check_per_query`, whose largest gap is ``per_query_check``);
- ``table.md``: one table per metric, a row per language, columns mono / X->en / en->X / pooled;
- ``summary.json``: just ``primary`` and ``families`` (what ``dvc metrics show`` prints);
- ``timing.json``: wall-clock seconds per phase and encoding counts (kept out of ``metrics.json`` so that a
  metrics diff shows only scores).

Why a custom encoder and cache handling, rather than ``mteb.evaluate(SentenceTransformer(...))``:

- *Prompts.* multilingual-e5 needs ``"query: "`` before queries and ``"passage: "`` before passages.
  sentence-transformers 6 adds an empty ``"document"`` prompt to every model it loads, and mteb's
  ``SentenceTransformerEncoderWrapper`` looks prompts up by mteb's prompt type (``"document"``, never
  ``"passage"``), so the stock path silently encodes passages with *no* prefix. :class:`PromptCachedEncoder`
  resolves both prompts once (:func:`resolve_prompts`) and passes them explicitly to every ``encode`` call.
- *Speed.* The same texts recur across families (a German passage is in ``mono/de``, ``cross/en-de`` and the
  pooled corpus). :class:`PromptCachedEncoder` keeps every embedding in memory keyed by ``(prompt, text)``, and
  :func:`evaluate_encoder` encodes every unique text once, longest first, before mteb runs, so the mteb pass
  itself only scores.
- *Stale results.* mteb's default ``ResultCache`` (``~/.cache/mteb``) keys results by the model's card name,
  which for a fine-tuned model is often the base model's name; with mteb's default ``"only-missing"`` strategy
  a fine-tuned model can then silently be given the base model's scores. Here every run uses a cache inside
  ``out_dir``, ``overwrite_strategy="always"`` and a name from the caller plus a revision hashed from the weights.

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
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
from datasets import Dataset
from mteb.abstasks import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ScoringFunction
from mteb.types import PromptType
from tqdm.auto import tqdm

from retrofit.config import ParamsError
from retrofit.jsonl import write_json
from retrofit.languages import XQUAD_LANGUAGES, check_languages
from retrofit.models import check_model_dir
from retrofit.runtime import fingerprint_model_dir, inference_autocast, runtime_choices
from retrofit.trunk import TrunkCache, enable_trunk_cache
from retrofit.unpad import enable_unpadding

if TYPE_CHECKING:
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.results import TaskResult
    from mteb.timing import TimingStack
    from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

#: The task families, in the order they appear in metrics and tables.
FAMILIES: tuple[str, ...] = ("mono", "cross", "pooled")

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

_SPLIT = "test"
_PARAGRAPH_KEYS = ("id", "lang", "text", "split")
_QUESTION_KEYS = ("id", "lang", "paragraph_id", "text", "split")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
        self.dataset = {subset: {_SPLIT: dict(split)} for subset, split in self._splits.items()}  # type: ignore[misc]
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
        eval_splits=[_SPLIT],
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
) -> list[XQuADRetrievalTask]:
    """Build the mteb retrieval tasks for the requested families from ``retrofit.xquad``'s tables.

    Queries come only from ``split == "test"`` rows (held-out articles). With ``corpus="all"`` the mono and cross
    corpora hold *every* paragraph of the language (240 per language): the training-pool paragraphs serve as
    distractors, which gives the families headroom that an 80-paragraph corpus lacks (the base model scores 96 on
    that). With ``corpus="test"`` they hold the held-out paragraphs only. The pooled corpus is always the held-out
    paragraphs of every language. Unsampled paragraphs always stay in as distractors.

    Args:
        paragraphs: Rows of ``paragraphs.jsonl`` (``id``, ``lang``, ``text``, ``split``; schema in
            ``retrofit.xquad``).
        questions: Rows of ``questions.jsonl`` (``id``, ``lang``, ``paragraph_id``, ``text``, ``split``).
        langs: ISO 639-1 codes, a subset of the XQuAD languages; ``cross`` needs ``"en"``.
        families: Any of ``"mono"``, ``"cross"``, ``"pooled"``; tasks come back in :data:`FAMILIES` order.
        max_queries_per_lang: Cap on questions per language (the same question ids in every language, chosen by
            :func:`select_question_ids`); ``None`` keeps all.
        seed: Query subsampling seed (``evaluate.query_seed``; also handed to mteb).
        corpus: ``"all"`` or ``"test"``: which paragraphs form the mono and cross corpora (see above).

    Returns:
        One task per requested family.

    Raises:
        ValueError: An unknown family or language, ``cross`` without English, a row missing a key, no held-out
            rows for a language, or languages that are not parallel (different paragraph or question ids, or a
            question answered by different paragraphs).
    """
    check_languages(list(langs), XQUAD_LANGUAGES, key="langs")
    if not langs:
        raise ValueError("langs: give at least one XQuAD language")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families: unknown or empty {unknown or families}; choose from {list(FAMILIES)}")
    if "cross" in families and "en" not in langs:
        raise ValueError("families: 'cross' pairs every language with English, so langs must include 'en'")
    _check_rows(paragraphs, _PARAGRAPH_KEYS, "paragraphs")
    _check_rows(questions, _QUESTION_KEYS, "questions")

    if corpus not in ("all", "test"):
        raise ValueError(f"corpus: expected 'all' or 'test', got {corpus!r}")
    wanted = set(langs)
    passages: dict[str, dict[str, str]] = {lang: {} for lang in langs}  # lang -> held-out paragraph id -> text
    every: dict[str, dict[str, str]] = {lang: {} for lang in langs}  # lang -> paragraph id -> text, both splits
    asked: dict[str, dict[str, tuple[str, str]]] = {lang: {} for lang in langs}  # lang -> qid -> (text, pid)
    for row in paragraphs:
        if row["lang"] in wanted:
            every[row["lang"]][row["id"]] = row["text"].strip()
            if row["split"] == _SPLIT:
                passages[row["lang"]][row["id"]] = row["text"].strip()
    for row in questions:
        if row["split"] == _SPLIT and row["lang"] in wanted:
            asked[row["lang"]][row["id"]] = (row["text"].strip(), row["paragraph_id"])
    _check_parallel(passages, asked, langs)
    for lang in langs:
        if set(every[lang]) != set(every[langs[0]]):
            raise ValueError(f"XQuAD is not parallel: paragraph ids of {lang!r} differ from {langs[0]!r}")
    family_corpus = every if corpus == "all" else passages

    ref = langs[0]
    qids = select_question_ids(asked[ref], max_queries_per_lang, seed)
    log.info(
        "XQuAD: %d held-out paragraphs (%d in the mono/cross corpus) and %d held-out questions per language; "
        "evaluating %d questions per language",
        len(passages[ref]), len(family_corpus[ref]), len(asked[ref]), len(qids),
    )

    def corpus_of(corpus_langs: Iterable[str], source: dict[str, dict[str, str]]) -> Dataset:
        ids, texts = [], []
        for lang in corpus_langs:
            for pid, text in sorted(source[lang].items()):
                ids.append(_doc_id(lang, pid))
                texts.append(text)
        return Dataset.from_dict({"id": ids, "text": texts})

    def queries(lang: str) -> Dataset:
        return Dataset.from_dict({"id": [_query_id(lang, q) for q in qids], "text": [asked[lang][q][0] for q in qids]})

    def qrels(query_lang: str, doc_langs: Iterable[str]) -> dict[str, dict[str, int]]:
        doc_langs = list(doc_langs)
        return {
            _query_id(query_lang, q): {_doc_id(d, asked[query_lang][q][1]): 1 for d in doc_langs} for q in qids
        }

    def make_split(query_lang: str, doc_langs: list[str], corpus_ds: Dataset | None = None) -> RetrievalSplitData:
        return {
            "corpus": corpus_ds if corpus_ds is not None else corpus_of(doc_langs, family_corpus),
            "queries": queries(query_lang),
            "relevant_docs": qrels(query_lang, doc_langs),
            "top_ranked": None,
        }

    tasks = []
    for family in FAMILIES:
        if family not in families:
            continue
        splits: dict[str, RetrievalSplitData] = {}
        if family == "mono":
            splits = {lang: make_split(lang, [lang]) for lang in langs}
        elif family == "cross":
            for lang in langs:
                if lang != "en":
                    splits[f"{lang}-en"] = make_split(lang, ["en"])
                    splits[f"en-{lang}"] = make_split("en", [lang])
            if not splits:
                raise ValueError("families: 'cross' needs at least one language besides 'en'")
        else:
            pooled = corpus_of(langs, passages)
            splits = {lang: make_split(lang, list(langs), pooled) for lang in langs}
        tasks.append(_make_task(family, list(langs), splits, seed))
    return tasks


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
# Encoder
# ----------------------------------------------------------------------------------------------------------------


class TextEncoder(Protocol):
    """What :class:`PromptCachedEncoder` needs from a model: a ``SentenceTransformer`` satisfies it."""

    prompts: dict[str, str]

    def encode(self, inputs: list[str], *, prompt: str, batch_size: int, show_progress_bar: bool) -> Any:
        """Embed ``prompt + text`` for each text; returns an array-like of shape ``(len(inputs), dim)``."""
        ...


def resolve_prompts(prompts: Mapping[str, str | None] | None) -> tuple[str, str]:
    """Pick the query and passage prompts from a sentence-transformers ``prompts`` dict.

    The passage prompt is the first *non-empty* one among ``"document"``, ``"passage"`` and ``"corpus"``:
    sentence-transformers 6 adds ``"document": ""`` to every model it loads, which must not hide a saved
    ``"passage": "passage: "``.

    Args:
        prompts: The model's ``prompts`` (may be ``None`` or empty).

    Returns:
        ``(query_prompt, passage_prompt)``; ``""`` where the model has none.
    """
    prompts = prompts or {}
    query = prompts.get("query") or ""
    passage = next((p for key in ("document", "passage", "corpus") if (p := prompts.get(key))), "")
    if bool(query) != bool(passage):
        log.warning("model prompts are one-sided (query=%r, passage=%r); check the model config", query, passage)
    return query, passage


class PromptCachedEncoder(AbsEncoder):
    """mteb encoder around a sentence-transformers model: explicit e5 prompts and an in-memory embedding cache.

    Every text is embedded at most once per instance: embeddings are kept keyed by ``(prompt, text)``, so the
    mono, cross and pooled subsets share them. ``prompt_type=None`` (mteb's symmetric tasks) uses the query
    prompt, as the e5 authors recommend.

    Attributes:
        model: The wrapped model.
        query_prompt: Prepended to queries.
        passage_prompt: Prepended to passages.
        trunk: The model's frozen-trunk cache, when :func:`load_encoder` enabled one.
        n_encoded: Texts actually passed to the model so far.
        n_requested: Texts requested by mteb so far (hits plus misses).
    """

    def __init__(
        self,
        model: TextEncoder,
        meta: ModelMeta,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = True,
        bf16: bool = False,
        trunk: TrunkCache | None = None,
    ) -> None:
        """Wrap ``model``.

        Args:
            model: A loaded ``SentenceTransformer`` (or anything with its ``prompts`` and ``encode``).
            meta: The mteb metadata results are filed under; its name and revision must identify the weights.
            batch_size: Texts per forward pass.
            show_progress_bar: Show a tqdm bar while encoding.
            bf16: Encode under bf16 autocast (see :func:`retrofit.runtime.inference_autocast`).
            trunk: The frozen-trunk cache :func:`~retrofit.trunk.enable_trunk_cache` put on ``model``, if any (its
                hit counts go into ``timing.json``).
        """
        self.model = model
        self.bf16 = bf16
        self.mteb_model_meta = meta
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.query_prompt, self.passage_prompt = resolve_prompts(getattr(model, "prompts", None))
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.trunk = trunk
        self.n_encoded = 0
        self.n_requested = 0

    def prompt_for(self, prompt_type: PromptType | None) -> str:
        """The prompt prepended for ``prompt_type`` (the query prompt for ``None``)."""
        return self.passage_prompt if prompt_type == PromptType.document else self.query_prompt

    def precompute(self, texts: Iterable[str], prompt_type: PromptType) -> int:
        """Embed the texts not cached yet, longest first (little padding per batch), with a progress bar.

        Args:
            texts: Texts to embed.
            prompt_type: Query or document.

        Returns:
            How many texts were newly embedded.
        """
        prompt = self.prompt_for(prompt_type)
        todo = sorted({t for t in texts if (prompt, t) not in self._cache}, key=lambda t: (-len(t), t))
        if not todo:
            return 0
        label = "passages" if prompt_type == PromptType.document else "queries"
        with tqdm(total=len(todo), desc=f"Encoding {label}", unit="text", disable=not self.show_progress_bar) as bar:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                with inference_autocast(self.bf16, str(getattr(self.model, "device", "cpu"))):
                    emb = self.model.encode(chunk, prompt=prompt, batch_size=len(chunk), show_progress_bar=False)
                emb = np.asarray(emb, dtype=np.float32)  # (len(chunk), dim)
                if emb.shape[0] != len(chunk):
                    raise RuntimeError(f"model returned {emb.shape[0]} embeddings for {len(chunk)} texts")
                for text, row in zip(chunk, emb, strict=True):
                    self._cache[(prompt, text)] = row
                bar.update(len(chunk))
        self.n_encoded += len(todo)
        return len(todo)

    def encode_texts(self, texts: Sequence[str], prompt_type: PromptType | None) -> np.ndarray:
        """Embeddings for ``texts`` (cached ones reused), shape ``(len(texts), dim)``."""
        prompt = self.prompt_for(prompt_type)
        self.n_requested += len(texts)
        self.precompute(texts, prompt_type if prompt_type is not None else PromptType.query)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[(prompt, t)] for t in texts])

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """mteb's ``EncoderProtocol.encode``: embed the ``text`` column of mteb's dataloader."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.encode_texts(texts, prompt_type)


def load_encoder(
    model_path: Path,
    model_name: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    bf16: bool = False,
    max_seq_length: int | None = None,
    trunk_layers: int = 0,
    cache_dir: str | Path | None = None,
) -> PromptCachedEncoder:
    """Load a local sentence-transformers model (no hub calls) and wrap it for mteb.

    A BERT-family model encodes with the padding-free forward (:mod:`retrofit.unpad`) whatever ``trunk_layers``
    says, so the frozen-trunk cache (:mod:`retrofit.trunk`) changes the time an evaluation takes, never its numbers.

    Args:
        model_path: A sentence-transformers model directory.
        model_name: The name results are filed under (letters, digits, ``.``, ``_``, ``-``); mteb sees
            ``retrofit/<model_name>`` with the weights' content hash as the revision.
        batch_size: Texts per forward pass.
        device: torch device; ``None`` lets sentence-transformers choose.
        bf16: Encode under bf16 autocast.
        max_seq_length: Tokens kept per text, overriding the length saved with the model (``evaluate.max_seq_length``):
            the train stage saves its training length (e.g. 128), and every model must be scored under one
            condition. ``None`` keeps the saved length.
        trunk_layers: Lower encoder layers served from the frozen-trunk cache (``evaluate.trunk_layers``); 0 off.
        cache_dir: The cache root (``base.cache_dir``); needed when ``trunk_layers`` is set.

    Returns:
        The wrapped model.

    Raises:
        AssetError: ``model_path`` is not a sentence-transformers directory with weights.
        ValueError: ``model_name`` has characters that are not safe in a path.
        ParamsError: ``max_seq_length`` exceeds the model's position embeddings.
    """
    from sentence_transformers import SentenceTransformer

    model_path = Path(model_path)
    check_model_dir(model_path)
    if not _MODEL_NAME_RE.match(model_name):
        raise ValueError(f"model_name {model_name!r}: use letters, digits, '.', '_' and '-' only")
    model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
    if max_seq_length is not None:
        limit = _position_limit(model)
        if limit is not None and max_seq_length > limit:
            raise ParamsError(
                f"evaluate.max_seq_length {max_seq_length} exceeds what {model_path} can encode ({limit} tokens: "
                "its position embeddings); lower it"
            )
        model.max_seq_length = max_seq_length
    meta = ModelMeta.create_empty(
        overwrites={
            "name": f"retrofit/{model_name}",
            "revision": fingerprint_model_dir(model_path)[:16],
            "embed_dim": model.get_embedding_dimension(),
            "max_tokens": model.max_seq_length,
            "similarity_fn_name": ScoringFunction.COSINE,
            "framework": ["Sentence Transformers", "PyTorch"],
        }
    )
    trunk = None
    if trunk_layers:
        if cache_dir is None:
            raise ValueError("load_encoder: trunk_layers needs a cache_dir")
        trunk = enable_trunk_cache(model, cache_dir, trunk_layers)
    if trunk is None:
        enable_unpadding(model)
    encoder = PromptCachedEncoder(model, meta, batch_size=batch_size, bf16=bf16, trunk=trunk)
    log.info(
        "loaded %s as %s@%s; query prompt %r, passage prompt %r; max_seq_length %d",
        model_path, meta.name, meta.revision, encoder.query_prompt, encoder.passage_prompt, model.max_seq_length,
    )
    return encoder


def _position_limit(model: Any) -> int | None:
    """Tokens a transformer can position: ``max_position_embeddings``, less XLM-R's padding offset."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if config is None or getattr(config, "max_position_embeddings", None) is None:
        return None
    offset = config.pad_token_id + 1 if getattr(config, "model_type", "") in ("xlm-roberta", "roberta") else 0
    return int(config.max_position_embeddings) - offset


# ----------------------------------------------------------------------------------------------------------------
# Running and reporting
# ----------------------------------------------------------------------------------------------------------------


def evaluate_model(
    model_path: Path,
    tasks: Sequence[XQuADRetrievalTask],
    out_dir: Path,
    model_name: str,
    batch_size: int = 32,
    device: str | None = None,
    bf16: bool = False,
    max_seq_length: int | None = None,
) -> dict[str, Any]:
    """Evaluate a local sentence-transformers model on the tasks and write the report files.

    Args:
        model_path: A sentence-transformers model directory (its ``prompts`` are applied, see
            :func:`resolve_prompts`).
        tasks: From :func:`build_tasks`.
        out_dir: Output directory (created); gets ``metrics.json``, ``table.md``, ``timing.json``, ``results/``
            and ``mteb_cache/`` (see the module docstring).
        model_name: Identifies this model in mteb's results; unique per evaluated model.
        batch_size: Texts per forward pass.
        device: torch device; ``None`` lets sentence-transformers choose.
        bf16: Encode under bf16 autocast.
        max_seq_length: Tokens per text for every model alike (see :func:`load_encoder`).

    Returns:
        The content of ``metrics.json`` plus ``"timing"`` (the content of ``timing.json``).
    """
    start = time.perf_counter()
    encoder = load_encoder(
        Path(model_path), model_name, batch_size=batch_size, device=device, bf16=bf16, max_seq_length=max_seq_length
    )
    loaded = time.perf_counter() - start
    report = evaluate_encoder(encoder, tasks, Path(out_dir))
    report["timing"]["load_model_s"] = round(loaded, 3)
    report["timing"]["total_s"] = round(time.perf_counter() - start, 3)
    write_json(Path(out_dir) / "timing.json", report["timing"])
    return report


def evaluate_encoder(encoder: AbsEncoder, tasks: Sequence[XQuADRetrievalTask], out_dir: Path) -> dict[str, Any]:
    """Run ``mteb.evaluate`` with a fresh cache policy and write the report files (see :func:`evaluate_model`).

    Args:
        encoder: Any mteb encoder whose ``mteb_model_meta`` names the model; a :class:`PromptCachedEncoder`
            first embeds every unique text once.
        tasks: From :func:`build_tasks` (at most one per family).
        out_dir: Output directory (created).

    Returns:
        The content of ``metrics.json`` plus ``"timing"``.

    Raises:
        ValueError: Two tasks of one family, or no tasks.
        RuntimeError: mteb returned no result for a task.
    """
    import mteb

    families = [task.family for task in tasks]
    if not tasks or len(set(families)) != len(families):
        raise ValueError(f"tasks: give at most one task per family, got families {families}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for task in tasks:
        # loaded before mteb runs, so mteb neither reloads nor unloads them between families
        task.load_data()
    if isinstance(encoder, PromptCachedEncoder):
        for prompt_type in (PromptType.document, PromptType.query):
            encoder.precompute([t for task in tasks for t in task.texts_by_prompt_type()[prompt_type]], prompt_type)
    encoded = time.perf_counter()

    result = mteb.evaluate(
        encoder,
        list(tasks),
        cache=mteb.ResultCache(out_dir / "mteb_cache"),
        overwrite_strategy="always",
        encode_kwargs={"batch_size": getattr(encoder, "batch_size", 32), "show_progress_bar": False},
        co2_tracker=False,
        raise_error=True,
    )
    scored = time.perf_counter()

    by_name = {r.task_name: r for r in result.task_results}
    results_dir = out_dir / "results"
    results_dir.mkdir(exist_ok=True)
    per_subset: dict[str, dict[str, dict[str, float | int]]] = {}
    for task in tasks:
        name = task.metadata.name
        if name not in by_name:
            raise RuntimeError(f"mteb returned no result for {name}; exceptions: {result.exceptions}")
        task_result: TaskResult = by_name[name]
        task_result.to_disk(results_dir / f"{name}.json")
        per_subset[task.family] = _subset_metrics(task_result, task.subset_sizes())

    metrics = summarize(per_subset, str(encoder.mteb_model_meta.name))
    if isinstance(encoder, PromptCachedEncoder):
        per_query = {task.family: per_query_scores(task, encoder) for task in tasks}
        metrics["max_seq_length"] = getattr(encoder.model, "max_seq_length", None)
        metrics["per_query_check"] = {
            task.family: check_per_query(task, by_name[task.metadata.name], per_query[task.family]) for task in tasks
        }
        primary = primary_per_question(per_query)
        write_json(out_dir / "per_query.json", {"ndcg_at_10": per_query, "primary": primary})
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "summary.json", {k: metrics[k] for k in ("primary", "families") if k in metrics})
    (out_dir / "table.md").write_text(render_table(metrics), encoding="utf-8")

    timing: dict[str, Any] = {
        "encode_s": round(encoded - start, 3),
        "mteb_s": round(scored - encoded, 3),
        "total_s": round(time.perf_counter() - start, 3),
    }
    if isinstance(encoder, PromptCachedEncoder):
        timing["texts_encoded"] = encoder.n_encoded
        timing["texts_requested_by_mteb"] = encoder.n_requested
        timing["runtime"] = runtime_choices()
        if encoder.trunk is not None:
            timing["trunk_cache"] = {"layers": encoder.trunk.depth, "hits": encoder.trunk.hits,
                                     "misses": encoder.trunk.misses}
    write_json(out_dir / "timing.json", timing)
    log.info(
        "evaluated %s: primary %s %s; %s",
        metrics["model"], METRICS[0], (metrics["primary"] or {}).get(METRICS[0]), json.dumps(timing),
    )
    return {**metrics, "timing": timing}


def per_query_scores(task: Any, encoder: PromptCachedEncoder) -> dict[str, dict[str, float]]:
    """The per-query values behind a loaded mteb task's main score, from the encoder's cached embeddings.

    The scores are computed on mteb's own path, so that near-ties (a weak model's embeddings can be almost
    collinear) rank exactly as mteb ranked them: the encoder's ``similarity`` on the embeddings mteb received, in the
    shapes mteb used, then ``torch.topk`` as mteb does. Retrieval: each query's nDCG@10 over its subset's whole
    corpus, from ``pytrec_eval`` (``ndcg_cut.10``, mteb's scorer, with trec_eval's tie order). BitextMining: the
    index of each ``sentence1``'s nearest ``sentence2``, searched in mteb's chunks of 100 (mteb's F1 follows from
    these, :func:`retrofit.stats.bitext_f1`). Nothing is encoded again after ``mteb.evaluate``.

    Args:
        task: An mteb task with its data loaded (retrieval data in mteb's v2 layout).
        encoder: The encoder that ran the task.

    Returns:
        ``{subset: {query id (bitext: sentence index): value}}``.
    """
    import pytrec_eval
    import torch

    split = task.eval_splits[0]
    out: dict[str, dict[str, float]] = {}
    for subset in task.hf_subsets:
        data = task.dataset[subset][split]
        if task.metadata.type == "BitextMining":
            left = encoder.encode_texts(list(data["sentence1"]), None)  # (n, dim)
            right = encoder.encode_texts(list(data["sentence2"]), None)  # (n, dim)
            nearest: dict[str, float] = {}
            for start in range(0, len(left), _MTEB_BITEXT_QUERY_CHUNK):
                sims = torch.as_tensor(encoder.similarity(left[start : start + _MTEB_BITEXT_QUERY_CHUNK], right))
                top = torch.topk(sims, 1, dim=1, largest=True, sorted=False).indices[:, 0].tolist()
                nearest.update({str(start + i): int(j) for i, j in enumerate(top)})
            out[subset] = nearest
            continue
        queries, corpus, qrels = data["queries"], data["corpus"], data["relevant_docs"]
        doc_texts = [
            (f"{t} {x}".strip() if t else x)
            for t, x in zip(corpus["title"] if "title" in corpus.column_names else [""] * len(corpus),
                            corpus["text"], strict=True)
        ]
        q = encoder.encode_texts(list(queries["text"]), PromptType.query)  # (n_queries, dim)
        d = encoder.encode_texts(doc_texts, PromptType.document)  # (n_docs, dim)
        doc_ids = list(corpus["id"])
        sims = torch.as_tensor(encoder.similarity(q, d))  # (n_queries, n_docs)
        # nDCG@10 only reads the top 10 (and documents tied with them), which the top 100 always hold
        values, index = torch.topk(sims, min(_TOP_FOR_NDCG10, sims.shape[1]), dim=1, largest=True)
        run = {
            str(qid): {doc_ids[j]: float(v) for j, v in zip(idx, val, strict=True)}
            for qid, idx, val in zip(queries["id"], index.tolist(), values.tolist(), strict=True)
        }
        positives = {str(qid): {doc: int(g) for doc, g in rel.items()} for qid, rel in qrels.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(positives, {"ndcg_cut.10"})
        # mteb averages over the queries pytrec_eval scores: those with a relevant document
        out[subset] = {qid: float(v["ndcg_cut_10"]) for qid, v in evaluator.evaluate(run).items()}
    return out


_MTEB_BITEXT_QUERY_CHUNK = 100  # mteb's BitextMiningEvaluator query_chunk_size
_TOP_FOR_NDCG10 = 100


def check_per_query(task: Any, result: TaskResult, per_query: Mapping[str, Mapping[str, float]]) -> float:
    """Check that per-query values reproduce mteb's own subset scores; returns the largest absolute gap.

    The bootstrap intervals rest on the per-query values, so they must describe exactly what mteb scored.

    Raises:
        RuntimeError: A subset's recomputed score differs from mteb's by more than 1e-3.
    """
    from retrofit.stats import task_score

    statistic = "bitext_f1" if task.metadata.type == "BitextMining" else "mean"
    scores = {e["hf_subset"]: e for split in result.scores.values() for e in split}
    main = task.metadata.main_score if statistic == "bitext_f1" else METRICS[0]
    gap = 0.0
    for subset, values in per_query.items():
        ours = task_score({subset: values}, statistic)
        theirs = float(scores[subset][main])
        gap = max(gap, abs(ours - theirs))
        if abs(ours - theirs) > 1e-3:
            raise RuntimeError(
                f"{task.metadata.name}/{subset}: per-query {main} averages to {ours:.5f}, mteb reports {theirs:.5f}; "
                "the bootstrap would describe a different evaluation"
            )
    return gap


def primary_per_question(per_query: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """Each held-out question's contribution to the primary metric.

    Every mono and cross subset asks the same question ids (XQuAD is parallel), so the primary metric, the mean of
    the mono and cross family means, equals the mean over questions of ``u(q)`` = the mean over families of the
    family's mean over subsets of ``q``'s nDCG@10. The paired bootstrap resamples these ``u(q)``.

    Args:
        per_query: ``{family: {subset: {query id: nDCG@10}}}``, query ids as built by :func:`build_tasks`.

    Returns:
        ``{question id: u}`` (empty when neither mono nor cross was run).
    """
    families = [f for f in PRIMARY_FAMILIES if f in per_query]
    units: dict[str, list[float]] = {}
    for family in families:
        by_question: dict[str, list[float]] = {}
        for values in per_query[family].values():
            for query_id, value in values.items():
                by_question.setdefault(query_id.split(":q:", 1)[1], []).append(value)
        for question, vals in by_question.items():
            units.setdefault(question, []).append(float(np.mean(vals)))
    return {q: float(np.mean(v)) for q, v in sorted(units.items()) if len(v) == len(families)}


def _subset_metrics(task_result: TaskResult, sizes: dict[str, dict[str, int]]) -> dict[str, dict[str, float | int]]:
    scores = {entry["hf_subset"]: entry for entry in task_result.scores[_SPLIT]}
    missing = sorted(set(sizes) - set(scores))
    if missing:
        raise RuntimeError(f"{task_result.task_name}: mteb returned no scores for subset(s) {missing}")
    return {subset: {**{m: float(scores[subset][m]) for m in METRICS}, **sizes[subset]} for subset in sizes}


def summarize(per_subset: Mapping[str, Mapping[str, Mapping[str, float | int]]], model: str) -> dict[str, Any]:
    """Family means and the primary metric from per-subset scores.

    Args:
        per_subset: ``{family: {subset: {metric: value, ...}}}`` for the families that were run.
        model: The model's name, recorded in the output.

    Returns:
        The ``metrics.json`` document (schema in the module docstring); ``primary`` is ``None`` when neither
        mono nor cross was run.
    """
    families = {
        family: {m: float(np.mean([s[m] for s in subsets.values()])) for m in METRICS}
        for family, subsets in per_subset.items()
    }
    used = [f for f in PRIMARY_FAMILIES if f in families]
    primary = {m: float(np.mean([families[f][m] for f in used])) for m in METRICS} if used else None
    return {
        "model": model,
        "main_score": METRICS[0],
        "primary": primary,
        "primary_definition": "unweighted mean of the " + " and ".join(used) + " family means" if used else None,
        "families": families,
        "subsets": {family: {s: dict(v) for s, v in subsets.items()} for family, subsets in per_subset.items()},
    }


def render_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown report: one table per metric, a row per language, columns mono / X->en / en->X / pooled.

    Args:
        metrics: The ``metrics.json`` document from :func:`summarize`.

    Returns:
        Markdown text; scores are shown x100 with one decimal, ``-`` where a cell does not apply or was not run.
    """
    subsets = metrics["subsets"]
    langs: list[str] = []
    for family in ("mono", "pooled"):
        langs += [s for s in subsets.get(family, {}) if s not in langs]
    for pair in subsets.get("cross", {}):
        langs += [lang for lang in pair.split("-") if lang not in langs]
    columns = [
        ("mono", "mono", lambda lang: lang),
        ("cross", "X→en", lambda lang: f"{lang}-en"),
        ("cross", "en→X", lambda lang: f"en-{lang}"),
        ("pooled", "pooled", lambda lang: lang),
    ]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [
        f"# Held-out XQuAD retrieval: {metrics['model']}",
        "",
        "Primary: " + ", ".join(f"{METRIC_LABELS[m]} {cell((metrics['primary'] or {}).get(m))}" for m in METRICS)
        + f" ({metrics['primary_definition']}; pooled is a diagnostic family, outside the primary metric).",
        "",
        "Scores x100. mono: query and corpus in language X. X→en: X queries, English corpus. en→X: English "
        "queries, X corpus. pooled: X queries against every language's passages at once, all translations of the "
        "right paragraph relevant.",
    ]
    for metric in METRICS:
        lines += ["", f"## {METRIC_LABELS[metric]}", "", "| lang | " + " | ".join(c[1] for c in columns) + " |"]
        lines.append("|---|" + "---:|" * len(columns))
        for lang in langs:
            row = [cell(subsets.get(fam, {}).get(key(lang), {}).get(metric)) for fam, _, key in columns]
            lines.append(f"| {lang} | " + " | ".join(row) + " |")
        means = []
        for fam, _, key in columns:
            values = [subsets[fam][key(lang)][metric] for lang in langs if key(lang) in subsets.get(fam, {})]
            means.append(cell(float(np.mean(values)) if values else None))
        lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"
