"""The shared data mirror for tests that read the real datasets.

Outside CI a test that needs the mirror skips when it is missing. ``.ci/run`` sets ``RETROFIT_REQUIRE_MIRROR``:
there the mirror is always present, so a missing one is a broken set-up and those tests fail instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Set by ``.ci/run``: a missing mirror fails the tests that need it.
REQUIRE_MIRROR_ENV = "RETROFIT_REQUIRE_MIRROR"

REPO = Path(__file__).resolve().parents[1]


def data_mirror() -> Path | None:
    """``RETROFIT_DATA_MIRROR``, else ``../shared/data`` next to the repository, made absolute; ``None`` if absent."""
    env = os.environ.get("RETROFIT_DATA_MIRROR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path.resolve() if path.is_dir() else None


def mirror_or_skip() -> Path:
    """The data mirror; skips the test without one, or fails it where ``RETROFIT_REQUIRE_MIRROR`` is set."""
    mirror = data_mirror()
    if mirror is None:
        message = "no data mirror: set RETROFIT_DATA_MIRROR (or put the mirror at ../shared/data)"
        if os.environ.get(REQUIRE_MIRROR_ENV):
            pytest.fail(f"{message}; {REQUIRE_MIRROR_ENV} is set, so this test must not skip")
        pytest.skip(message)
    return mirror
