"""Paper scale: the params profile, MMTEB(Multilingual) retrieval evaluation, and English task data from the hub.

Three concerns that only the paper-scale run has, each usable on its own:

- **The profile** (:func:`apply_profile`). ``profiles/paper.yaml`` is a params *overlay*: a nested mapping with the
  keys of ``params.yaml`` that paper scale changes. :func:`apply_profile` deep-merges it into ``params.yaml`` so that
  DVC tracks every value like any other param. Groups (the pydantic models of :mod:`retrofit.config`) merge key by
  key; every other value (scalars, lists, and value mappings such as ``generate.task_types`` or ``runs``) is
  replaced whole, so an overlay never leaves a stale entry of the embedded default behind. The merged params are
  validated with :func:`retrofit.config.validate_params` *before* anything is written; on any error nothing is
  written. Comments survive the merge (ruamel.yaml round trip): a value the profile sets carries the profile's
  inline comment, every other value keeps its own, and the file header says which profile was applied.
- **MMTEB(Multilingual) retrieval** (:func:`mmteb_retrieval_tasks`, :func:`evaluate_mmteb`). The paper reports the
  mean over the 18 Retrieval tasks of MTEB(Multilingual). The task list is resolved through mteb itself
  (``mteb.get_benchmark("MTEB(Multilingual, v2)")`` filtered to task type ``Retrieval``), which needs no network.
  Evaluation needs each task's hub dataset; every task is checked before the model does any work.
- **English task data from the hub** (:func:`hub_english_pairs`): one ``datasets`` dataset (a hub id or a local
  copy) as rows of the project's English pair schema (see :mod:`retrofit.english`).

Every hub-facing path fails fast. With ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)
set, only the local cache is read; online, one metadata request with a 10 s timeout decides whether the Hub is
reachable before any download starts. Either way a miss raises a ``RuntimeError`` that names the asset and says how
to provide it (a pre-populated ``HF_HOME``, a local path, or a Hub mirror through ``HF_ENDPOINT``), instead of the
minutes of retries the libraries would otherwise spend.

``evaluate_mmteb`` writes, under ``out_dir``::

    results/<task>.json     mteb's TaskResult per task (every metric mteb computes)
    mteb_cache/             this run's own mteb ResultCache (never ~/.cache/mteb, see retrofit.evaluation)
    per_query/<task>.json   with per_query=True: retrofit.evaluation.per_query_scores, for the bootstrap
    metrics.json            {"model", "benchmark", "tasks_expected", "tasks_done", "complete", "missing",
                             "headline": {"ndcg_at_10": mean, "main_score": mean},   # over tasks_done
                             "headline_definition": "...",
                             "tasks": {<task>: {"main_score_name", "main_score", "ndcg_at_10" (null for
                                                bitext mining), "splits": [...], "subsets": int,
                                                "subset_scores": {<subset>: main score}}},
                             "max_seq_length": int, "per_query_check": {<task>: largest gap} | null}
    summary.json            {"headline", "complete"} (what ``dvc metrics show`` prints)
    table.md                one row per task

The MMTEB leaderboard's Retrieval column (where the paper's 60.56 and the anchors in the README come from) is the
mean of each task's *main score*. That is nDCG@10 for 16 of the 18 tasks; ``LEMBPasskeyRetrieval`` uses nDCG@1 and
``StatcanDialogueDatasetRetrieval`` Recall@10. Both means are reported, ``main_score`` being the comparable one.

Command line::

    python -m retrofit.paper apply profiles/paper.yaml [--params params.yaml] [--backup] [--dry-run]
    python -m retrofit.paper tasks [--benchmark "MTEB(Multilingual, v2)"]
    python -m retrofit.paper prefetch [--tasks ...]          # networked machine: fill HF_HOME with the task data
    python -m retrofit.paper evaluate --model DIR --name NAME --out DIR [--shard K/N] [--tasks ...]
    python -m retrofit.paper summarize --out DIR             # after sharded runs: one metrics.json

References:
    Tu, Zhou, Yavuz, "Retrofitting Small Multilingual Models for Retrieval", arXiv 2510.14274.
    Enevoldsen et al., "MMTEB: Massive Multilingual Text Embedding Benchmark", arXiv 2502.13595.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from retrofit import hub
from retrofit.config import HubEnglishSpec, Params, ParamsError, default_params, validate_params
from retrofit.errors import AssetError, InputError
from retrofit.jsonl import write_json
from retrofit.models import check_model_dir

log = logging.getLogger(__name__)

#: The benchmark whose Retrieval tasks the paper averages (mteb's current name for MTEB(Multilingual)).
DEFAULT_BENCHMARK = "MTEB(Multilingual, v2)"
#: The mteb task type the paper's headline averages over.
RETRIEVAL = "Retrieval"

#: Mean main score (x100) over the 18 Retrieval tasks of MTEB(Multilingual), as the README's anchor table quotes it.
ANCHORS: dict[str, float] = {
    "Qwen3-Embedding-0.6B": 64.65,
    "EmbeddingGemma-300M": 62.49,
    "Tu et al. (2025), ~300M retrofitted": 60.56,
    "gte-Qwen2-7B-instruct": 60.08,
    "SFR-Embedding-Mistral": 59.44,
    "gte-multilingual-base": 57.11,
    "multilingual-e5-base": 52.72,
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_MISSING = object()


# ----------------------------------------------------------------------------------------------------------------
# The profile: a params overlay merged into params.yaml
# ----------------------------------------------------------------------------------------------------------------


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round trip: comments, key order and flow style survive
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines (flow lists of languages)
    y.representer.add_representer(  # write None as `null`, not as an empty value
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return y


def _is_group(path: Sequence[str]) -> bool:
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
    return "", value[1:] if value.startswith("\n") else value


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
        if isinstance(old, CommentedMap) and isinstance(new, CommentedMap) and _is_group(here):
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
        f"Params with the profile {profile_name} applied (python -m retrofit.paper apply {profile_name}).\n"
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
        fd, tmp = tempfile.mkstemp(dir=params.parent, prefix=f".{params.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, params)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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


# ----------------------------------------------------------------------------------------------------------------
# Offline / reachability checks shared by every hub-facing path
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# English task pairs from a hub (or local) dataset
# ----------------------------------------------------------------------------------------------------------------

#: Column names tried, in order, when a spec does not name its columns (sentence-transformers' dataset conventions).
QUERY_COLUMNS: tuple[str, ...] = ("query", "anchor", "question", "title", "sentence1", "premise", "claim")
POSITIVE_COLUMNS: tuple[str, ...] = (
    "positive", "answer", "abstract", "document", "passage", "context", "sentence2", "hypothesis", "evidence", "text",
)
NEGATIVE_COLUMNS: tuple[str, ...] = ("negative", "negative_1", "hard_negative")

#: The keys a hub English spec may have: :class:`~retrofit.config.HubEnglishSpec`'s, and a ``name``.
_SPEC_KEYS = {"name", *HubEnglishSpec.model_fields}


def _spec(spec: Any) -> dict[str, Any]:
    raw = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        raise ParamsError(f"hub English spec: unknown key(s) {unknown}; expected some of {sorted(_SPEC_KEYS)}")
    if not raw.get("dataset") or not raw.get("task_type"):
        raise ParamsError(f"hub English spec {raw}: 'dataset' (hub id or local path) and 'task_type' are required")
    return {**default_params().data.hub_english_defaults.model_dump(), **raw}  # params.yaml's, like data.hub_english


def _english_help(spec: dict[str, Any], name: str) -> str:
    config = f", config {spec['config']!r}" if spec["config"] else ""
    return f"data.hub_english.{name} (dataset {spec['dataset']}{config}, split {spec['split']!r})"


def _load_english(spec: dict[str, Any], name: str, cache_dir: str | None) -> Any:
    """The dataset split as a ``datasets`` (Iterable)Dataset, from a local copy or the hub, failing fast."""
    import datasets

    target = spec["dataset"]
    local = Path(target).expanduser()
    describe = _english_help(spec, name)
    if local.exists():
        try:
            if local.is_file():
                builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
                if builder is None:
                    raise ParamsError(f"unsupported file type {local.suffix!r}; use .jsonl, .json, .parquet or .csv")
                return datasets.load_dataset(builder, data_files=str(local), split="train", cache_dir=cache_dir)
            if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
                loaded = datasets.load_from_disk(str(local))
                return loaded[spec["split"]] if isinstance(loaded, datasets.DatasetDict) else loaded
            return datasets.load_dataset(
                str(local), spec["config"], split=spec["split"], cache_dir=cache_dir, streaming=spec["streaming"]
            )
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise InputError(f"{describe}: cannot read the local copy: {type(exc).__name__}: {exc}") from None
    if not _HUB_ID.match(target):
        raise AssetError(
            f"{describe}: no such file or directory, and not a hub dataset id ('org/name'); give a hub id or a local "
            "path (a Dataset.save_to_disk directory, a clone of the dataset repository, or a .jsonl/.parquet/.csv file)"
        )
    local_way = (
        f"set data.hub_english.{name}.dataset to a local copy (a Dataset.save_to_disk directory, a clone of "
        f"https://huggingface.co/datasets/{target}, or a .jsonl/.parquet/.csv file)"
    )
    offline = hub.offline()
    if not offline:
        hub.probe(target, describe, revision=spec["revision"], local=local_way)
    try:
        return datasets.load_dataset(
            target, spec["config"], split=spec["split"], revision=spec["revision"], cache_dir=cache_dir,
            streaming=spec["streaming"],
        )
    except Exception as exc:
        reason = ("offline mode is on and it is not in the local cache" if offline else "download failed") + (
            f"; datasets said: {type(exc).__name__}: {str(exc)[:300]}"
        )
        raise AssetError(f"{describe}: cannot load it ({reason}). {hub.provide_help(local=local_way)}") from exc


def _pick(
    columns: Sequence[str], explicit: str | None, candidates: Sequence[str], role: str, describe: str
) -> str | None:
    if explicit:
        if explicit not in columns:
            raise ParamsError(f"{describe}: no column {explicit!r} for the {role}; columns are {list(columns)}")
        return explicit
    return next((c for c in candidates if c in columns), None)


def hub_english_pairs(
    spec: Any,
    limit: int,
    *,
    name: str | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    drops: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """English (query, positive, negative) pairs from one dataset, in the schema of :mod:`retrofit.english`.

    Rows come out as ``{"id", "source", "task_type", "lang": "en", "query", "positive", "negative": str | None}``
    with ``id = "<name>-<split>-<row index in the source split, 7 digits>"``. A map-style dataset is read in a
    seeded random order (a permutation of its rows, so a smaller ``limit`` gives a prefix of a larger one); a
    streamed one (``streaming: true``, for splits too large to download, such as S2ORC's 42M title-abstract pairs)
    is read from its start. Rows with an empty query or positive (``empty_text``) and repeats of ``(query,
    positive)`` (``duplicate_pair``) are dropped and counted, as in :mod:`retrofit.english`; reading continues
    until ``limit`` rows are kept or the split ends.

    Args:
        spec: A mapping (or pydantic model) with ``dataset`` (hub id such as ``sentence-transformers/all-nli``, or a
            local path: a ``Dataset.save_to_disk`` directory, a clone of the dataset repository, or a
            ``.jsonl``/``.json``/``.parquet``/``.csv`` file), ``task_type`` (recorded per row) and optionally
            ``config``, ``split`` (default ``train``), ``revision``, ``streaming``, and the column names ``query``,
            ``positive``, ``negative`` (default: the first present of :data:`QUERY_COLUMNS`,
            :data:`POSITIVE_COLUMNS`, :data:`NEGATIVE_COLUMNS`).
        limit: Rows to return at most.
        name: The source name (``source`` field and id prefix); default ``spec["name"]`` or the dataset's last path
            component.
        seed: Order of a map-style dataset.
        cache_dir: ``datasets`` cache directory (default: ``HF_HOME``'s).
        drops: Filled with dropped-row counts by reason, if given.

    Returns:
        The rows, at most ``limit``.

    Raises:
        AssetError: A hub dataset cannot be obtained (offline and not cached, Hub unreachable, unknown or gated
            repository; the message names the dataset and how to provide it), or ``dataset`` is neither an existing
            path nor a hub id.
        ParamsError: A bad spec, or no usable query/positive column (the message lists the columns).
        InputError: An unreadable local copy, or a column that does not hold text.
    """
    spec = _spec(spec)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    name = name or spec.get("name") or re.sub(r"[^a-z0-9]+", "_", Path(spec["dataset"]).name.lower()).strip("_")
    describe = _english_help(spec, name)
    ds = _load_english(spec, name, None if cache_dir is None else str(cache_dir))
    columns = list(ds.column_names or [])
    if not columns and spec["streaming"]:  # a stream without declared features: read the columns off its first row
        columns = list(next(iter(ds), {}) or {})
    q_col = _pick(columns, spec.get("query"), QUERY_COLUMNS, "query", describe)
    p_col = _pick(columns, spec.get("positive"), [c for c in POSITIVE_COLUMNS if c != q_col], "positive", describe)
    n_col = _pick(columns, spec.get("negative"), NEGATIVE_COLUMNS, "negative", describe)
    if q_col is None or p_col is None:
        raise ParamsError(
            f"{describe}: cannot tell the query and positive columns apart in {columns}; set 'query' and 'positive' "
            "(and 'negative', if any) in the spec"
        )
    drops = Counter() if drops is None else drops
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        if spec["streaming"] or not hasattr(ds, "__len__"):
            yield from enumerate(ds)
            return
        import numpy as np

        order = np.random.default_rng(seed).permutation(len(ds))
        step = max(limit, 1024)
        for start in range(0, len(order), step):
            idx = order[start : start + step].tolist()
            yield from zip(idx, ds.select(idx), strict=True)

    for index, row in rows():
        if len(out) >= limit:
            break
        values = {}
        for role, col in (("query", q_col), ("positive", p_col), ("negative", n_col)):
            v = row.get(col) if col else None
            if v is not None and not isinstance(v, str):
                raise InputError(f"{describe}: column {col!r} ({role}) holds {type(v).__name__}, expected text")
            values[role] = (v or "").strip()
        if not values["query"] or not values["positive"]:
            drops["empty_text"] += 1
            continue
        if (values["query"], values["positive"]) in seen:
            drops["duplicate_pair"] += 1
            continue
        seen.add((values["query"], values["positive"]))
        out.append({
            "id": f"{name}-{spec['split']}-{index:07d}",
            "source": name,
            "task_type": spec["task_type"],
            "lang": "en",
            "query": values["query"],
            "positive": values["positive"],
            "negative": values["negative"] or None,
        })
    log.info("%s: %d rows (columns %s/%s/%s), dropped %s", describe, len(out), q_col, p_col, n_col, dict(drops))
    return out


def prepare_hub_english(
    specs: Mapping[str, Any], out_dir: str | Path, limit: int, *, seed: int = 0, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Write each ``data.hub_english`` dataset as ``<name>.jsonl`` pairs beside the embedded English sources.

    Called by the ``prepare`` stage. The rows follow :mod:`retrofit.english`'s schema (from
    :func:`hub_english_pairs`), so dedupe, mining and training treat hub and embedded sources alike.

    Args:
        specs: ``{name: spec}``, as ``data.hub_english``.
        out_dir: The ``english`` directory of ``data/prepared`` (must exist).
        limit: Rows per dataset (``data.hub_english_rows``).
        seed: Read order of map-style datasets.
        cache_dir: ``datasets`` cache directory.

    Returns:
        ``{name: counts}`` in :func:`retrofit.english.build_pairs`' form (``candidates``, ``dropped``, ``per_lang``,
        ``task_type``, ``with_negative``, ``written``).

    Raises:
        AssetError: A dataset cannot be obtained (the message names it and how to provide it); nothing is written
            for the failing dataset, and the stage's atomic output directory keeps the last good data.
    """
    from retrofit.jsonl import write_jsonl

    counts: dict[str, Any] = {}
    for name, spec in specs.items():
        drops: Counter[str] = Counter()
        rows = hub_english_pairs(spec, limit, name=name, seed=seed, cache_dir=cache_dir, drops=drops)
        write_jsonl(Path(out_dir) / f"{name}.jsonl", rows)
        counts[name] = {
            "candidates": len(rows) + sum(drops.values()),
            "dropped": dict(sorted(drops.items())),
            "per_lang": {"en": len(rows)},
            "task_type": _spec(spec)["task_type"],
            "with_negative": sum(1 for r in rows if r["negative"]),
            "written": len(rows),
        }
        log.info("hub english %s: %d written, dropped %s", name, len(rows), dict(drops))
    return counts


# ----------------------------------------------------------------------------------------------------------------
# MMTEB(Multilingual) retrieval: task resolution, offline statistics, evaluation
# ----------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _benchmark_tasks(benchmark: str, task_types: tuple[str, ...]) -> tuple[Any, ...]:
    import mteb

    try:
        bench = mteb.get_benchmark(benchmark)
    except KeyError as exc:
        raise ParamsError(f"evaluate.mmteb.benchmark {benchmark!r}: {exc.args[0] if exc.args else exc}") from None
    tasks = tuple(t for t in bench.tasks if t.metadata.type in task_types)
    if not tasks:
        raise ParamsError(f"benchmark {benchmark!r} has no task of type(s) {list(task_types)}")
    return tasks


def mmteb_tasks(
    benchmark: str = DEFAULT_BENCHMARK, task_types: Sequence[str] = (RETRIEVAL,), names: Sequence[str] | None = None
) -> list[Any]:
    """The benchmark's mteb task objects of the given types, in benchmark order (offline: metadata only).

    Args:
        benchmark: An mteb benchmark name.
        task_types: mteb task types to keep.
        names: Keep only these tasks (for shards and smoke runs); every name must be in the benchmark selection.

    Returns:
        Shared task objects: copy one (``copy.deepcopy``) before loading data into it.

    Raises:
        ParamsError: Unknown benchmark, no task of the types, or a name not in the selection.
    """
    tasks = list(_benchmark_tasks(benchmark, tuple(task_types)))
    if names is None:
        return tasks
    by_name = {t.metadata.name: t for t in tasks}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ParamsError(
            f"tasks {unknown} are not {list(task_types)} tasks of {benchmark!r}; choose from {list(by_name)}"
        )
    wanted = set(names)
    return [t for t in tasks if t.metadata.name in wanted]


def mmteb_retrieval_tasks(benchmark: str = DEFAULT_BENCHMARK) -> list[str]:
    """Names of the Retrieval tasks of an mteb benchmark, resolved through mteb itself (no network).

    Args:
        benchmark: An mteb benchmark name; the default is the paper's MTEB(Multilingual).

    Returns:
        Task names in benchmark order (18 for ``"MTEB(Multilingual, v2)"``).
    """
    return [t.metadata.name for t in mmteb_tasks(benchmark)]


def _split_counts(stats: Mapping[str, Any]) -> dict[str, float]:
    """Counts and mean lengths of one split (or subset) of mteb's descriptive statistics.

    The shipped files are not all consistent (MLQARetrieval's character totals cover fewer subsets than its
    document count), so lengths come from ``average_text_length`` and counts from ``num_documents`` /
    ``num_queries``, falling back to ``total / average`` where a count is missing (BelebeleRetrieval).
    """

    def count_and_mean(kind: str) -> tuple[float, float]:
        text = stats.get(f"{kind}_text_statistics") or {}
        mean = float(text.get("average_text_length") or 0.0)
        n = stats.get(f"num_{kind}")
        if n is None:
            n = text["total_text_length"] / mean if mean else float(text.get("unique_texts") or 0)
        if not mean and n:
            mean = float(text.get("total_text_length") or 0) / float(n)
        return float(n), mean

    documents, doc_mean = count_and_mean("documents")
    queries, q_mean = count_and_mean("queries")
    docs_text = stats.get("documents_text_statistics") or {}
    queries_text = stats.get("queries_text_statistics") or {}
    return {
        "documents": documents,
        "queries": queries,
        "unique_documents": min(float(docs_text.get("unique_texts") or documents), documents),
        "unique_queries": min(float(queries_text.get("unique_texts") or queries), queries),
        "document_chars": documents * doc_mean,
        "query_chars": queries * q_mean,
    }


def mmteb_task_stats(task: Any) -> dict[str, Any]:
    """What evaluating ``task`` encodes, from the descriptive statistics mteb ships with the package (no download).

    Counts cover the task's evaluation splits and hf subsets (a benchmark can select fewer subsets than the task
    has; then the per-subset statistics are summed, or the split totals scaled by the subset fraction where mteb
    ships no per-subset numbers). A corpus shared by several subsets or splits counts once per subset and split,
    as mteb requests it (the project's encoder embeds each distinct text once per task, so this is an upper bound);
    ``unique_*`` is mteb's count of distinct texts in a split where it ships one; characters are counts x mean length.

    Args:
        task: An mteb retrieval task object (e.g. from :func:`mmteb_tasks`).

    Returns:
        ``{"task", "dataset", "revision", "main_score", "splits": [{"split", "documents", "queries",
        "unique_documents", "unique_queries", "document_chars", "query_chars"}, ...], plus the same six counts
        summed over splits}``; counts are integers.

    Raises:
        ValueError: mteb has no statistics for the task or one of its splits.
    """
    meta = task.metadata
    stats = meta.descriptive_stats
    if not stats:
        raise ValueError(f"{meta.name}: mteb ships no descriptive statistics (expected {meta.descriptive_stat_path})")
    chosen = list(getattr(task, "hf_subsets", None) or meta.hf_subsets)
    every = list(meta.hf_subsets)
    splits = []
    for split in getattr(task, "eval_splits", None) or meta.eval_splits:
        if split not in stats:
            raise ValueError(f"{meta.name}: no descriptive statistics for split {split!r} (have {sorted(stats)})")
        top = stats[split]
        if set(chosen) == set(every):
            counts = _split_counts(top)
        else:
            per = top.get("hf_subset_descriptive_stats") or {}
            if all(s in per for s in chosen):
                parts = [_split_counts(per[s]) for s in chosen]
                counts = {k: sum(p[k] for p in parts) for k in parts[0]}
            else:
                frac = len(chosen) / len(every)
                counts = {k: v * frac for k, v in _split_counts(top).items()}
        splits.append({"split": split, **{k: round(v) for k, v in counts.items()}})
    keys = ("documents", "queries", "unique_documents", "unique_queries", "document_chars", "query_chars")
    return {
        "task": meta.name,
        "dataset": meta.dataset.get("path"),
        "revision": meta.dataset.get("revision"),
        "main_score": meta.main_score,
        "splits": splits,
        **{k: sum(s[k] for s in splits) for k in keys},
    }


def _task_help(task: Any) -> str:
    meta = task.metadata
    return f"MMTEB task {meta.name} (hub dataset {meta.dataset.get('path')} @ {str(meta.dataset.get('revision'))[:12]})"


def _load_task_data(task: Any) -> None:
    """``task.load_data()``, turning any failure into a RuntimeError that names the dataset and how to provide it."""
    try:
        task.load_data()
    except Exception as exc:
        state = "offline mode is on and it is not in the local cache" if hub.offline() else "loading failed"
        prefetch = f"run `python -m retrofit.paper prefetch --tasks {task.metadata.name}`"
        raise AssetError(
            f"{_task_help(task)}: cannot load its data ({state}; {type(exc).__name__}: {str(exc)[:300]}). "
            + hub.provide_help(fetch=prefetch)
        ) from exc


def check_mmteb_reachable(tasks: Iterable[Any]) -> None:
    """Online only: one metadata request per task dataset, so an unreachable Hub fails before any work.

    Raises:
        AssetError: Naming the first task whose dataset cannot be reached.
    """
    if hub.offline():
        return
    for task in tasks:
        meta = task.metadata
        hub.probe(meta.dataset["path"], _task_help(task), revision=meta.dataset.get("revision"),
                  fetch=f"run `python -m retrofit.paper prefetch --tasks {meta.name}`")


def shard(names: Sequence[str], k: int, n: int, weights: Mapping[str, float] | None = None) -> list[str]:
    """Shard ``k`` of ``n`` of ``names``: greedy longest-first balancing by ``weights`` (e.g. tokens to encode).

    Args:
        names: Task names.
        k: Shard index, ``0 <= k < n``.
        n: Number of shards (one per GPU).
        weights: Cost per name (default 1 each).

    Returns:
        This shard's names, in the order of ``names``; every name lands in exactly one shard.
    """
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= k < n")
    weights = weights or {}
    loads = [0.0] * n
    owner: dict[str, int] = {}
    for name in sorted(names, key=lambda x: (-weights.get(x, 1.0), x)):
        i = min(range(n), key=lambda j: (loads[j], j))
        owner[name] = i
        loads[i] += weights.get(name, 1.0)
    return [x for x in names if owner[x] == k]


def evaluate_mmteb(
    model_path: str | Path,
    out_dir: str | Path,
    tasks: Sequence[Any] | None = None,
    batch_size: int = 128,
    model_name: str = "model",
    *,
    benchmark: str | None = DEFAULT_BENCHMARK,
    task_types: Sequence[str] = (RETRIEVAL,),
    device: str | None = None,
    bf16: bool = True,
    max_seq_length: int | None = None,
    expected: Sequence[str] | None = None,
    encoder: Any = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """Evaluate a local sentence-transformers model on mteb tasks (MMTEB(Multilingual) retrieval by default).

    Each task runs through ``mteb.evaluate`` with a :class:`retrofit.evaluation.PromptCachedEncoder` (explicit
    ``query: ``/``passage: `` prompts, every unique text embedded once per task; a fresh one per task bounds memory),
    a per-run ``mteb.ResultCache(out_dir / "mteb_cache")`` and ``overwrite_strategy="always"``: mteb's home cache
    keys results by the model's name and could hand a fine-tuned model its base model's scores.

    Args:
        model_path: A sentence-transformers model directory (no hub access).
        out_dir: Output directory (created); see the module docstring for its files. Per-task results from earlier
            or parallel (sharded) runs into the same directory are kept and summarised together.
        tasks: Task names to run (default: every task of ``task_types`` in ``benchmark``), or mteb task objects
            whose data is already loaded (:func:`retrofit.official.load_task`): those run as they are, with no
            benchmark lookup and no hub access.
        batch_size: Texts per forward pass.
        model_name: Names the results (``retrofit/<model_name>`` in mteb); unique per evaluated model.
        benchmark: The mteb benchmark.
        task_types: The benchmark's task types to select from (``tasks`` names a subset of them).
        device: torch device; ``None`` lets sentence-transformers choose (a GPU when there is one).
        bf16: Encode under bf16 autocast.
        max_seq_length: Override the model's saved ``max_seq_length`` (``evaluate.max_seq_length``: a model trained
            at 128 tokens is saved with 128; the MMTEB leaderboard runs multilingual-e5 at 512).
        expected: The tasks ``metrics.json`` should cover (default: ``tasks``); a shard passes the whole list, so
            ``complete`` turns true only when every shard's results are in ``out_dir``.
        encoder: An already loaded :class:`retrofit.evaluation.PromptCachedEncoder` to use for every task (its
            embedding cache is shared with the caller's other evaluations); ``None`` loads ``model_path``.
        per_query: Also write ``per_query/<task>.json`` (:func:`retrofit.evaluation.per_query_scores`, checked
            against mteb's scores) for the bootstrap of :mod:`retrofit.stats`.

    Returns:
        The content of ``metrics.json``.

    Raises:
        AssetError: A task's dataset cannot be obtained (offline and not cached, or Hub unreachable); raised
            before the model is loaded when online, and before that task is encoded when offline; the message
            names the dataset and how to provide it.
        AssetError: ``model_path`` is not a sentence-transformers directory with weights.
        ParamsError: Unknown benchmark or task names.
    """
    import mteb

    from retrofit.evaluation import (
        PromptCachedEncoder,
        check_per_query,
        load_encoder,
        per_query_scores,
    )

    out_dir = Path(out_dir)
    preloaded = tasks is not None and all(not isinstance(t, str) for t in tasks)
    if preloaded:
        chosen = list(tasks or [])
    elif benchmark is None:
        raise ValueError("evaluate_mmteb: give a benchmark to resolve task names, or loaded task objects")
    else:
        chosen = mmteb_tasks(benchmark, task_types, names=tasks)
    if not chosen:
        raise ValueError(f"no tasks to evaluate (tasks={tasks!r})")
    if not preloaded:
        check_mmteb_reachable(chosen)  # online: an unreachable Hub fails here, before any work
    if encoder is None:
        check_model_dir(model_path)
    first = chosen[0] if preloaded else copy.deepcopy(chosen[0])
    if not preloaded:
        _load_task_data(first)  # offline: a cache miss fails here, before the model is loaded
    loaded = encoder or load_encoder(
        Path(model_path), model_name, batch_size=batch_size, device=device, bf16=bf16, max_seq_length=max_seq_length
    )
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    cache = mteb.ResultCache(out_dir / "mteb_cache")
    checks: dict[str, float] = {}
    for i, shared in enumerate(chosen):
        task = shared if preloaded else (first if i == 0 else copy.deepcopy(shared))
        name = task.metadata.name
        if i and not preloaded:
            _load_task_data(task)
        run_encoder = encoder or PromptCachedEncoder(
            loaded.model, loaded.mteb_model_meta, batch_size=batch_size, bf16=bf16
        )
        result = mteb.evaluate(
            run_encoder,
            [task],
            cache=cache,
            overwrite_strategy="always",
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
            co2_tracker=False,
            raise_error=True,
        )
        by_name = {r.task_name: r for r in result.task_results}
        if name not in by_name:
            raise RuntimeError(f"mteb returned no result for {name}; exceptions: {result.exceptions}")
        by_name[name].to_disk(results_dir / f"{name}.json")
        log.info("%s: main score %.4f (%d texts encoded)", name, by_name[name].get_score(), run_encoder.n_encoded)
        if per_query:
            values = per_query_scores(task, run_encoder)
            checks[name] = check_per_query(task, by_name[name], values)
            write_json(out_dir / "per_query" / f"{name}.json", values)
        if not preloaded:
            task.unload_data()
    metrics = summarize_mmteb(
        out_dir, list(expected) if expected is not None else [t.metadata.name for t in chosen],
        model=str(loaded.mteb_model_meta.name), benchmark=benchmark,
        max_seq_length=int(loaded.model.max_seq_length),
        per_query_check=checks or None,
    )
    return metrics


def summarize_mmteb(
    out_dir: str | Path, expected: Sequence[str] | None = None, *, model: str | None = None,
    benchmark: str | None = DEFAULT_BENCHMARK, max_seq_length: int | None = None,
    per_query_check: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-task scores and their means from ``out_dir/results/*.json``; writes ``metrics.json``, ``summary.json``
    and ``table.md``.

    Args:
        out_dir: An :func:`evaluate_mmteb` output directory (possibly filled by several shards).
        expected: The tasks the headline should cover (default: every Retrieval task of ``benchmark``); missing
            ones are listed and ``complete`` is false.
        model: The model name to record (default: read from the results).
        benchmark: The benchmark whose tasks are expected by default; ``None`` for tasks run on their own (the
            official tasks of :mod:`retrofit.official`), which then need ``expected``.
        max_seq_length: The tokens per text the model was evaluated at, recorded as is.
        per_query_check: ``{task: largest gap between per-query values and mteb's subset scores}``, recorded.

    Returns:
        The ``metrics.json`` document.

    Raises:
        FileNotFoundError: No result file for any expected task.
    """
    import mteb
    import numpy as np

    out_dir = Path(out_dir)
    if expected is None and benchmark is None:
        raise ValueError("summarize_mmteb: give the expected tasks, or a benchmark to take them from")
    expected = list(expected) if expected is not None else mmteb_retrieval_tasks(benchmark)
    scores: dict[str, dict[str, Any]] = {}
    for name in expected:
        path = out_dir / "results" / f"{name}.json"
        if not path.is_file():
            continue
        result = mteb.TaskResult.from_disk(path)
        entries = [e for split in result.scores.values() for e in split]
        scores[name] = {
            "main_score_name": _main_score_name(name, benchmark),
            "main_score": float(result.get_score()),
            "ndcg_at_10": (float(result.get_score(getter=lambda s: s["ndcg_at_10"]))
                           if all("ndcg_at_10" in e for e in entries) else None),  # bitext mining has none
            "splits": sorted(result.scores),
            "subsets": len({e.get("hf_subset") for e in entries}),
            "subset_scores": {e["hf_subset"]: float(e["main_score"]) for e in entries},
        }
        model = model or getattr(result, "model_name", None)
    if not scores:
        raise FileNotFoundError(f"{out_dir / 'results'}: no result file for any of {expected}")
    missing = [n for n in expected if n not in scores]
    headline = {
        "ndcg_at_10": float(np.mean([s["ndcg_at_10"] for s in scores.values() if s["ndcg_at_10"] is not None]
                                    or [np.nan])),
        "main_score": float(np.mean([s["main_score"] for s in scores.values()])),
    }
    metrics = {
        "model": model,
        "benchmark": benchmark,
        "tasks_expected": len(expected),
        "tasks_done": len(scores),
        "complete": not missing,
        "missing": missing,
        "headline": headline,
        "headline_definition": (
            "unweighted means over the tasks done; main_score is each task's mteb main score (the MMTEB leaderboard's "
            "Retrieval column, where the paper's 60.56 comes from), ndcg_at_10 is nDCG@10 for every task"
            if benchmark is not None else
            "unweighted means over the tasks done, outside any benchmark: main_score averages each task's own mteb "
            "main score (F1 for bitext mining, nDCG@10 for retrieval), ndcg_at_10 the tasks that have nDCG@10"
        ),
        "tasks": scores,
        "max_seq_length": max_seq_length,
        "per_query_check": dict(per_query_check) if per_query_check else None,
    }
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "summary.json", {"headline": headline, "complete": metrics["complete"]})
    lines = [
        f"# {benchmark + ' retrieval' if benchmark else 'Official mteb tasks'}: {model}",
        "",
        f"Mean main score {100 * headline['main_score']:.2f}, mean nDCG@10 {100 * headline['ndcg_at_10']:.2f} over "
        f"{len(scores)} of {len(expected)} tasks" + ("" if not missing else f" (missing: {', '.join(missing)})") + ".",
        "",
        "| task | main score | metric | nDCG@10 |",
        "|---|---:|---|---:|",
    ]
    lines += [
        f"| {n} | {100 * s['main_score']:.2f} | {s['main_score_name']} | "
        + ("-" if s["ndcg_at_10"] is None else f"{100 * s['ndcg_at_10']:.2f}") + " |"
        for n, s in scores.items()
    ]
    (out_dir / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return metrics


def _main_score_name(task: str, benchmark: str | None) -> str:
    import mteb

    if benchmark is not None:
        try:
            return next(t.metadata.main_score for t in mmteb_tasks(benchmark) if t.metadata.name == task)
        except (StopIteration, ValueError):
            pass
    try:  # a task outside the benchmark's selection (the official tasks of retrofit.official)
        return str(mteb.get_task(task).metadata.main_score)
    except (KeyError, ValueError):
        return "main_score"


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _params_evaluate(params_path: str) -> dict[str, Any]:
    """The ``evaluate`` group of a params file as plain data (``{}`` if there is no file)."""
    from retrofit.config import load_params

    if not Path(params_path).is_file():
        return {}
    return load_params(params_path).model_dump().get("evaluate", {})


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


def _cmd_tasks(args: argparse.Namespace) -> None:
    for task in mmteb_tasks(args.benchmark):
        s = mmteb_task_stats(task)
        print("\t".join((s["task"], s["dataset"], f"documents={s['documents']}", f"queries={s['queries']}",
                         f"main={s['main_score']}")))


def _cmd_prefetch(args: argparse.Namespace) -> None:
    chosen = mmteb_tasks(args.benchmark, names=args.tasks or None)
    check_mmteb_reachable(chosen)
    for shared in chosen:
        task = copy.deepcopy(shared)
        _load_task_data(task)
        print(f"cached {task.metadata.name} ({task.metadata.dataset['path']})")
        task.unload_data()


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from retrofit.runtime import set_threads

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _params_evaluate(args.params)
    mm = cfg.get("mmteb") or {}
    benchmark = args.benchmark or mm.get("benchmark") or DEFAULT_BENCHMARK
    names = everything = args.tasks or mm.get("tasks") or mmteb_retrieval_tasks(benchmark)
    if args.shard:
        k, _, n = args.shard.partition("/")
        from retrofit.plan import mmteb_encode_tokens

        weights = mmteb_encode_tokens(benchmark, args.max_seq_length or mm.get("max_seq_length") or 512)
        names = shard(names, int(k), int(n), weights)
        print(f"shard {args.shard}: {', '.join(names) or 'no task (more shards than tasks)'}")
        if not names:
            return
    set_threads(args.threads)
    metrics = evaluate_mmteb(
        args.model, args.out, names, batch_size=args.batch_size or cfg.get("batch_size", 128), model_name=args.name,
        benchmark=benchmark, device=args.device, bf16=not args.fp32,
        max_seq_length=args.max_seq_length or mm.get("max_seq_length"), expected=everything,
    )
    print(f"{args.name}: mean main score {metrics['headline']['main_score']:.4f} over {metrics['tasks_done']} task(s)")


def _cmd_summarize(args: argparse.Namespace) -> None:
    metrics = summarize_mmteb(args.out, args.tasks or None, benchmark=args.benchmark or DEFAULT_BENCHMARK)
    done = f"{metrics['tasks_done']}/{metrics['tasks_expected']}"
    print(f"{metrics['model']}: mean main score {metrics['headline']['main_score']:.4f} over {done} tasks")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m retrofit.paper``: apply the profile, list, prefetch and evaluate MMTEB tasks."""
    p = argparse.ArgumentParser(prog="python -m retrofit.paper", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="merge a params profile into params.yaml (validated before writing)")
    a.add_argument("profile")
    a.add_argument("--params", default="params.yaml")
    a.add_argument("--backup", action="store_true", help="keep the old file as <params>.bak")
    a.add_argument("--dry-run", action="store_true", help="print the changes and the diff; write nothing")
    a.set_defaults(fn=_cmd_apply)
    t = sub.add_parser("tasks", help="list the benchmark's Retrieval tasks with mteb's offline statistics")
    t.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    t.set_defaults(fn=_cmd_tasks)
    f = sub.add_parser("prefetch", help="download the tasks' datasets into HF_HOME (needs network)")
    f.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    f.add_argument("--tasks", nargs="+")
    f.set_defaults(fn=_cmd_prefetch)
    e = sub.add_parser("evaluate", help="evaluate a model on MMTEB retrieval (one shard of the tasks per GPU)")
    e.add_argument("--model", required=True, type=Path)
    e.add_argument("--name", required=True, help="unique model name for mteb")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--params", default="params.yaml", help="reads evaluate.batch_size and evaluate.mmteb if present")
    e.add_argument("--benchmark")
    e.add_argument("--tasks", nargs="+")
    e.add_argument("--shard", help="K/N: run shard K of N (tasks balanced by tokens to encode)")
    e.add_argument("--batch-size", type=int)
    e.add_argument("--max-seq-length", type=int)
    e.add_argument("--device")
    e.add_argument("--fp32", action="store_true", help="encode in fp32 instead of bf16 autocast")
    e.add_argument("--threads", type=int, default=4)
    e.set_defaults(fn=_cmd_evaluate)
    s = sub.add_parser("summarize", help="one metrics.json from the per-task results in --out")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--benchmark")
    s.add_argument("--tasks", nargs="+")
    s.set_defaults(fn=_cmd_summarize)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except (ParamsError, RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
