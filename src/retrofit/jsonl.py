"""JSONL reading and atomic writing, and the row contracts stages check their inputs against.

Every artifact passed between stages is JSONL with stable ids; its schema is documented in the module that
produces it, which also defines its :class:`RowSchema` (e.g. :data:`retrofit.mine.TRAIN_ROW`). A stage reads its
inputs with ``read_jsonl(path, schema)`` before any work starts, so a missing file, a truncated line or a row
without a field fails at once with one line naming the file, the line and the field (:class:`InputError`).
Writers here are atomic: they write to a temporary file in the same directory and rename it into place, so a
killed stage never leaves a half-written artifact behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrofit.errors import InputError

_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object", type(None): "null"}


@dataclass(frozen=True)
class RowSchema:
    """The contract of one JSONL artifact's rows: required fields and their JSON types.

    Attributes:
        name: What a row is, for messages ("mined training row").
        stage: The stage that writes the file, for messages ("run the `mine` stage").
        fields: ``{field: allowed types}``; ``type(None)`` among them makes the field nullable. Fields not listed
            may appear and are not checked.
        nonempty: Fields whose string value must not be blank.
    """

    name: str
    stage: str
    fields: Mapping[str, tuple[type, ...]]
    nonempty: tuple[str, ...] = field(default=())

    def problem(self, row: Any) -> str | None:
        """What is wrong with ``row`` under this schema, or ``None``."""
        if not isinstance(row, dict):
            return f"a {self.name} must be a JSON object, got {_JSON_TYPES.get(type(row), type(row).__name__)}"
        for name, types in self.fields.items():
            if name not in row:
                return f"field {name!r} is missing from the {self.name}"
            value = row[name]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                want = " or ".join(_JSON_TYPES.get(t, t.__name__) for t in types)
                got = _JSON_TYPES.get(type(value), type(value).__name__)
                return f"field {name!r} of the {self.name} is {got}, expected {want}"
            if name in self.nonempty and isinstance(value, str) and not value.strip():
                return f"field {name!r} of the {self.name} is empty"
        return None


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
