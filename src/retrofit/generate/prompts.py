"""Task types, sampled attributes and prompt templates for synthetic query generation.

Two prompt styles share one set of task types:

- **few-shot completion** for small base LMs (the offline ``local`` backend): ``shots`` in-language exemplars,
  then the target text, ending where the model should write the query. A base model of 270M parameters copies a
  single exemplar and answers zero-shot prompts in English (measured on German XQuAD), so it always gets
  three exemplars drawn per request from real in-language data (XQuAD training-pool questions, NTREX headlines,
  STS-B paraphrases), and only the first sentence or the answer sentence of a passage.
- **instruction** prompts for chat models (the ``openai`` backend), in the style of E5-mistral: the task, the
  passage, the language and the sampled attributes, with a JSON answer.

Attributes (query length, clarity, difficulty) are sampled per example from a seeded RNG, so the diversity
comparison can vary task types and languages independently. With few-shot prompts only ``length`` can steer
the output (exemplars are drawn from the matching length tercile); the others are recorded for provenance.

References:
    Wang et al., "Improving Text Embeddings with Large Language Models" (E5-mistral), arXiv 2401.00368.
    Dai et al., "Promptagator: Few-shot Dense Retrieval From 8 Examples", arXiv 2209.11755.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from retrofit.generate.base import GenRequest
from retrofit.schema import GENERATED_TASK_TYPES

#: Bump when any template below changes: it is part of every request key and every output row.
PROMPT_VERSION = "v1"

#: Task type -> (what the query is, what the positive is). ``short_query`` is the paper's task.
TASK_PROMPTS: dict[str, tuple[str, str]] = {
    "short_query": ("a short question a user would type into a search engine", "the passage that answers it"),
    "long_query": ("a long, detailed information request (one or two sentences)", "the passage that answers it"),
    "title": ("a title or headline for the passage", "the passage"),
    "paraphrase": ("a sentence that says the same thing in other words", "the original sentence"),
}
if tuple(TASK_PROMPTS) != GENERATED_TASK_TYPES:  # the params vocabulary (retrofit.schema) and the prompts must agree
    raise ImportError(f"prompts for {list(TASK_PROMPTS)} but retrofit.schema names {list(GENERATED_TASK_TYPES)}")

#: Few-shot labels: what the exemplar's input and output lines are called.
_LABELS = {
    "short_query": ("Text", "Question"),
    "long_query": ("Text", "Request"),
    "title": ("Text", "Title"),
    "paraphrase": ("Sentence", "Paraphrase"),
}

LENGTHS = ("short", "medium", "long")
CLARITY = ("clear", "understandable with some effort", "ambiguous")
DIFFICULTY = ("high school", "college", "PhD")

_LANG_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fa": "Persian", "fr": "French", "he": "Hebrew", "hi": "Hindi", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sw": "Swahili", "th": "Thai", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "zh": "Chinese",
}

@dataclass(frozen=True)
class Exemplar:
    """One few-shot example: an input text (passage snippet or sentence) and the query written for it."""

    text: str
    query: str


@dataclass(frozen=True)
class Attributes:
    """Per-example sampled attributes (E5-mistral style)."""

    length: str
    clarity: str
    difficulty: str

    def to_json(self) -> dict[str, str]:
        return {"length": self.length, "clarity": self.clarity, "difficulty": self.difficulty}


def sample_attributes(rng: random.Random) -> Attributes:
    """Draw one attribute set from ``rng``."""
    return Attributes(rng.choice(LENGTHS), rng.choice(CLARITY), rng.choice(DIFFICULTY))


def language_name(lang: str) -> str:
    """English name of an ISO 639-1 code (the code itself if unknown)."""
    return _LANG_NAMES.get(lang, lang)


def few_shot_prompt(task_type: str, exemplars: list[Exemplar], target: str) -> str:
    """A completion prompt: the exemplars, then ``target``, ending after the output label.

    Args:
        task_type: One of :data:`~retrofit.schema.GENERATED_TASK_TYPES`.
        exemplars: In-language examples, shown in order.
        target: The text to write a query for.

    Returns:
        The prompt; the model's continuation up to the first newline is the query.
    """
    src, out = _LABELS[task_type]
    blocks = [f"{src}: {e.text}\n{out}: {e.query}\n" for e in exemplars]
    blocks.append(f"{src}: {target}\n{out}:")
    return "\n".join(blocks)


def instruction_messages(task_type: str, lang: str, passage: str, attrs: Attributes) -> tuple[tuple[str, str], ...]:
    """E5-mistral-style chat messages asking for one query as JSON ``{"query": "..."}``."""
    what, positive = TASK_PROMPTS[task_type]
    length = {"short": "less than 8 words", "medium": "8 to 20 words", "long": "at least 20 words"}[attrs.length]
    system = "You write training data for multilingual search engines. Answer with JSON only."
    user = (
        f"Write {what}, for which the text below is {positive}.\n"
        f"- Language: {language_name(lang)} ({lang}); never translate the text, write natively.\n"
        f"- Length: {length}.\n- Clarity: {attrs.clarity}.\n- Difficulty: {attrs.difficulty} level.\n"
        "- Do not copy sentences from the text; paraphrase, and do not mention 'the text' or 'the passage'.\n"
        'Answer exactly as {"query": "..."}.\n\n'
        f"Text:\n{passage}"
    )
    return (("system", system), ("user", user))


def build_request(
    *,
    few_shot: bool,
    task_type: str,
    lang: str,
    target: str,
    exemplars: list[Exemplar],
    attrs: Attributes,
    max_tokens: int,
    temperature: float,
    seed: int,
    meta: dict,
) -> GenRequest:
    """The request for one planned example, in the prompt style of ``backend``.

    Args:
        few_shot: A few-shot completion (base models) rather than instruction chat messages.
        task_type: One of :data:`~retrofit.schema.GENERATED_TASK_TYPES`.
        lang: ISO 639-1 code of the query to write.
        target: Passage text (``openai``) or passage snippet (``local``).
        exemplars: Few-shot examples (``few_shot`` only).
        attrs: Sampled attributes.
        max_tokens: Generation budget.
        temperature: Sampling temperature (0 = greedy).
        seed: Per-example seed.
        meta: Bookkeeping copied into the request (not part of its key).

    Returns:
        A :class:`GenRequest` whose key changes with the prompt text (so with any template change), exemplars
        and sampling settings; a version bump that leaves the text alone rightly reuses cached answers.
    """
    if few_shot:
        return GenRequest(
            prompt=few_shot_prompt(task_type, exemplars, target),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stop=("\n",),
            meta={**meta, "prompt_version": PROMPT_VERSION},
        )
    return GenRequest(
        messages=instruction_messages(task_type, lang, target, attrs),
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        meta={**meta, "prompt_version": PROMPT_VERSION},
    )
