"""Parsing and validation of raw generations.

Every response is parsed and either accepted or rejected for exactly one reason, checked in this order:

``empty``            nothing usable (or unparsable JSON from a chat model);
``truncated``        the backend hit ``max_tokens`` before finishing the query;
``too_short``        fewer than ``min_chars`` length units;
``too_long``         more than ``max_chars`` length units (a CJK character counts as two units);
``copies_passage``   the query is the passage or a verbatim span of it;
``copies_example``   the query repeats one of the prompt's few-shot exemplars;
``wrong_language``   an offline language identifier (py3langid, restricted to the run's languages) says the query
                     is in another language.

Counts per language and reason become DVC metrics in the generate stage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from retrofit.filter.text import normalize

REASONS = ("empty", "truncated", "too_short", "too_long", "copies_passage", "copies_example", "wrong_language")

_WIDE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LEAD = re.compile(r"^\s*(?:[-*•]|\d+[.)]|(?:question|query|title|paraphrase|request)\s*:)\s*", re.IGNORECASE)


def length_units(text: str) -> int:
    """Characters, with each CJK ideograph or kana/hangul counted twice (they carry about a word each)."""
    return len(text) + len(_WIDE.findall(text))


def parse(text: str, chat: bool) -> str:
    """Extract the query from a raw generation.

    Args:
        text: The raw response text.
        chat: The response comes from an instruction model asked for ``{"query": "..."}``.

    Returns:
        The query, stripped of list markers, labels and wrapping quotes ("" if nothing usable).
    """
    if chat:
        m = re.search(r"\{.*\}", text, re.DOTALL)
        if not m:
            return ""
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            return ""
        q = obj.get("query") if isinstance(obj, dict) else None
        text = q if isinstance(q, str) else ""
    text = text.strip().split("\n")[0]
    text = _LEAD.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”«»「」":
        text = text[1:-1].strip()
    return text


class LanguageIdentifier:
    """py3langid restricted to a fixed set of languages (short texts are far more reliable that way)."""

    def __init__(self, langs: Iterable[str]) -> None:
        from py3langid.langid import MODEL_FILE
        from py3langid.langid import LanguageIdentifier as _LangId

        self._li = _LangId.from_model_file(MODEL_FILE, norm_probs=True)
        supported = set(self._li.nb_classes)
        self.langs = sorted(set(langs) & supported)
        self._li.set_languages(self.langs)

    def __call__(self, text: str) -> str:
        return self._li.classify(text)[0]


@dataclass(frozen=True)
class Verdict:
    """The outcome for one response: the cleaned query, or the rejection reason."""

    query: str
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def validate(
    raw: str,
    finish_reason: str,
    *,
    chat: bool,
    lang: str,
    passage: str,
    exemplars: Iterable[str],
    min_chars: int,
    max_chars: int,
    langid: LanguageIdentifier | None,
) -> Verdict:
    """Parse ``raw`` and check it against every rule in the module docstring.

    Args:
        raw: Raw response text.
        finish_reason: ``stop`` or ``length`` (truncated).
        chat: Whether ``raw`` is a chat model's JSON answer.
        lang: Expected language of the query.
        passage: The positive the query was written for.
        exemplars: The few-shot queries shown in the prompt.
        min_chars: Minimum length in :func:`length_units`.
        max_chars: Maximum length in :func:`length_units`.
        langid: Language identifier, or ``None`` to skip the language check.

    Returns:
        A :class:`Verdict`.
    """
    query = parse(raw, chat)
    if not query:
        return Verdict("", "empty")
    if finish_reason == "length":
        return Verdict(query, "truncated")
    units = length_units(query)
    if units < min_chars:
        return Verdict(query, "too_short")
    if units > max_chars:
        return Verdict(query, "too_long")
    nq = normalize(query)
    if nq in normalize(passage):
        return Verdict(query, "copies_passage")
    if any(nq == normalize(e) or (len(nq) > 10 and nq in normalize(e)) for e in exemplars):
        return Verdict(query, "copies_example")
    if langid is not None and lang in langid.langs and langid(query) != lang:
        return Verdict(query, "wrong_language")
    return Verdict(query, None)
