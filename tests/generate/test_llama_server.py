"""llama.cpp's own server on loopback (retrofit.generate.llama_server) as the OpenAI endpoint of the generate stage.

A real server, the bundled Gemma 3 270M: its key is demanded, it always stops, and when it dies in the middle of a
generation the circuit breaker stops the run with nothing written and every answer received kept in the cache; a
rerun against a fresh server sends only the requests that never got an answer.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from retrofit.generate import llama_server
from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.bundled import assemble
from retrofit.generate.openai_backend import CircuitOpen
from retrofit.generate.pipeline import run_generation
from tests.generate.test_pipeline import (  # noqa: F401 (fixtures)
    KEY_ENV,
    api_key,
    cached_keys,
    fast_backend,
    openai_params,
    prepared,
)
from tests.mirror import REQUIRE_MIRROR_ENV

try:  # in the locked install (make setup): CI must never skip these tests
    import xllamacpp  # noqa: F401
except ImportError:  # pragma: no cover - only on a broken install
    if os.environ.get(REQUIRE_MIRROR_ENV):
        pytest.fail("xllamacpp is not installed in CI: `make setup` should have installed it")
    pytest.skip("xllamacpp not installed (make setup)", allow_module_level=True)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble("bundled:gemma-3-270m", tmp_path_factory.mktemp("llm"))[0]


def _status(url: str, key: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serves_the_model_under_its_key_and_always_stops(gguf: Path, api_key: None, tmp_path: Path):  # noqa: F811
    with pytest.raises(RuntimeError, match="boom"):  # noqa: PT012 (the stop on failure is the point)
        with llama_server.serve(gguf, alias="gemma-3-270m", threads=1, api_key_env=KEY_ENV,
                                log=tmp_path / "server.log") as root:
            port = int(root.rsplit(":", 1)[1].split("/")[0])
            assert _status(f"{root}/models", os.environ[KEY_ENV]) == 200
            assert _status(f"{root}/models", "a wrong key") == 401
            raise RuntimeError("boom")
    assert not _listening(port)


class Recording:
    """The stage's OpenAI backend, recording the key of every request handed to it."""

    def __init__(self, backend) -> None:
        self.backend, self.sent = backend, []

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def generate(self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]):
        self.sent += [r.key for r in requests]
        return self.backend.generate(requests, on_response)


def test_a_server_dying_mid_generation_stops_the_stage_and_a_rerun_sends_only_the_missing(
    gguf: Path, prepared: Path, tmp_path: Path, api_key: None,  # noqa: F811
):
    port = llama_server.free_port()
    url = f"http://127.0.0.1:{port}/v1"
    p = openai_params(url, model="gemma-3-270m", max_retries=1, breaker_window=4, breaker_failure_rate=0.5,
                      concurrency=2)
    p = p.model_copy(update={"min_examples": 0, "max_tokens": 24})
    cache = tmp_path / "cache"
    serve = dict(alias="gemma-3-270m", threads=2, chat_template="gemma", port=port, api_key_env=KEY_ENV)
    with llama_server.serve(gguf, log=tmp_path / "first.log", **serve):
        first = Recording(fast_backend(p))
        stopped = threading.Event()

        def kill_after_answers() -> None:  # the server dies once a few answers are in the cache
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not stopped.is_set():
                files = list((cache / "generate").glob("responses-openai-*.jsonl"))
                if files and len(files[0].read_text(encoding="utf-8").splitlines()) >= 6:
                    os.system(f"pkill -9 -f 'retrofit.generate.llama_server .*--port {port}'")  # noqa: S605
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_after_answers)
        killer.start()
        try:
            with pytest.raises(CircuitOpen) as info:
                run_generation(p, 3, prepared, tmp_path / "out", cache, encode=None, backend=first)
        finally:
            stopped.set()
            killer.join()
    assert url in str(info.value) and "failed" in str(info.value)
    assert not (tmp_path / "out").exists()
    answered = set(cached_keys(cache))
    assert len(answered) >= 6 and answered < set(first.sent)

    with llama_server.serve(gguf, log=tmp_path / "second.log", **serve):
        again = Recording(fast_backend(p))
        metrics = run_generation(p, 3, prepared, tmp_path / "out", cache, encode=None, backend=again)
    assert not answered & set(again.sent)  # nothing answered before is sent again
    assert set(cached_keys(cache)) >= answered | set(again.sent)
    assert (tmp_path / "out/examples.jsonl").exists() and metrics["requests"] >= len(answered)
