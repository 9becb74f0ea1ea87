"""Tests for retrofit.filter.text: normalisation, character n-grams, and the vectorised n-gram hash against its
scalar form."""

from __future__ import annotations

import pytest

from retrofit.filter.text import (
    char_ngrams,
    gram_hashes,
    hash_gram,
    hash_gram32,
    jaccard,
    normalize,
)

from .samples import EVAL_TEXTS, Q_EN, Q_TH, Q_ZH


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Ｈｅｌｌｏ　ＷＯＲＬＤ", "hello world"),  # full-width forms and ideographic space (NFKC)
        ("Straße", "strasse"),  # case folding, not just lower()
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),  # final sigma folds like any sigma
        ("  a\t\tb\n c\u00a0d  ", "a b c d"),  # every Unicode whitespace run -> one space, stripped
        ("ไทย\u200bไหม\ufeff", "ไทยไหม"),  # zero-width characters vanish
        ("น้ำ", "น้\u0e4d\u0e32"),  # Thai SARA AM is a compatibility character: NFKC splits it
        ("ﬁle Ⅻ ①", "file xii 1"),  # compatibility ligatures, numerals
        ("北京，你好！", "北京,你好!"),  # full-width CJK punctuation
        ("", ""),
    ],
)
def test_normalize(text: str, want: str) -> None:
    assert normalize(text) == want


@pytest.mark.parametrize("text", [Q_EN, Q_ZH, Q_TH, "ﬁ ẞ Ⅻ", "İstanbul", "ǅemal", " \u200b "])
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


def test_char_ngrams() -> None:
    assert char_ngrams("abcab", 3) == {"abc", "bca", "cab"}
    assert char_ngrams("ab", 5) == {"ab"}  # shorter than n: the whole text
    assert char_ngrams("", 5) == set()
    assert char_ngrams("北京欢迎你", 2) == {"北京", "京欢", "欢迎", "迎你"}
    assert jaccard("abcd", "abcd", 2) == 1.0
    assert jaccard("abcd", "abce", 2) == pytest.approx(2 / 4)


KERNEL_TEXTS = [normalize(t) for t in (Q_EN, Q_ZH, Q_TH, *EVAL_TEXTS.values(), "ab", "", "a😀b 𝔘", "مرحبا بالعالم")]


@pytest.mark.parametrize("n", [1, 5, 13])
def test_gram_hashes_match_scalar_hash(n: int) -> None:
    hashes, owner = gram_hashes(KERNEL_TEXTS, n)
    want = [(hash_gram(t[i : i + n]), k) for k, t in enumerate(KERNEL_TEXTS) for i in range(len(t) - n + 1)]
    assert list(zip(hashes.tolist(), owner.tolist())) == want


def test_gram_hashes_skip_texts_shorter_than_n() -> None:
    hashes, owner = gram_hashes(["abc", "", "abcdefg"], 5)
    assert owner.tolist() == [2, 2, 2]
    assert hashes.tolist() == [hash_gram(g) for g in ("abcde", "bcdef", "cdefg")]
    hashes, owner = gram_hashes(["ab", ""], 5)
    assert len(hashes) == len(owner) == 0


def test_hash_gram32_is_the_low_half_of_hash_gram() -> None:
    for gram in ("abcde", "北京欢迎你", "a😀b 𝔘", ""):
        assert 0 <= hash_gram(gram) < 2**64
        assert hash_gram32(gram) == hash_gram(gram) & 0xFFFFFFFF
