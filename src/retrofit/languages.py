"""Supported languages and their codes in each source dataset.

A language is supported when the project knows where its passages come from. The embedded default uses the
12 XQuAD languages; the paper-scale profile adds languages whose passages come from Wikipedia on the hub.
Codes are ISO 639-1 throughout the project; this table maps them to each dataset's own suffix.
"""

from __future__ import annotations

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
