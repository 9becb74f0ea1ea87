"""Tests for retrofit.data.passages: sentence splitting, snippets and answer sentences."""

import pytest

from retrofit.data.passages import answer_sentence, sentences, snippet


@pytest.mark.parametrize("text, expected", [
    ("Es regnete. Dann kam er.", ["Es regnete.", "Dann kam er."]),
    # initials and German dates are not sentence ends
    ("Franklin D. Roosevelt und John F. Kennedy. Dann kam er.",
     ["Franklin D. Roosevelt und John F. Kennedy.", "Dann kam er."]),
    ("Am 30. September kam sie. Sie blieb.", ["Am 30. September kam sie.", "Sie blieb."]),
    # a year is a sentence end
    ("Es war 2019. Dann kam er.", ["Es war 2019.", "Dann kam er."]),
    # a closing quote stays with the sentence it closes
    ('He said "Hello." Then he left.', ['He said "Hello."', "Then he left."]),
    ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
    # a piece that is punctuation alone joins the sentence before it
    ("他演出了六个月。” 。下一句在这里。", ["他演出了六个月。” 。", "下一句在这里。"]),
    ("यह एक वाक्य है। यह दूसरा है।", ["यह एक वाक्य है।", "यह दूसरा है।"]),
    ("ข้อความภาษาไทย ไม่มีจุด", ["ข้อความภาษาไทย ไม่มีจุด"]),
    ("", []),
    ("...", ["..."]),
])
def test_sentences(text, expected):
    assert sentences(text) == expected


def test_no_sentence_is_punctuation_alone():
    text = "“第一句。”“第二句。” 。“第三句！”"
    parts = sentences(text)
    assert all(sum(ch.isalnum() for ch in p) >= 2 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")  # nothing lost


def test_snippet_cuts_at_a_word_boundary():
    text = "alpha beta gamma delta epsilon. Second sentence here."
    assert snippet(text, 100) == "alpha beta gamma delta epsilon."
    assert snippet(text, 100, index=1) == "Second sentence here."
    assert snippet(text, 100, index=9) == "Second sentence here."  # clamped
    assert snippet(text, 20) == "alpha beta gamma"


def test_answer_sentence_finds_the_sentence_of_the_answer():
    passage = "John F. Kennedy was president. He was born in 1917. He died in 1963."
    assert answer_sentence(passage, passage.index("1917"), 200) == "He was born in 1917."
    assert answer_sentence(passage, passage.index("Kennedy"), 200) == "John F. Kennedy was president."
    assert answer_sentence(passage, -1, 200) == "John F. Kennedy was president."
