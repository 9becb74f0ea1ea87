"""Tests for retrofit.generate.prompts: few-shot and instruction prompts."""

from retrofit.generate.prompts import Exemplar, few_shot_prompt


def test_few_shot_prompt_ends_at_the_output_label():
    prompt = few_shot_prompt("short_query", [Exemplar("A text.", "A question?")], "Target text.")
    assert prompt == "Text: A text.\nQuestion: A question?\n\nText: Target text.\nQuestion:"
