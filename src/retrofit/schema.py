"""The project's shared vocabulary: languages, task types, row sources, evaluation families and the row contract.

This module is a leaf (it imports nothing from the project), so every other module, including
:mod:`retrofit.config`, can take its names from here without an import cycle. Each name is defined here once.
The contract of each artifact's rows (a :class:`RowSchema`) stays in the module that writes the artifact, beside
its documented schema: ``TRAIN_ROW`` in :mod:`retrofit.mine`, ``PAIR_ROW`` in :mod:`retrofit.filter.dedupe` and
so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Languages
# ---------------------------------------------------------------------------------------------------------------
# A language is supported when the project knows where its passages come from. The embedded default uses the
# 12 XQuAD languages; the paper-scale profile adds languages whose passages come from Wikipedia on the hub.
# Codes are ISO 639-1 throughout the project; the tables map them to each dataset's own suffix.

#: The 12 XQuAD languages (parallel, held-out evaluation and generation source).
XQUAD_LANGUAGES: tuple[str, ...] = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")

#: ISO 639-1 -> NTREX-128 file suffix (``newstest2019-ref.<suffix>.txt``).
NTREX_CODES: dict[str, str] = {
    "ar": "arb", "bn": "ben", "bg": "bul", "de": "deu", "el": "ell", "en": "eng-US", "fa": "fas", "fr": "fra",
    "he": "heb", "hi": "hin", "id": "ind", "it": "ita", "ja": "jpn", "ko": "kor", "nl": "nld", "pl": "pol",
    "pt": "por", "ro": "ron", "ru": "rus", "es": "spa", "sw": "swa", "th": "tha", "tr": "tur", "ur": "urd",
    "vi": "vie", "zh": "zho-CN",
}

#: Every language the pipeline can generate for (it has at least one passage source).
SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(sorted(set(XQUAD_LANGUAGES) | set(NTREX_CODES)))


def check_languages(langs: list[str], allowed: tuple[str, ...] = SUPPORTED_LANGUAGES, key: str = "languages") -> None:
    """Raise ``ValueError`` naming ``key`` if any code in ``langs`` is unsupported or repeated."""
    bad = [lang for lang in langs if lang not in allowed]
    if bad:
        raise ValueError(f"{key}: unsupported language code(s) {bad}; supported: {', '.join(allowed)}")
    dupes = sorted({lang for lang in langs if langs.count(lang) > 1})
    if dupes:
        raise ValueError(f"{key}: repeated language code(s) {dupes}")


# ---------------------------------------------------------------------------------------------------------------
# Task types and row sources
# ---------------------------------------------------------------------------------------------------------------

#: The task types the generator writes (``short_query`` is the paper's task); prompts in
#: :data:`retrofit.generate.prompts.TASK_PROMPTS`.
GENERATED_TASK_TYPES: tuple[str, ...] = ("short_query", "long_query", "title", "paraphrase")

#: English task dataset (its name in ``assets/sources.json``) -> the task type of its rows.
ENGLISH_TASK_TYPES: dict[str, str] = {
    "qed_nq": "qa",
    "snli_via_esnli": "nli",
    "fever_symmetric": "fact",
    "citation_integrity": "sci_claim",
    "scitldr": "title",
    "stsb_multi_mt": "sts",
}

#: The English task sources, in output order.
ENGLISH_SOURCES: tuple[str, ...] = tuple(ENGLISH_TASK_TYPES)

#: Task types whose two sides are the same kind of text (NLI, STS, claim/evidence, paraphrase): E5 puts ``query:`` on
#: both sides of these (Wang et al., "Text Embeddings by Weakly-Supervised Contrastive Pre-training", arXiv 2212.03533).
SYMMETRIC_TASK_TYPES: frozenset[str] = frozenset({"nli", "sts", "fact", "paraphrase"})

#: ``source`` of the generated rows (``retrofit.filter.dedupe``'s output keeps English rows' dataset names).
SYNTHETIC = "synthetic"

#: ``source`` of the oracle rows: human XQuAD questions in place of generated ones (:mod:`retrofit.data.oracle`).
ORACLE = "oracle"

#: ``source`` of the human rows: every training-pool XQuAD question with its paragraph (:func:`retrofit.data.oracle.
#: human_rows`), the scale study's stand-in for generated queries at sizes the CPU cannot generate.
HUMAN = "human"

#: ``source`` of the cross-lingual twins: a generated query with the English version of its passage
#: (:mod:`retrofit.data.cross_lingual`).
CROSS = "cross"

# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------

#: The held-out XQuAD task families, in the order they appear in metrics and tables.
EVAL_FAMILIES: tuple[str, ...] = ("mono", "cross", "pooled")

#: The official mteb tasks that :mod:`retrofit.eval.official` runs on pinned local data (it checks that it
#: serves each).
OFFICIAL_TASK_NAMES: tuple[str, ...] = ("Tatoeba", "BelebeleRetrieval", "LegalBenchCorporateLobbying", "XQuADRetrieval")

#: The tasks beyond retrieval and beyond the training languages that :mod:`retrofit.eval.beyond` runs (it checks
#: that it serves each).
BEYOND_TASK_NAMES: tuple[str, ...] = ("Tatoeba (unseen)", "SIB200Classification", "SIB200ClusteringS2S",
                                      "STSBenchmarkMultilingualSTS", "KorSTS", "JSTS")

#: ISO 639-1 codes of the languages those tasks hold (``evaluate.beyond.languages`` picks among them).
BEYOND_LANGUAGES: tuple[str, ...] = ("am", "ar", "bn", "de", "el", "en", "es", "fa", "fr", "ha", "he", "hi", "id", "it",
                                     "ja", "ko", "nl", "pl", "pt", "ro", "ru", "sw", "th", "tr", "uk", "ur", "vi",
                                     "yo", "zh")

# ---------------------------------------------------------------------------------------------------------------
# The row contract
# ---------------------------------------------------------------------------------------------------------------

_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object", type(None): "null"}


@dataclass(frozen=True)
class RowSchema:
    """The contract of one JSONL artifact's rows: required fields and their JSON types.

    Attributes:
        name: What a row is, for messages ("mined training row").
        stage: The stage that writes the file, for messages ("run the `mine` stage").
        fields: ``{field: allowed types}``; ``type(None)`` among them makes the field nullable. Fields not listed
            may appear and are not checked.
        nonempty: Fields whose string value must not be blank.
    """

    name: str
    stage: str
    fields: Mapping[str, tuple[type, ...]]
    nonempty: tuple[str, ...] = field(default=())

    def problem(self, row: Any) -> str | None:
        """What is wrong with ``row`` under this schema, or ``None``."""
        if not isinstance(row, dict):
            return f"a {self.name} must be a JSON object, got {_JSON_TYPES.get(type(row), type(row).__name__)}"
        for name, types in self.fields.items():
            if name not in row:
                return f"field {name!r} is missing from the {self.name}"
            value = row[name]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                want = " or ".join(_JSON_TYPES.get(t, t.__name__) for t in types)
                got = _JSON_TYPES.get(type(value), type(value).__name__)
                return f"field {name!r} of the {self.name} is {got}, expected {want}"
            if name in self.nonempty and isinstance(value, str) and not value.strip():
                return f"field {name!r} of the {self.name} is empty"
        return None


