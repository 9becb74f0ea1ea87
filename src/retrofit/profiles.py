"""Params profiles: merge an overlay such as ``profiles/paper.yaml`` into ``params.yaml``, validated, comments kept.

``profiles/paper.yaml`` is a params *overlay*: a nested mapping with the keys of ``params.yaml`` that paper scale
changes. :func:`apply_profile` deep-merges it into ``params.yaml`` so that DVC tracks every value like any other
param. Groups (the pydantic models of :mod:`retrofit.config`) merge key by key; every other value (scalars, lists,
and value mappings such as ``generate.task_types`` or ``runs``) is replaced whole, so an overlay never leaves a stale
entry of the embedded default behind. The merged params are validated with :func:`retrofit.config.validate_params`
*before* anything is written; on any error nothing is written. Comments survive the merge (ruamel.yaml round
trip): a value the profile sets carries the profile's inline comment, every other value keeps its own, and the file
header says which profile was applied.

Why a merge of our own rather than DVC's or Hydra's: both could select a params file per profile, but ``params.yaml``
is the file users read and ``dvc exp run -S`` edits, and its inline comments say *why* each value is what it is.
Hydra's composition and a plain YAML dump both drop those comments; keeping them needs ruamel.yaml's round trip,
and the group-versus-value rule above needs the typed params. The rest (diff, backup, atomic write) is small.

Command line::

    python -m retrofit.profiles profiles/paper.yaml [--params params.yaml] [--backup] [--dry-run]
"""

from __future__ import annotations

import argparse
import copy
import difflib
import io
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.config import Params, ParamsError, validate_params
from retrofit.io import atomic_file

_MISSING = object()


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round trip: comments, key order and flow style survive
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines (flow lists of languages)
    y.representer.add_representer(  # write None as `null`, not as an empty value
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return y


def is_group(path: Sequence[str]) -> bool:
    """Whether ``path`` names a params *group* (a pydantic model, merged key by key) rather than a value."""
    from pydantic import BaseModel

    model: type[BaseModel] = Params
    for part in path:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return False
        model = ann
    return True


def _plain(node: Any) -> Any:
    """ruamel nodes -> plain dicts, lists and scalars (what ``yaml.safe_load`` would give)."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _token(cmap: Any, key: Any) -> Any:
    item = cmap.ca.items.get(key)
    return item[2] if item and len(item) > 2 else None


def _split_comment(value: str) -> tuple[str, str]:
    """A comment token's text -> (inline comment on the value's line, what follows that line: blank lines etc.)."""
    if value.startswith("#"):
        inline, _, rest = value.partition("\n")
        return inline, rest
    return "", value.removeprefix("\n")


def _set_token(cmap: Any, key: Any, inline: str, rest: str, column: int | None) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    text = (inline + "\n" + rest) if inline else ("\n" + rest if rest else "")
    if not text:
        if key in cmap.ca.items:
            item = cmap.ca.items[key]
            item[2] = None
            if not any(item):
                del cmap.ca.items[key]
        return
    item = cmap.ca.items.setdefault(key, [None, None, None, None])
    item[2] = CommentToken(text, CommentMark(column if column is not None else 0), None)


def _is_block_map(node: Any) -> bool:
    from ruamel.yaml.comments import CommentedMap

    return isinstance(node, CommentedMap) and len(node) > 0 and not node.fa.flow_style()


def _take_trailing(parent: Any, key: Any) -> str:
    """Remove and return the layout (blank lines, full-line comments) that follows ``parent[key]``'s last line."""
    value = parent[key]
    if _is_block_map(value):
        return _take_trailing(value, list(value.keys())[-1])
    tok = _token(parent, key)
    if tok is None:
        return ""
    inline, rest = _split_comment(tok.value)
    _set_token(parent, key, inline, "", tok.column)
    return rest


def _attach(parent: Any, key: Any, inline: str, column: int | None, rest: str) -> None:
    """Put ``inline`` after ``parent[key]``'s key line and ``rest`` after its last line."""
    value = parent[key]
    if _is_block_map(value):
        _set_token(parent, key, inline, "", column)
        last = list(value.keys())[-1]
        tok = _token(value, last)
        last_inline, _ = _split_comment(tok.value) if tok is not None else ("", "")
        _attach(value, last, last_inline, tok.column if tok is not None else None, rest)
    else:
        _set_token(parent, key, inline, rest, column)


