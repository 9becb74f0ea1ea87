"""Encoders that mining, the generator's round trip and the embedding cache use: one protocol, one implementation.

:class:`Encoder` is what the rest of the project needs from an embedding model (a fingerprint and
``encode(texts, kind)``); :class:`SentenceTransformerEncoder` implements it over a local sentence-transformers
directory with the model's own ``query``/``passage`` prompts, L2-normalised output and bf16 autocast where the CPU
has native bf16 (:func:`retrofit.runtime.inference_autocast`).

A text's embedding must not depend on the texts encoded beside it, because :class:`retrofit.embed.cache.EmbeddingCache`
serves it to later runs whose batches differ. Padded batches break that: the padded length changes the attention's
reductions. With sentence-transformers' own batching, 159 of 300 training passages changed when encoded among
other texts, by up to 7.9e-4 under bf16 autocast (1.4e-7 in fp32), enough to move generation's round-trip ranks
and mining's negatives. So :class:`SentenceTransformerEncoder` batches only texts of equal token length (no
padding). Under bf16 autocast, every embedding was then the same bit for bit among any partners, alone and at 1 or
2 threads; in fp32, 3 of 300 still moved by up to 8.2e-8 (the kernel changes with the group's size). It also
encoded 1.7x faster (``bench/encoder_batching.py``, ``reports/bench/encoder_batching.md``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from retrofit.embed.linear import kernel_identity, use_kernel
from retrofit.embed.work import WORK
from retrofit.io import fingerprint_model_dir
from retrofit.models.load import check_model_dir
from retrofit.runtime import fp32_linear, inference_autocast

log = logging.getLogger(__name__)

Kind = Literal["query", "passage"]


KINDS: tuple[Kind, ...] = ("query", "passage")

#: How :class:`SentenceTransformerEncoder` batches texts; part of its fingerprint, so a change re-encodes.
BATCHING = "equal-token-length-v1"

#: Texts tokenized per call when measuring token lengths (bounds the padded id tensor's memory).
_LENGTH_CHUNK = 1024


def text_digest(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@runtime_checkable
class Encoder(Protocol):
    """An embedding function: what mining (and the cache) need from a teacher model."""

    @property
    def fingerprint(self) -> str:
        """Identity of the model, e.g. the sha256 of its files: equal fingerprints must give equal embeddings.

        Used as a directory name by :class:`EmbeddingCache`: letters, digits, ``.``, ``_`` and ``-`` only.
        """
        ...

    def encode(self, texts: Sequence[str], kind: Kind) -> npt.NDArray[np.float32]:
        """Embed texts as queries or as passages.

        Args:
            texts: Texts to embed.
            kind: ``"query"`` or ``"passage"`` (models such as e5 prepend a different prompt to each).

        Returns:
            float32 array of shape ``(len(texts), dim)`` with L2-normalised rows.
        """
        ...


class SentenceTransformerEncoder:
    """:class:`Encoder` over a local sentence-transformers model directory, using its own prompts.

    Queries are embedded with ``encode_query(prompt_name="query")`` and passages with
    ``encode_document(prompt_name="passage")`` (the names are configurable), normalised to unit length, in batches
    of texts with equal token length (:meth:`length_groups`), so that no text's embedding depends on its batch.
    Nothing is loaded until the first :meth:`encode`, and the fingerprint is computed on first use: a run whose
    embeddings are all cached never loads the model.

    Attributes:
        model_dir: The model directory.
        batch_size: Texts per forward pass.
        device: torch device.
        prompt_names: ``{"query": ..., "passage": ...}``: the model prompt used for each kind.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 64,
        device: str | None = None,
        prompt_names: Mapping[str, str] | None = None,
        show_progress_bar: bool = False,
        bf16: bool = False,
    ) -> None:
        """Point at a model directory without loading it.

        Args:
            model_dir: A sentence-transformers model directory (with ``modules.json``).
            batch_size: Texts per forward pass.
            device: torch device; ``None`` picks CUDA when available, else the CPU.
            prompt_names: Prompt name per kind; default ``{"query": "query", "passage": "passage"}``.
            show_progress_bar: Show a progress bar over the token-length groups while encoding.
            bf16: Encode under bf16 autocast (part of the fingerprint: bf16 and fp32 embeddings are cached apart).

        Raises:
            AssetError: ``model_dir`` is not a sentence-transformers model directory with weights.
            ValueError: ``prompt_names`` lacks a kind.
        """
        self.model_dir = Path(model_dir)
        check_model_dir(self.model_dir)
        self.batch_size = batch_size
        self.device = device
        self.prompt_names = dict(prompt_names or {"query": "query", "passage": "passage"})
        missing = [k for k in KINDS if k not in self.prompt_names]
        if missing:
            raise ValueError(f"prompt_names: missing {missing}; expected a prompt name for each of {list(KINDS)}")
        self.show_progress_bar = show_progress_bar
        self.bf16 = bf16
        self._fingerprint: str | None = None
        self._model: Any = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the model files and of everything else that decides the embeddings' bits.

        That is the prompt names, the autocast dtype, the torch version (its kernels) and :data:`BATCHING` (see
        :func:`retrofit.io.fingerprint_model_dir`). The thread count is not part of it: 1 and 2 threads gave
        bit-identical embeddings (``reports/bench/encoder_batching.md``).
        """
        if self._fingerprint is None:
            import torch

            extra: dict[str, Any] = {"prompt_names": self.prompt_names, "batching": BATCHING,
                                     "torch": torch.__version__}
            if self.bf16:
                extra["dtype"] = "bf16-autocast"
            kernel = kernel_identity(fp32_linear(), self.bf16) if self.device == "cpu" else None
            if kernel:
                extra["linear"] = kernel
            self._fingerprint = fingerprint_model_dir(self.model_dir, extra=extra)
        return self._fingerprint

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded offline on first access)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            use_kernel(model, fp32_linear())
            absent = {k: n for k, n in self.prompt_names.items() if not (model.prompts or {}).get(n)}
            if absent:
                raise ValueError(
                    f"{self.model_dir}: no non-empty prompt(s) {sorted(absent.values())} in the model's prompts "
                    f"{model.prompts!r} (config_sentence_transformers.json); pass prompt_names to choose others"
                )
            log.info("loaded teacher %s (fingerprint %s)", self.model_dir, self.fingerprint[:16])
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str], kind: Kind) -> npt.NDArray[np.float32]:
        """Embed ``texts`` as ``kind`` with the model's prompt for it.

        Args:
            texts: Texts to embed.
            kind: ``"query"`` or ``"passage"``.

        Returns:
            float32 array ``(len(texts), dim)``, rows L2-normalised.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        model = self.model
        out = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)  # (len(texts), dim)
        if not texts:
            return out
        fn = model.encode_query if kind == "query" else model.encode_document
        lengths = self.token_lengths(texts, kind)  # (len(texts),)
        groups = group_by_length(lengths)
        layers = getattr(getattr(getattr(model[0], "auto_model", None), "config", None), "num_hidden_layers", 0)
        with inference_autocast(self.bf16, str(model.device)):
            for group in tqdm(groups, desc=f"encoding {kind}s", unit="length", disable=not self.show_progress_bar):
                WORK.add(lengths[group].tolist(), layers)
                out[group] = fn(
                    [texts[i] for i in group],
                    prompt_name=self.prompt_names[kind],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )  # (len(group), dim)
        return out

    def length_groups(self, texts: Sequence[str], kind: Kind) -> list[npt.NDArray[np.int64]]:
        """Indices of ``texts`` grouped by token length (prompt included, after truncation), shortest first.

        The lengths are :meth:`token_lengths`, the lengths that ``encode`` will see; a group therefore encodes
        without padding.

        Args:
            texts: Texts to embed.
            kind: ``"query"`` or ``"passage"``.

        Returns:
            One ascending index array per distinct token length.
        """
        return group_by_length(self.token_lengths(texts, kind))

    def token_lengths(self, texts: Sequence[str], kind: Kind) -> npt.NDArray[np.int64]:
        """Each text's token count from the model's own ``preprocess`` with the kind's prompt (after truncation)."""
        return token_lengths(self.model, texts, self.model.prompts[self.prompt_names[kind]])


def token_lengths(model: Any, texts: Sequence[str], prompt: str | None) -> npt.NDArray[np.int64]:
    """Each text's token count under a ``SentenceTransformer``'s own ``preprocess`` with ``prompt`` (after truncation).

    These are the lengths its ``encode`` will see, so batches of sorted lengths carry little padding.
    """
    if not texts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([
        model.preprocess(list(texts[start : start + _LENGTH_CHUNK]), prompt=prompt)["attention_mask"]
        .sum(-1).numpy()
        for start in range(0, len(texts), _LENGTH_CHUNK)
    ]).astype(np.int64)  # (len(texts),)


def group_by_length(lengths: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """Ascending index arrays of equal ``lengths``, shortest length first."""
    order = np.argsort(lengths, kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    return np.split(order.astype(np.int64), cuts)
