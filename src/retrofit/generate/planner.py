"""The generate stage's planner: which passage, task type, attributes, exemplars and seed each request gets.

Plan determinism: example ``i`` of language ``L`` draws its passage, task type, attributes and exemplars from
``random.Random(f"{seed}:{L}:{i}")``, so the plan does not depend on how many examples are requested, and the first
``n`` accepted examples of a larger run are those of a smaller one with the same backend.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from retrofit.config import GenerateParams, ParamsError
from retrofit.data.passages import Passage, sentences, snippet
from retrofit.generate.base import GenRequest
from retrofit.generate.pools import ExemplarPool
from retrofit.generate.prompts import Attributes, build_request, sample_attributes


@dataclass
class Planned:
    """One planned example: everything needed to build its request and its output row."""

    lang: str
    index: int
    task_type: str
    passage: Passage
    positive: str
    target: str
    attrs: Attributes
    exemplars: list[str]
    seed: int
    request: GenRequest


class Planner:
    """Deterministic per-example plans for each language.

    Args:
        params: The generate params.
        seed: ``base.seed``.
        passages: Source passages per language (a seeded subset of ``passages_per_language`` is used).
        exemplars: Few-shot pools per (task type, language).
    """

    def __init__(
        self,
        params: GenerateParams,
        seed: int,
        passages: dict[str, list[Passage]],
        exemplars: dict[tuple[str, str], ExemplarPool],
    ) -> None:
        self.p = params
        self.seed = seed
        self.exemplars = exemplars
        self.pool: dict[str, list[Passage]] = {}
        self.tasks: dict[str, tuple[list[str], list[float]]] = {}
        self.unsupported: dict[str, list[str]] = {}
        for lang in params.languages:
            cand = sorted(passages.get(lang, []), key=lambda x: x.id)
            if not cand:
                raise ParamsError(f"generate.languages: no source passages for '{lang}' in {params.passage_sources}")
            rng = random.Random(f"{seed}:pool:{lang}")
            self.pool[lang] = rng.sample(cand, min(params.passages_per_language, len(cand)))
            names, weights, missing = [], [], []
            for task, w in sorted(params.task_types.items()):
                if w <= 0:
                    continue
                if params.few_shot and (task, lang) not in exemplars:
                    missing.append(task)  # a base LM cannot do this task in this language without exemplars
                    continue
                names.append(task)
                weights.append(w)
            if not names:
                raise ParamsError(
                    f"generate: no task type in {sorted(params.task_types)} has few-shot exemplars for '{lang}' "
                    "with the local backend; add short_query or use the openai backend"
                )
            self.tasks[lang] = (names, weights)
            self.unsupported[lang] = missing

    def plan(self, lang: str, index: int) -> Planned:
        """The plan of example ``index`` in ``lang``; the same arguments always give the same plan."""
        rng = random.Random(f"{self.seed}:{lang}:{index}")
        names, weights = self.tasks[lang]
        task = rng.choices(names, weights)[0]
        passage = self.pool[lang][rng.randrange(len(self.pool[lang]))]
        attrs = sample_attributes(rng)
        chars = self.p.local.snippet_chars
        n_sent = max(1, len(sentences(passage.text)))
        sent = snippet(passage.text, chars, rng.randrange(n_sent))
        if task == "paraphrase":
            positive, target = sent, sent
        else:
            positive = passage.text
            if self.p.backend == "local":
                target = snippet(passage.text, chars) if task == "title" else sent
            else:
                target = passage.text
        shots: list = []
        if self.p.few_shot:
            shots = self.exemplars[(task, lang)].draw(self.p.local.shots, attrs.length, passage.group, rng)
        seed = rng.randrange(2**31)
        local = self.p.backend == "local"
        request = build_request(
            few_shot=self.p.few_shot,
            task_type=task,
            lang=lang,
            target=target,
            exemplars=shots,
            attrs=attrs,
            max_tokens=self.p.max_tokens,
            temperature=self.p.local.temperature if local else self.p.openai.temperature,
            seed=seed,
            meta={"lang": lang, "index": index, "task_type": task},
        )
        return Planned(lang, index, task, passage, positive, target, attrs, [e.query for e in shots], seed, request)