def _detached(node: Any) -> Any:
    """A deep copy of an overlay node keeping only inline comments (no header, no layout of the profile file)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = copy.deepcopy(node)

    def clean(n: Any) -> None:
        if isinstance(n, (CommentedMap, CommentedSeq)):
            n.ca.comment = None
            n.ca.end = []
            for key in list(n.ca.items):
                item = n.ca.items[key]
                tok = next((t for t in item if t is not None and hasattr(t, "value")), None)
                inline = _split_comment(tok.value)[0] if tok is not None else ""
                n.ca.items[key] = [None, None, None, None]
                if inline and isinstance(n, CommentedMap):
                    _set_token(n, key, inline, "", tok.column)
                elif inline:
                    n.ca.items[key][0] = copy.copy(tok)
                    n.ca.items[key][0].value = inline + "\n"
                if not any(n.ca.items[key]):
                    del n.ca.items[key]
            for child in n.values() if isinstance(n, CommentedMap) else n:
                clean(child)

    clean(node)
    return node


def _merge(base: Any, over: Any, path: tuple[str, ...], changes: list[tuple[str, Any, Any]]) -> None:
    from ruamel.yaml.comments import CommentedMap

    for key in over:
        here = (*path, str(key))
        new = over[key]
        old = base.get(key, _MISSING)
        if isinstance(old, CommentedMap) and isinstance(new, CommentedMap) and is_group(here):
            _merge(old, new, here, changes)
            continue
        if old is not _MISSING and _plain(old) == _plain(new):
            continue  # unchanged: keep params.yaml's own comment
        changes.append((".".join(here), None if old is _MISSING else _plain(old), _plain(new)))
        tok = _token(over, key)
        inline, column = (_split_comment(tok.value)[0], tok.column) if tok is not None else ("", None)
        if old is not _MISSING:
            rest = _take_trailing(base, key)
        elif len(base):
            rest = _take_trailing(base, list(base.keys())[-1])  # the group's closing blank line moves down
        else:
            rest = ""
        base[key] = _detached(new)
        _attach(base, key, inline, column, rest)


def merge_profile_text(
    params_text: str, profile_text: str, profile_name: str = "profile"
) -> tuple[str, dict[str, Any], list[tuple[str, Any, Any]]]:
    """Deep-merge a profile's YAML text into a params file's YAML text (pure; nothing is validated or written).

    Args:
        params_text: The current ``params.yaml`` text.
        profile_text: The overlay's text (a nested mapping with keys of ``params.yaml``).
        profile_name: How the header of the result names the profile (e.g. ``profiles/paper.yaml``).

    Returns:
        ``(new_text, merged, changes)``: the merged YAML text with comments, the merged params as plain data, and
        ``(dotted key, old value or None, new value)`` for every value the profile changed, in profile order.

    Raises:
        ParamsError: Either text is not YAML or not a mapping at the top level.
    """
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    y = _yaml()
    docs = []
    for what, text in (("params", params_text), (profile_name, profile_text)):
        try:
            doc = y.load(text)
        except YAMLError as exc:
            raise ParamsError(f"{what}: not valid YAML: {exc}") from None
        doc = CommentedMap() if doc is None else doc
        if not isinstance(doc, CommentedMap):
            raise ParamsError(f"{what}: expected a mapping of groups at the top level, got {type(doc).__name__}")
        docs.append(doc)
    base, over = docs
    changes: list[tuple[str, Any, Any]] = []
    _merge(base, over, (), changes)
    if not changes:  # nothing to apply: the text stays as it is
        return params_text, _plain(base), changes
    base.yaml_set_start_comment(
        f"Params with the profile {profile_name} applied (python -m retrofit.profiles {profile_name}).\n"
        "Values the profile sets carry its comments; every other value keeps its previous value and comment.\n"
        "Validated by retrofit.config before any stage runs, like any params.yaml."
    )
    buf = io.StringIO()
    y.dump(base, buf)
    return buf.getvalue(), _plain(base), changes


def apply_profile(profile: Path, params: Path, *, backup: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Merge a params profile into ``params.yaml``, validating the result before anything is written.

    Args:
        profile: The overlay, e.g. ``profiles/paper.yaml``.
        params: The params file to update (``params.yaml``).
        backup: Copy the old file to ``<params>.bak`` before replacing it.
        dry_run: Compute, validate and return, but write nothing.

    Returns:
        ``{"params": merged params (plain data), "changes": [{"key", "old", "new", "new_key"}, ...],
        "text": new file text, "diff": unified diff of the file, "written": bool}``.

    Raises:
        ParamsError: A file is missing or not YAML, or the merged params fail validation (the message names the
            key); nothing is written then.
    """
    profile, params = Path(profile), Path(params)
    for path in (profile, params):
        if not path.is_file():
            raise ParamsError(f"{path}: not found")
    old_text = params.read_text(encoding="utf-8")
    text, merged, changes = merge_profile_text(old_text, profile.read_text(encoding="utf-8"), str(profile))
    validate_params(merged, source=f"{params} + {profile}")  # before writing: an invalid merge writes nothing
    import yaml

    if yaml.safe_load(text) != merged:  # the comment-preserving dump must mean exactly the merged params
        raise ParamsError(f"{params}: internal error: the merged YAML does not re-read as the merged params")
    diff = "".join(
        difflib.unified_diff(old_text.splitlines(True), text.splitlines(True), str(params), f"{params} (merged)")
    )
    written = False
    if not dry_run and text != old_text:
        if backup:
            shutil.copy2(params, params.with_name(params.name + ".bak"))
        with atomic_file(params) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written = True
    before = yaml.safe_load(old_text) or {}

    def existed(dotted: str) -> bool:
        node: Any = before
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return {
        "params": merged,
        "changes": [{"key": k, "old": o, "new": n, "new_key": not existed(k)} for k, o, n in changes],
        "text": text,
        "diff": diff,
        "written": written,
    }


def _cmd_apply(args: argparse.Namespace) -> None:
    out = apply_profile(Path(args.profile), Path(args.params), backup=args.backup, dry_run=args.dry_run)
    for c in out["changes"]:
        print(f"{c['key']}: {'(new key)' if c['new_key'] else json.dumps(c['old'])} -> {json.dumps(c['new'])}")
    if args.dry_run:
        print(out["diff"], end="")
        print(f"dry run: {len(out['changes'])} value(s) would change in {args.params}; validated, nothing written")
    else:
        state = "written" if out["written"] else "already up to date"
        print(f"{args.params}: {len(out['changes'])} value(s) changed, validated, {state}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m retrofit.profiles PROFILE``: merge a params profile into ``params.yaml``, validated first."""
    p = argparse.ArgumentParser(prog="python -m retrofit.profiles", description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--backup", action="store_true", help="keep the old file as <params>.bak")
    p.add_argument("--dry-run", action="store_true", help="print the changes and the diff; write nothing")
    args = p.parse_args(argv)
    try:
        _cmd_apply(args)
    except (ParamsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
