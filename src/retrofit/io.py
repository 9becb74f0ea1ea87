"""Files: JSONL and JSON reading and atomic writing, atomic output directories, content hashes and fingerprints.

Every artifact passed between stages is JSONL with stable ids; its schema is documented in the module that
produces it, which also defines its :class:`~retrofit.schema.RowSchema` (e.g. :data:`retrofit.mine.TRAIN_ROW`). A stage reads its
inputs with ``read_jsonl(path, schema)`` before any work starts, so a missing file, a truncated line or a row
without a field fails at once with one line naming the file, the line and the field (:class:`InputError`).
Writers here are atomic: they write to a temporary file in the same directory and rename it into place, so a
killed stage never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
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


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to ``path`` atomically (temp file + rename).

    Args:
        path: Destination file; parent directories are created.
        rows: Rows to serialise, one JSON object per line, keys in insertion order.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document atomically, pretty-printed with sorted keys (stable diffs for DVC metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into place only on success.

    A stage rewrites its outputs completely; if it fails halfway, the old output (or nothing) stays, never a
    partial one.

    Args:
        target: The final directory.

    Yields:
        The temporary directory to write into.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes 0700; outputs should have ordinary directory permissions
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
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
