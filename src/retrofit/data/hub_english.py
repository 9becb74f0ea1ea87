"""English task data from the Hugging Face Hub (or a local copy) as rows of the project's English pair schema.

:func:`hub_english_pairs` reads one ``datasets`` dataset (a hub id or a local directory), picks its query, positive
and optional negative columns (named in params or the first of :data:`QUERY_COLUMNS` / :data:`POSITIVE_COLUMNS` /
:data:`NEGATIVE_COLUMNS` present) and yields rows of :data:`retrofit.data.english.ENGLISH_ROW`;
:func:`prepare_hub_english` writes the paper-scale profile's collections for the ``prepare`` stage.

Every hub-facing path fails fast. With ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)
set, only the local cache is read; online, one metadata request with a 10 s timeout decides whether the Hub is
reachable before any download starts. Either way a miss raises an error that names the asset and says how to
provide it (a pre-populated ``HF_HOME``, a local path, or a Hub mirror through ``HF_ENDPOINT``), instead of the
minutes of retries the libraries would otherwise spend.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrofit import hub
from retrofit.config import HubEnglishSpec, ParamsError, default_params
from retrofit.errors import AssetError, InputError
from retrofit.io import write_jsonl

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


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


def _folder_cache(folder: Path, cache_dir: str | None) -> str:
    """A ``datasets`` cache directory keyed by a local folder's files (path, size, modification time).

    ``datasets`` keys a local folder's cache by its name, config and data-file patterns, not by the files, so a
    folder re-created with other rows (the rehearsal's stand-ins, a refreshed clone) would be read from the old
    cache. Found by the rehearsal (tests/data/test_hub_english.py).
    """
    import datasets

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return str(Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / f"local-{digest.hexdigest()[:16]}")


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
                str(local), spec["config"], split=spec["split"], cache_dir=_folder_cache(local, cache_dir),
                streaming=spec["streaming"],
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
    """English (query, positive, negative) pairs from one dataset, in the schema of :mod:`retrofit.data.english`.

    Rows come out as ``{"id", "source", "task_type", "lang": "en", "query", "positive", "negative": str | None}``
    with ``id = "<name>-<split>-<row index in the source split, 7 digits>"``. A map-style dataset is read in a
    seeded random order (a permutation of its rows, so a smaller ``limit`` gives a prefix of a larger one); a
    streamed one (``streaming: true``, for splits too large to download, such as S2ORC's 42M title-abstract pairs)
    is read from its start. Rows with an empty query or positive (``empty_text``) and repeats of ``(query,
    positive)`` (``duplicate_pair``) are dropped and counted, as in :mod:`retrofit.data.english`; reading continues
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
    q_col, p_col, n_col = _columns(ds, spec, describe)
    drops = Counter() if drops is None else drops
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    for index, row in _ordered_rows(ds, spec["streaming"], limit, seed):
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


def _columns(ds: Any, spec: Mapping[str, Any], describe: str) -> tuple[str, str, str | None]:
    """The (query, positive, negative) columns: named in the spec, or the first present of the defaults."""
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
    return q_col, p_col, n_col


def _ordered_rows(ds: Any, streaming: bool, limit: int, seed: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(index, row)`` in reading order: a seeded permutation of a map-style dataset, a stream from its start."""
    if streaming or not hasattr(ds, "__len__"):
        yield from enumerate(ds)
        return
    order = np.random.default_rng(seed).permutation(len(ds))
    step = max(limit, 1024)
    for start in range(0, len(order), step):
        idx = order[start : start + step].tolist()
        yield from zip(idx, ds.select(idx), strict=True)


def prepare_hub_english(
    specs: Mapping[str, Any], out_dir: str | Path, limit: int, *, seed: int = 0, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Write each ``data.hub_english`` dataset as ``<name>.jsonl`` pairs beside the embedded English sources.

    Called by the ``prepare`` stage. The rows follow :mod:`retrofit.data.english`'s schema (from
    :func:`hub_english_pairs`), so dedupe, mining and training treat hub and embedded sources alike.

    Args:
        specs: ``{name: spec}``, as ``data.hub_english``.
        out_dir: The ``english`` directory of ``data/prepared`` (must exist).
        limit: Rows per dataset (``data.hub_english_rows``).
        seed: Read order of map-style datasets.
        cache_dir: ``datasets`` cache directory.

    Returns:
        ``{name: counts}`` in :func:`retrofit.data.english.build_pairs`' form (``candidates``, ``dropped``, ``per_lang``,
        ``task_type``, ``with_negative``, ``written``).

    Raises:
        AssetError: A dataset cannot be obtained (the message names it and how to provide it); nothing is written
            for the failing dataset, and the stage's atomic output directory keeps the last good data.
    """
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
