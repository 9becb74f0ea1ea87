"""Tests for retrofit.generate.openai_request's endpoint-free helpers.

The retry policy itself is tested against a fake server, through the backend, in ``test_openai_backend.py``.
"""

from __future__ import annotations

import math

from retrofit.generate.openai_request import estimate_prompt_tokens, estimate_tokens


def test_estimates_are_rough_bytes_over_four():
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("日本") == math.ceil(6 / 4)
    assert estimate_prompt_tokens([{"role": "user", "content": "abcd"}]) == 1 + 4
