"""ResponseCache: durability (fsync, SIGKILL), torn-line repair, locking, thread safety, links into a DVC cache, and
generate_with_cache."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.cache import ResponseCache, generate_with_cache, own_copy
from retrofit.generate.ledger import FailedRequest, Ledger


def resp(key: str, text: str = "answer") -> GenResponse:
    return GenResponse(key=key, text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=2, model="m")


def lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the file must end with a complete line"
    return [json.loads(line) for line in raw.splitlines()]


def test_put_get_contains_and_reopen(tmp_path: Path):
    path = tmp_path / "sub" / "responses.jsonl"
    with ResponseCache(path) as cache:
        assert len(cache) == 0 and cache.get("a") is None and "a" not in cache
        assert cache.put(resp("a", "héllo\nworld")) is True
        assert cache.put(resp("b")) is True
        assert "a" in cache and cache.get("a") == resp("a", "héllo\nworld")
    with ResponseCache(path) as cache:
        assert list(cache) == ["a", "b"]
        assert cache.get("a") == resp("a", "héllo\nworld") and cache.get("b") == resp("b")
        assert list(cache.responses()) == [resp("a", "héllo\nworld"), resp("b")]
    assert [row["key"] for row in lines(path)] == ["a", "b"]


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_a_cache_checked_out_as_a_link_is_copied_before_appending(tmp_path: Path, link: str):
    # DVC checks an output out as a read-only link into its cache (cache.type hardlink or symlink): the object there
    # must not change when the generator appends new responses
    store = tmp_path / "dvc-cache" / "ab" / "cdef"
    store.parent.mkdir(parents=True)
    with ResponseCache(store) as cache:
        cache.put(resp("a"))
    os.chmod(store, 0o444)
    before = store.read_bytes()
    path = tmp_path / "data" / "responses" / "responses.jsonl"
    path.parent.mkdir(parents=True)
    os.link(store, path) if link == "hardlink" else path.symlink_to(store)
    with ResponseCache(path) as cache:
        assert list(cache) == ["a"]  # a teammate's answers are reused
        cache.put(resp("b"))
    assert store.read_bytes() == before  # the cached object is untouched
    assert [row["key"] for row in lines(path)] == ["a", "b"] and not path.is_symlink() and path.stat().st_nlink == 1
    assert own_copy(path) is False  # a private file is left as it is


def test_put_of_cached_key_writes_nothing_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "r.jsonl"
    with ResponseCache(path) as cache:
        cache.put(resp("a", "first"))
        with caplog.at_level(logging.WARNING, logger="retrofit.generate.cache"):
            assert cache.put(resp("a", "second")) is False
        assert cache.get("a") == resp("a", "first")
    assert "already cached" in caplog.text
    assert len(lines(path)) == 1


def test_torn_last_line_is_dropped_and_appends_stay_valid(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "r.jsonl"
    with ResponseCache(path) as cache:
        for k in "abc":
            cache.put(resp(k))
    good_size = path.stat().st_size
    with path.open("ab") as fh:  # what a kill in the middle of a write leaves
        fh.write(json.dumps(resp("d").to_json()).encode()[:25])
    with caplog.at_level(logging.WARNING, logger="retrofit.generate.cache"):
        cache = ResponseCache(path)
    assert "torn last line" in caplog.text and "r.jsonl:4" in caplog.text
    assert list(cache) == ["a", "b", "c"] and "d" not in cache
    assert path.stat().st_size == good_size
    cache.put(resp("d"))
    cache.close()
    with ResponseCache(path) as cache:
        assert list(cache) == ["a", "b", "c", "d"] and cache.get("d") == resp("d")
    assert [row["key"] for row in lines(path)] == ["a", "b", "c", "d"]


def test_complete_last_row_missing_only_its_newline_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(resp("a").to_json()) + "\n" + json.dumps(resp("b").to_json()))
    with caplog.at_level(logging.WARNING, logger="retrofit.generate.cache"), ResponseCache(path) as cache:
        assert cache.get("b") == resp("b")
        cache.put(resp("c"))
    assert "no newline" in caplog.text
    assert [row["key"] for row in lines(path)] == ["a", "b", "c"]


def test_corrupt_complete_line_is_an_error_naming_file_and_line(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(resp("a").to_json()) + "\n{not json\n" + json.dumps(resp("b").to_json()) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2: not a valid response row"):
        ResponseCache(path)
    path.write_text(json.dumps({"key": "a", "text": "missing fields"}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1"):
        ResponseCache(path)


def test_duplicate_rows_on_disk_keep_the_first(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(resp("a", t).to_json()) + "\n" for t in ("one", "two")))
    with caplog.at_level(logging.WARNING, logger="retrofit.generate.cache"), ResponseCache(path) as cache:
        assert len(cache) == 1 and cache.get("a") == resp("a", "one")
    assert "1 duplicate rows ignored" in caplog.text


def test_only_one_open_cache_per_file(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    first = ResponseCache(path)
    with pytest.raises(RuntimeError, match="already open"):
        ResponseCache(path)
    first.close()
    with pytest.raises(RuntimeError, match="closed"):
        first.put(resp("a"))
    with ResponseCache(path) as again:
        assert len(again) == 0


def test_concurrent_puts_from_threads_lose_nothing(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    with ResponseCache(path) as cache:
        def work(t: int) -> None:
            for i in range(25):
                cache.put(resp(f"t{t}-{i}", "x" * (i * 37)))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    rows = lines(path)
    assert len(rows) == 200 and len({r["key"] for r in rows}) == 200
    with ResponseCache(path) as cache:
        assert all(cache.get(f"t{t}-{i}") == resp(f"t{t}-{i}", "x" * (i * 37)) for t in range(8) for i in range(25))


_WRITER = textwrap.dedent(
    """
    import sys
    from retrofit.generate.base import GenResponse
    from retrofit.generate.cache import ResponseCache

    cache = ResponseCache(sys.argv[1])
    for i in range(5000):  # bounded: the parent kills us long before this ends
        key = f"k{i}"
        # Rows of ~64 KiB make a kill in the middle of a write (a torn line) plausible.
        cache.put(GenResponse(key=key, text=str(i) * 64_000, finish_reason="stop", prompt_tokens=1,
                              completion_tokens=1, model="m"))
        print(key, flush=True)
    """
)


def test_sigkill_while_writing_loses_no_completed_row(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    reported: list[str] = []
    try:
        assert proc.stdout is not None
        while len(reported) < 40:
            line = proc.stdout.readline()
            assert line, f"writer exited early with code {proc.poll()}"
            reported.append(line.strip())
        proc.send_signal(signal.SIGKILL)
        reported += [k for k in proc.stdout.read().split() if k]  # finished before the kill landed
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with ResponseCache(path) as cache:
        missing = [k for k in reported if k not in cache]
        assert not missing, f"rows reported as written but lost: {missing}"
        for k in reported:
            got = cache.get(k)
            assert got is not None and got.text == k[1:] * 64_000
        # At most the one row in flight at the kill may be extra (written, not yet reported).
        assert len(cache) - len(reported) in (0, 1)
    assert len(lines(path)) == len(reported) or len(lines(path)) == len(reported) + 1


class StubBackend:
    """In-process Backend: answers with the prompt upper-cased; fails prompts listed in ``fail``."""

    name = "stub"

    def __init__(self, fail: Sequence[str] = (), wrong_key: bool = False) -> None:
        self.fail = set(fail)
        self.wrong_key = wrong_key
        self.sent: list[GenRequest] = []

    def identity(self) -> dict[str, str]:
        return {"backend": "stub"}

    def generate(
        self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]
    ) -> list[FailedRequest]:
        failed = []
        for req in requests:
            self.sent.append(req)
            assert req.prompt is not None
            if req.prompt in self.fail:
                failed.append(FailedRequest(req, "4xx", "HTTP 400", 1))
                continue
            key = "nope" if self.wrong_key else req.key
            on_response(req, GenResponse(key, req.prompt.upper(), "stop", 1, 1, "stub"))
        return failed


def test_generate_with_cache_sends_only_uncached_unique_requests(tmp_path: Path):
    reqs = [GenRequest(prompt=p, meta={"i": i}) for i, p in enumerate(["a", "b", "a", "c", "bad"])]
    ledger = Ledger()
    got: list[tuple[int, str]] = []
    with ResponseCache(tmp_path / "r.jsonl") as cache:
        cache.put(GenResponse(reqs[1].key, "B-cached", "stop", 1, 1, "stub"))
        backend = StubBackend(fail=["bad"])
        failed = generate_with_cache(backend, reqs, cache, lambda r, x: got.append((r.meta["i"], x.text)), ledger)
        assert [r.prompt for r in backend.sent] == ["a", "c", "bad"]
        assert sorted(got) == [(0, "A"), (1, "B-cached"), (2, "A"), (3, "C")]
        assert [f.request.prompt for f in failed] == ["bad"]
        assert set(cache) == {reqs[0].key, reqs[1].key, reqs[3].key}
        m = ledger.to_metrics()
        assert (m["cached_hits"], m["duplicates"]) == (1, 1)

        backend2 = StubBackend()
        assert generate_with_cache(backend2, reqs, cache, None, ledger) == []
        assert [r.prompt for r in backend2.sent] == ["bad"]  # only the failure is resent
    assert len(lines(tmp_path / "r.jsonl")) == 4


def test_generate_with_cache_rejects_a_response_for_another_key(tmp_path: Path):
    with ResponseCache(tmp_path / "r.jsonl") as cache, pytest.raises(ValueError, match="answered request"):
        generate_with_cache(StubBackend(wrong_key=True), [GenRequest(prompt="a")], cache)
