"""Files: JSONL and JSON reading and atomic writing, atomic output directories, content hashes and fingerprints.

Every artifact passed between stages is JSONL with stable ids; its schema is documented in the module that
produces it, which also defines its :class:`~retrofit.schema.RowSchema` (e.g. :data:`retrofit.mine.TRAIN_ROW`). A stage reads its
inputs with ``read_jsonl(path, schema)`` before any work starts, so a missing file, a truncated line or a row
without a field fails at once with one line naming the file, the line and the field (:class:`InputError`).
This module holds the package's one atomic writer. A file (:func:`atomic_file`, under :func:`write_jsonl`,
:func:`write_json` and every cache) is written to a temporary sibling and renamed into place, so a killed process
never leaves a half-written file. A directory (:func:`atomic_dir`) is built in a temporary sibling and swapped in
with an **exchange rename** (Linux ``renameat2(RENAME_EXCHANGE)``): old and new trade places in one step, so there
is no moment at which the target is missing. Where the filesystem or OS has no exchange rename, a **journal** takes
its place: the old directory is parked under ``.<name>.old`` before the new one is renamed in, and the next
:func:`atomic_dir` on that target (or :func:`recover_dir`) completes or undoes an interrupted swap. A symlink swap
was not chosen because DVC outputs would then be symlinks, which DVC tracks as links, not as directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from retrofit.errors import InputError
from retrofit.schema import RowSchema


def read_jsonl(path: str | Path, schema: RowSchema | None = None) -> list[dict[str, Any]]:
    """Read a whole JSONL file, every row checked against ``schema`` when given.

    Args:
        path: File to read.
        schema: The producer's row contract.

    Returns:
        One dict per non-empty line.

    Raises:
        InputError: The file is missing, a line is not valid JSON (a truncated file) or a row breaks ``schema``;
            the message names the file, the line and the field.
    """
    return list(iter_jsonl(path, schema))


def iter_jsonl(path: str | Path, schema: RowSchema | None = None) -> Iterator[dict[str, Any]]:
    """Iterate over the rows of a JSONL file (see :func:`read_jsonl`)."""
    path = Path(path)
    if not path.is_file():
        made_by = f"; it is written by the `{schema.stage}` stage (dvc repro {schema.stage})" if schema else ""
        raise InputError(f"{path}: file not found{made_by}")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg}; a truncated file?); "
                                 "regenerate this file") from exc
            if schema is not None and (problem := schema.problem(row)) is not None:
                raise InputError(f"{path}:{lineno}: {problem}")
            yield row


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces ``path`` only when the block ends without an error.

    The one atomic file writer: the temporary file is in the same directory (so the rename is atomic), it is made
    an ordinary readable file (0644; ``mkstemp`` makes 0600), and on an error, or when the block never completes,
    it is removed and ``path`` keeps its old content.

    Args:
        path: The final file; parent directories are created.

    Yields:
        The temporary path to write (it exists and is empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to ``path`` atomically (:func:`atomic_file`).

    Args:
        path: Destination file; parent directories are created.
        rows: Rows to serialise, one JSON object per line, keys in insertion order.

    Returns:
        The number of rows written.
    """
    n = 0
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document atomically, pretty-printed with sorted keys (stable diffs for DVC metrics)."""
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=True)
        fh.write("\n")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


#: ``renameat2``'s flag that swaps two paths in one step (Linux 3.15+, glibc 2.28+).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap the paths ``a`` and ``b`` atomically.

    Raises:
        OSError: No exchange rename here (``ENOSYS``: not Linux or an old libc; ``EINVAL``: the filesystem lacks it).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(a))
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def _journal(target: Path) -> Path:
    """Where the journal swap parks the old directory of ``target``."""
    return target.with_name(f".{target.name}.old")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def recover_dir(target: str | Path) -> None:
    """Finish what a killed :func:`atomic_dir` left beside ``target``.

    - A journal (``.<name>.old``) with the target present: the swap completed; the old copy is removed.
    - A journal without the target: the swap stopped between its two renames; the old directory, which is whole,
      is put back.
    - A temporary sibling (``.<name>.<pid>.*.tmp``) of a process that no longer runs: removed.
    """
    target = Path(target)
    journal = _journal(target)
    if journal.exists():
        if target.exists():
            shutil.rmtree(journal)
        else:
            os.rename(journal, target)
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            pid = stale.name[len(target.name) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    """Put the finished directory ``new`` at ``target``; the old one (if any) ends up at ``new`` or is removed."""
    if not target.exists():
        os.rename(new, target)  # nothing to keep whole: one atomic rename
        return
    try:
        _exchange(new, target)  # old and new trade places: target is never missing
        return
    except OSError as err:
        if err.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    journal = _journal(target)
    os.rename(target, journal)  # a crash from here to the next rename: recover_dir() puts the old one back
    os.rename(new, target)
    shutil.rmtree(journal)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into place only on success.

    A stage rewrites its outputs completely; if it fails or is killed at any point, the old output (or nothing, if
    there was none) stays whole, never a partial or missing one: see the module docstring for the exchange rename
    and its journal fallback. An interrupted earlier swap of the same target is completed first
    (:func:`recover_dir`).

    Args:
        target: The final directory.

    Yields:
        The temporary directory to write into.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes 0700; outputs should have ordinary directory permissions
    try:
        yield tmp
        _swap_in(tmp, target)
    finally:
        if tmp.exists():  # the old directory after an exchange, or an unfinished new one
            shutil.rmtree(tmp, ignore_errors=True)


def fingerprint_model_dir(model_dir: str | Path, extra: Mapping[str, Any] | None = None) -> str:
    """sha256 over every file of a model directory (paths and contents), plus optional settings.

    ``README.md`` and hidden files are skipped: they do not change the embeddings.

    Args:
        model_dir: A model directory.
        extra: JSON-serialisable settings that change the embeddings without being in the files (prompt names).

    Returns:
        64 hex digits.
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*")
        if p.is_file() and p.name != "README.md" and not any(s.startswith(".") for s in p.relative_to(model_dir).parts)
    )
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        digest.update(b"\0")
    if extra:
        digest.update(json.dumps(dict(extra), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()
