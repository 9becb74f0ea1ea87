"""Append-only, crash-safe cache of raw LLM responses, keyed by :attr:`GenRequest.key`.

Schema: a JSONL file, one :class:`~retrofit.generate.base.GenResponse` per line, exactly
:meth:`GenResponse.to_json` (``key``, ``text``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``,
``model``). Rows are never rewritten; a key appears at most once.

The raw response is written here BEFORE anything parses it: a parser bug or a later crash never costs a paid
request, and reparsing is free. Each :meth:`ResponseCache.put` writes its line with one ``write`` and then
``fsync``s, so once ``put`` has returned the row survives a ``kill -9`` of the process (and a power cut, as far as
the filesystem honours ``fsync``). A kill in the middle of a write can leave a torn last line without its newline;
opening the cache logs a warning and truncates it away, so later appends stay valid JSONL and the torn request is
simply sent again.

The stage keeps its cache in ``data/responses/``, a DVC output of the generate stage (``persist: true``), so a
``dvc push`` shares it and a collaborator's rerun pays only for requests nobody sent yet. DVC may check that file out
as a read-only link into its cache (``cache.type`` symlink or hardlink); appending to it would change DVC's cached
object, so the file is first replaced by a private copy (:func:`own_copy`, what ``dvc unprotect`` does).

Only one :class:`ResponseCache` may have a given file open at a time (an exclusive ``flock``, Linux/macOS), so two
stages can never interleave lines. Reads are by byte offset, so the cache holds only an index in memory, not the
texts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from retrofit.io import atomic_file

from .base import Backend, GenRequest, GenResponse
from .ledger import FailedRequest, Ledger

try:  # pragma: no cover - fcntl exists on every POSIX system this pipeline runs on
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process lock, documented above
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_FIELDS = tuple(GenResponse.__dataclass_fields__)


class ResponseCache:
    """Append-only JSONL store of raw :class:`GenResponse` rows, keyed by request key.

    Args:
        path: The JSONL file; created (with parent directories) if missing.

    Raises:
        ValueError: A complete line of the file (one that ends in a newline) is not a valid response row; the
            message names the file and line. Only a torn *last* line, without its newline, is repaired.
        RuntimeError: Another :class:`ResponseCache` (in this or another process) has the file open.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        if not created:
            own_copy(self.path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._lock_file()
            if created:  # make the new directory entry itself durable
                _fsync_dir(self.path.parent)
            self._index: dict[str, tuple[int, int]] = {}  # key -> (byte offset, byte length incl. newline)
            self._size = self._load()
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, rows={len(self._index)})"

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        """Keys in file order."""
        return iter(list(self._index))

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file and release its lock; further ``put``/``get`` calls raise."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def get(self, key: str) -> GenResponse | None:
        """The cached response for ``key``, or ``None`` if there is none.

        Args:
            key: A :attr:`GenRequest.key`.

        Returns:
            The response exactly as it was stored, or ``None``.
        """
        loc = self._index.get(key)
        if loc is None:
            return None
        offset, length = loc
        raw = os.pread(self._require_fd(), length, offset)
        return GenResponse.from_json(json.loads(raw))

    def responses(self) -> Iterator[GenResponse]:
        """Every cached response, in file order."""
        for key in list(self._index):
            resp = self.get(key)
            assert resp is not None
            yield resp

    def put(self, resp: GenResponse) -> bool:
        """Append one raw response and make it durable before returning.

        Thread-safe: backends may call this from worker threads. Call it before parsing the response.

        Args:
            resp: The response to store.

        Returns:
            True if it was written; False if its key was already cached (nothing is written; a warning is logged,
            because a backend should never answer a cached key twice).
        """
        line = (json.dumps(resp.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = self._require_fd()
            if resp.key in self._index:
                log.warning("%s: key %s is already cached; the second response was not written", self.path, resp.key)
                return False
            _write_all(fd, line)
            os.fsync(fd)
            self._index[resp.key] = (self._size, len(line))
            self._size += len(line)
        return True

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"ResponseCache({self.path}) is closed")
        return self._fd

    def _lock_file(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._require_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"{self.path} is already open in another ResponseCache (this process or another one, e.g. a second "
                "`dvc repro`); close it first, only one writer may append to a response cache"
            ) from None

    def _load(self) -> int:
        """Index every complete row; repair a torn last line. Returns the file size after repair."""
        offset = 0
        duplicates = 0
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.endswith(b"\n"):  # only the last line can lack one
                    offset = self._repair_tail(offset, line, lineno)
                    break
                row = _parse_row(line)
                if row is None:
                    raise ValueError(
                        f"{self.path}:{lineno}: not a valid response row (expected JSON with fields {list(_FIELDS)}); "
                        "the cache is corrupt beyond a torn last line: move it aside and rerun"
                    )
                if row["key"] in self._index:
                    duplicates += 1
                else:
                    self._index[row["key"]] = (offset, len(line))
                offset += len(line)
        if duplicates:
            log.warning("%s: %d duplicate rows ignored (the first row of each key is used)", self.path, duplicates)
        return offset

    def _repair_tail(self, offset: int, tail: bytes, lineno: int) -> int:
        fd = self._require_fd()
        row = _parse_row(tail)
        if row is not None and row["key"] not in self._index:
            # The whole row landed and only its newline is missing: keep it, complete the line.
            _write_all(fd, b"\n")
            os.fsync(fd)
            self._index[row["key"]] = (offset, len(tail) + 1)
            log.warning("%s:%d: last line had no newline; the row was complete and is kept", self.path, lineno)
            return offset + len(tail) + 1
        os.ftruncate(fd, offset)
        os.fsync(fd)
        log.warning(
            "%s:%d: dropped a torn last line (%d bytes, from a write interrupted by a kill); its request will be "
            "sent again",
            self.path, lineno, len(tail),
        )
        return offset


def own_copy(path: Path) -> bool:
    """Make ``path`` a private, writable file if it is a link into another store (a DVC cache object).

    A symlink, a file with other hard links, or a read-only file is replaced, atomically, by a copy of its bytes,
    so that appending to it never changes the object it pointed at.

    Returns:
        Whether a copy was made.
    """
    st = path.lstat()
    if not (path.is_symlink() or st.st_nlink > 1 or not os.access(path, os.W_OK)):
        return False
    with atomic_file(path) as tmp:
        shutil.copyfile(path, tmp)  # follows a symlink: the bytes, not the link
    log.info("%s: was a link into another store (a DVC cache); appending to a private copy", path)
    return True


def generate_with_cache(
    backend: Backend,
    requests: Sequence[GenRequest],
    cache: ResponseCache,
    on_response: Callable[[GenRequest, GenResponse], None] | None = None,
    ledger: Ledger | None = None,
) -> list[FailedRequest]:
    """Answer ``requests`` from ``cache`` where possible and send only the rest, caching each raw answer first.

    Requests that share a key within the batch are sent once; every one of them gets the answer.

    Args:
        backend: Any :class:`~retrofit.generate.base.Backend`.
        requests: The requests of this run.
        cache: The response cache; each new answer is ``put`` before ``on_response`` sees it.
        on_response: Called once per request (cached or new, duplicates included), in the calling thread for
            cached ones and in whatever thread the backend uses for new ones. ``None``: just fill the cache.
        ledger: Where cache hits and in-batch duplicates are counted (pass the backend's ledger).

    Returns:
        The requests the backend reported as failed (the backend's return value when it is a list, else ``[]``).
        Each failed key stands for every request in the batch that shares it.

    Raises:
        ValueError: The backend answered with a response whose key is not the request's.
    """
    groups: dict[str, list[GenRequest]] = {}
    hits: list[GenRequest] = []
    for req in requests:
        if req.key in cache:
            hits.append(req)
        else:
            groups.setdefault(req.key, []).append(req)
    todo = [group[0] for group in groups.values()]
    n_dupes = sum(len(group) - 1 for group in groups.values())
    if ledger is not None:
        ledger.record_cached(len(hits))
        ledger.record_duplicates(n_dupes)
    log.info(
        "%d requests: %d answered from %s, %d to send, %d in-batch duplicates",
        len(requests), len(hits), cache.path, len(todo), n_dupes,
    )
    if on_response is not None:
        for req in hits:
            cached = cache.get(req.key)
            assert cached is not None
            on_response(req, cached)

    def store(req: GenRequest, resp: GenResponse) -> None:
        if resp.key != req.key:
            raise ValueError(f"backend {backend.name!r} answered request {req.key} with a response for {resp.key}")
        cache.put(resp)  # raw answer is durable before anyone parses it
        if on_response is not None:
            for member in groups[req.key]:
                on_response(member, resp)

    result: Any = backend.generate(todo, store) if todo else None
    return list(result) if isinstance(result, list) else []


def answer_all(
    backend: Backend, requests: Sequence[GenRequest], cache: ResponseCache, ledger: Ledger | None = None
) -> tuple[dict[str, GenResponse], list[FailedRequest]]:
    """:func:`generate_with_cache`, collected: every answered request's response by request key, and the failures."""
    answers: dict[str, GenResponse] = {}

    def keep(req: GenRequest, resp: GenResponse) -> None:
        answers[req.key] = resp

    return answers, generate_with_cache(backend, requests, cache, keep, ledger)



def _parse_row(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(row, dict) or any(f not in row for f in _FIELDS) or not isinstance(row["key"], str):
        return None
    return row


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
