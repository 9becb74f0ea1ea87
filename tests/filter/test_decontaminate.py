"""Tests for retrofit.filter.decontaminate: the contamination index against a brute-force containment."""

from __future__ import annotations

import random

import pytest
from conftest import params_group

import retrofit.filter.decontaminate as decontaminate_module
from retrofit.filter.decontaminate import ContaminationIndex
from retrofit.filter.text import normalize

from .samples import EVAL_TEXTS, PASSAGE, Q_EN, Q_TH, Q_ZH

PARAMS = params_group("dedupe")


def _reference_containment(text: str, eval_texts: dict[str, str], n: int) -> tuple[float, str | None]:
    """Brute force: best fraction of ``text``'s distinct n-grams found in one eval text (ties: smallest id)."""
    grams = {text[i : i + n] for i in range(len(text) - n + 1)}
    best, best_id = 0.0, None
    for eid in sorted(eval_texts):
        e = normalize(eval_texts[eid])
        if text == e:
            return 1.0, eid
        if grams:
            c = len(grams & {e[i : i + n] for i in range(len(e) - n + 1)}) / len(grams)
            if c > best:
                best, best_id = c, eid
    return best, best_id


@pytest.mark.parametrize("small_blocks", [False, True])
def test_contamination_index_matches_brute_force(small_blocks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if small_blocks:  # many blocks of texts and many scoring chunks per block
        monkeypatch.setattr(decontaminate_module, "_GRAM_BLOCK", 400)
        monkeypatch.setattr(decontaminate_module, "_SCORE_WINDOWS", 50)
    rng = random.Random(3)
    pool = list(EVAL_TEXTS.values()) + [Q_EN, Q_ZH, Q_TH, PASSAGE]
    texts = []
    for _ in range(200):  # splice random spans of the pool: containment spread over 0..1
        a, b = rng.sample(pool, 2)
        i, j = sorted(rng.sample(range(len(a) + 1), 2))
        k = rng.randrange(len(b) + 1)
        texts.append(normalize(a[i:j] + b[k:]))
    texts = sorted(set(texts))
    index = ContaminationIndex(EVAL_TEXTS, PARAMS.decontam_ngram)
    threshold = PARAMS.decontam_threshold
    got = index.contamination(texts, threshold)
    n_hits = 0
    for text, c in zip(texts, got):
        want, want_id = _reference_containment(text, EVAL_TEXTS, PARAMS.decontam_ngram)
        if want >= threshold:
            n_hits += 1
            assert c.containment == pytest.approx(want) and index.ids[c.eval_index] == want_id, text
        else:
            assert c.eval_index < 0 or c.containment == pytest.approx(want), text
    assert 0 < n_hits < len(texts)  # the fixture exercises both sides of the threshold
