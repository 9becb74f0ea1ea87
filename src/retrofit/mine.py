"""Hard-negative mining with a teacher embedding model, and the on-disk embedding cache it relies on.

The ``mine`` stage turns the dedupe stage's (query, positive[, negative]) rows into training rows with hard
negatives: the teacher embeds every query and every candidate passage, FAISS retrieves each query's nearest
passages, and a chain of filters removes false negatives before the hardest survivors are kept.

Input rows (the dedupe stage's output; that module documents them)::

    {"id", "source", "lang", "task_type", "query", "positive", "negative": str | null, "source_id": str | null,
     "provenance"}                    # a blank "negative" counts as null

Output rows (JSONL, one per input row, in input order; the training stage reads them)::

    {"id": "...",                     # the input row's id, unchanged
     "query": "...",
     "positive": "...",
     "negatives": [                   # at most negatives.num_negatives, hardest first; [] when negatives.hard is false
         {"text": "...", "score": 0.712345, "source_id": None},   # the dataset's own negative comes first
         {"text": "...", "score": 0.698761, "source_id": "xquad:a03p1"},   # then mined ones, by descending score
     ],                               # source_id: the passage's (a row's or the pool's), null when it has none
     "positive_score": 0.834512,      # teacher cosine(query, positive), 6 decimals; null when hard is false
     "lang": "de", "task_type": "qa", "source": "synthetic", "source_id": "..." | null,
     "provenance": {...} | null}      # passed through unchanged

Scores are cosine similarities from the teacher (embeddings are L2-normalised, so inner products), rounded to six
decimals. A row can have fewer than ``num_negatives`` negatives when too few candidates survive the filters; the
report counts those rows (``rows.short``) per language and source.

The report (a JSON-able dict; the stage writes it as a DVC metric)::

    {"hard", "params", "rank_window", "teacher_fingerprint",
     "rows": {"in", "out", "with_dataset_negative", "short", "without_negatives"},
     "negatives": {"total", "dataset", "mined"},
     "dataset_negatives": {"kept", "above_margin", "dropped_equal_to_positive", "dropped_num_negatives_0"},
     "candidates": {"in_window", "dropped": {<DROP_REASONS>: count}, "below_range_min", "chosen"},
     "corpus": {"partitions", "passages", "largest_partition", "index": {"flat" | "ivf" | "ivf->flat" ...: count}},
     "encoding": {"query" | "passage": {"unique", "encoded", "cached"}},
     "scores": {"positive" | "mined_negative" | "random_negative" | "dataset_negative" | "hardest_gap":
                score_summary(...)},
     "by_lang" | "by_source": {<name>: {"rows", "short", "negatives", "dropped", "positive_score_mean",
                                        "hardest_gap_mean"}}}

(``hard=False`` reports only ``rows`` and ``dataset_negatives.dropped_not_hard``.) ``in_window`` counts the
candidates examined: the rank window for ``"search"``, the first ``range_max + n_excluded`` results for
``"filtered"``; ``hardest_gap`` is the positive score minus the hardest mined negative's; ``random_negative`` scores
each row's query against one passage drawn uniformly (seeded) from its partition, identity-excluded ones aside: the
baseline that shows how much harder the mined negatives are.

How negatives are chosen for one row:

1. **Candidate corpus.** Every distinct positive and dataset-negative text among the rows, plus the ``pool``
   passages (for synthetic rows, the generation pool of their language: ``pool.jsonl`` of
   :mod:`retrofit.generate.pipeline`, so a synthetic query meets every passage its language was drawn from, not
   only the dozen other rows' positives; for English task rows, a larger sample of their dataset's positives,
   :mod:`retrofit.english_pool`), partitioned by ``scope``: ``"language"`` searches only passages with the
   row's ``(lang, source)`` -- its language and, for the English task datasets, its own dataset (an NLI hypothesis
   is no hard negative for a NQ question); ``"all"`` searches one index over everything.
2. **Search.** FAISS, in batches of queries, so memory stays bounded by ``batch x k`` and never holds a
   ``queries x corpus`` matrix: exact inner product by default (``index="flat"``: FAISS's ``knn_inner_product``,
   the kernel behind ``IndexFlatIP``, run on the embedding matrix directly so that the corpus is not copied into an
   index), or an approximate ``IndexIVFFlat`` / ``IndexHNSWFlat`` for large corpora.
3. **Identity filters** (each dropped candidate is counted under the first reason that fits, see
   :data:`DROP_REASONS`): the positive itself and any text whose :func:`normalise_text` form equals it
   (``self_or_duplicate``); other positives of rows with the same query text, and pool passages that name that
   query text among their ``queries`` (``same_query_positive``, as sentence-transformers treats repeated
   queries); passages with the row's non-null ``source_id``, i.e. translations of the positive
   (``same_source_id``); the row's own dataset negative, which is already kept (``dataset_negative``).
4. **Positive-aware margin** (NV-Retriever's TopK-PercPos): drop candidates scoring above
   ``positive_score - |positive_score| * relative_margin`` (``margin``), which is ``(1 - relative_margin) *
   positive_score`` for the usual positive score and does not loosen the filter when a score is negative.
5. **Rank window and selection.** ``rank_window="search"`` (default) takes candidates at 0-based ranks
   ``range_min <= rank < range_max`` of the raw search result, then applies the filters. ``rank_window="filtered"``
   ranks only the candidates that pass every filter among the first ``range_max + n_excluded`` results
   (``n_excluded``: the row's identity-excluded passages) and takes ranks ``range_min <= rank < range_max`` of
   that list: the semantics of ``sentence_transformers.util.mine_hard_negatives`` with ``sampling_strategy="top"``.
   Either way the highest-scoring survivors fill the row up to ``num_negatives``, after the dataset negative.

The result is deterministic for a given input, teacher and params (exact and IVF search; HNSW only with one
thread, as its graph construction is multi-threaded). Embeddings come from :class:`EmbeddingCache`, so a change of
mining params re-runs only the search, and a run whose embeddings are all cached never loads the teacher.

References:
    Moreira et al., "NV-Retriever: Improving text embedding models with effective hard-negative mining",
    arXiv 2407.15831 (the TopK-PercPos positive-aware filter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from retrofit.config import NegativesParams
from retrofit.jsonl import RowSchema, write_json
from retrofit.models import check_model_dir
from retrofit.runtime import fingerprint_model_dir, inference_autocast

logger = logging.getLogger(__name__)

#: The contract of the output rows (module docstring; the mine stage's ``train.jsonl``).
TRAIN_ROW = RowSchema("mined training row", "mine", {
    "id": (str,), "query": (str,), "positive": (str,), "negatives": (list,), "positive_score": (float, type(None)),
    "lang": (str,), "task_type": (str,), "source": (str,), "source_id": (str, type(None)),
    "provenance": (dict, type(None)),
}, nonempty=("id", "query", "positive"))

Kind = Literal["query", "passage"]
RankWindow = Literal["search", "filtered"]
KINDS: tuple[Kind, ...] = ("query", "passage")

#: Why a candidate was dropped, in the order the filters apply; a candidate is counted under the first that fits.
DROP_REASONS = ("self_or_duplicate", "same_query_positive", "same_source_id", "dataset_negative", "margin")
_N_IDENTITY = 4  # the first four reasons are identity filters; codes 1..4 in the per-batch reason matrices
_MARGIN = 4  # column of "margin" in the per-row drop-count matrix

#: Approximate indexes need enough points to train and to pay off; smaller partitions are searched exactly.
APPROX_MIN_PASSAGES = 10_000
IVF_MAX_NPROBE = 32
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_MIN_EF_SEARCH = 64

#: Score histograms cover the cosine range in 0.1-wide bins.
HIST_EDGES = np.linspace(-1.0, 1.0, 21)

_REQUIRED_STR = ("id", "source", "lang", "task_type", "query", "positive")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_DIGEST_BYTES = 32
_KEY_DTYPE = np.dtype(f"V{_DIGEST_BYTES}")


def normalise_text(text: str) -> str:
    """The form in which two texts count as duplicates: NFKC, case-folded, whitespace collapsed.

    Args:
        text: Any text.

    Returns:
        The normalised text.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_digest(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


# ----------------------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------------------


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
    ``encode_document(prompt_name="passage")`` (the names are configurable), normalised to unit length. Nothing is
    loaded until the first :meth:`encode`, and the fingerprint is computed on first use: a run whose embeddings
    are all cached never loads the model.

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
            show_progress_bar: Show sentence-transformers' progress bar while encoding.
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
        """sha256 of the model files and the prompt names (see :func:`retrofit.runtime.fingerprint_model_dir`)."""
        if self._fingerprint is None:
            extra: dict[str, Any] = {"prompt_names": self.prompt_names}
            if self.bf16:
                extra["dtype"] = "bf16-autocast"
            self._fingerprint = fingerprint_model_dir(self.model_dir, extra=extra)
        return self._fingerprint

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded offline on first access)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            absent = {k: n for k, n in self.prompt_names.items() if not (model.prompts or {}).get(n)}
            if absent:
                raise ValueError(
                    f"{self.model_dir}: no non-empty prompt(s) {sorted(absent.values())} in the model's prompts "
                    f"{model.prompts!r} (config_sentence_transformers.json); pass prompt_names to choose others"
                )
            logger.info("loaded teacher %s (fingerprint %s)", self.model_dir, self.fingerprint[:16])
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
        if not texts:
            return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
        fn = model.encode_query if kind == "query" else model.encode_document
        with inference_autocast(self.bf16, str(model.device)):
            emb = fn(
                list(texts),
                prompt_name=self.prompt_names[kind],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=self.show_progress_bar,
            )  # (len(texts), dim)
        return np.asarray(emb, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Embedding cache
# ----------------------------------------------------------------------------------------------------------------


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digests(texts: Sequence[str]) -> np.ndarray:
    """sha256 of each text as a ``(n,)`` array of 32-byte ``V32`` items (sortable, compact)."""
    return np.frombuffer(b"".join(text_digest(t) for t in texts), dtype=_KEY_DTYPE).copy()


class _Space:
    """The shards of one ``(fingerprint, kind)`` namespace, with a sorted in-memory index over their keys.

    The index is two NumPy arrays (sorted digests and ``shard << 32 | row``), not a dict: 40 bytes per text, and
    lookups are one vectorised ``searchsorted``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.dim: int | None = None
        meta = directory / "meta.json"
        if meta.is_file():
            self.dim = int(json.loads(meta.read_text(encoding="utf-8"))["dim"])
        self._keys = np.empty(0, dtype=_KEY_DTYPE)  # (n,) sorted
        self._locs = np.empty(0, dtype=np.int64)  # (n,) shard << 32 | row
        self._arrays: list[np.ndarray] = []  # memory-mapped shard embeddings, by shard number
        self._known: set[str] = set()
        self.refresh()

    def refresh(self) -> int:
        """Index shards written since the last scan (by this or another process); returns how many."""
        if not self.directory.is_dir():
            return 0
        new: list[tuple[str, np.ndarray, np.ndarray]] = []
        for keys_path in sorted(self.directory.glob("*.keys.npy")):
            name = keys_path.name[: -len(".keys.npy")]
            if name in self._known:
                continue
            emb_path = self.directory / f"{name}.npy"
            try:
                keys = np.load(keys_path)
                emb = np.load(emb_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                logger.warning("embedding cache: skipping unreadable shard %s (%s)", emb_path, exc)
                continue
            if keys.ndim != 2 or keys.shape[1] != _DIGEST_BYTES or emb.ndim != 2 or emb.shape[0] != keys.shape[0]:
                logger.warning("embedding cache: skipping malformed shard %s", emb_path)
                continue
            if self.dim is not None and emb.shape[1] != self.dim:
                logger.warning("embedding cache: skipping shard %s of dim %d, not %d", emb_path, emb.shape[1], self.dim)
                continue
            new.append((name, np.ascontiguousarray(keys).view(_KEY_DTYPE).ravel(), emb))
        self._add(new)
        return len(new)

    def _add(self, shards: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        if not shards:
            return
        keys, locs = [self._keys], [self._locs]
        for name, shard_keys, emb in shards:
            number = len(self._arrays)
            self._arrays.append(emb)
            self._known.add(name)
            keys.append(shard_keys)
            locs.append((number << 32) | np.arange(len(shard_keys), dtype=np.int64))
        all_keys, all_locs = np.concatenate(keys), np.concatenate(locs)
        order = np.argsort(all_keys, kind="stable")  # stable: a key written twice keeps its older shard
        all_keys, all_locs = all_keys[order], all_locs[order]
        first = np.ones(len(all_keys), dtype=bool)
        first[1:] = all_keys[1:] != all_keys[:-1]
        self._keys, self._locs = all_keys[first], all_locs[first]

    def find(self, digests: np.ndarray) -> npt.NDArray[np.int64]:
        """``shard << 32 | row`` for each digest, -1 where it is not indexed."""
        if not len(self._keys):
            return np.full(len(digests), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, digests), len(self._keys) - 1)  # (n,)
        return np.where(self._keys[pos] == digests, self._locs[pos], -1)

    def write(self, digests: np.ndarray, emb: np.ndarray) -> None:
        """Write one shard atomically: embeddings first, then the key file whose presence commits the shard."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.dim is None:
            self.dim = int(emb.shape[1])
            write_json(self.directory / "meta.json", {"dim": self.dim, "dtype": "float32"})
        keys = np.ascontiguousarray(digests).view(np.uint8).reshape(len(digests), _DIGEST_BYTES)
        # content-addressed name: two runs writing the same texts produce the same shard, never a clash
        name = hashlib.sha256(keys.tobytes()).hexdigest()[:24]
        _atomic_save_npy(self.directory / f"{name}.npy", np.ascontiguousarray(emb, dtype=np.float32))
        _atomic_save_npy(self.directory / f"{name}.keys.npy", keys)
        if name not in self._known:
            self._add([(name, np.ascontiguousarray(digests), np.load(self.directory / f"{name}.npy", mmap_mode="r"))])

    def gather(self, locs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Embeddings at ``locs`` (from :meth:`find`, all indexed), in order: ``(len(locs), dim)``."""
        out = np.empty((len(locs), self.dim or 0), dtype=np.float32)  # (n, dim)
        shards, rows = locs >> 32, locs & 0xFFFFFFFF
        for shard in np.unique(shards).tolist():
            sel = np.flatnonzero(shards == shard)
            out[sel] = self._arrays[shard][rows[sel]]
        return out


class EmbeddingCache:
    """On-disk embeddings keyed by ``(model fingerprint, kind, sha256(text))``.

    Changing a mining parameter never re-encodes anything, and only texts not seen before are encoded. Layout::

        <directory>/<fingerprint>/<kind>/meta.json          {"dim": ..., "dtype": "float32"}
        <directory>/<fingerprint>/<kind>/<name>.npy         float32 (n, dim) embeddings of one shard
        <directory>/<fingerprint>/<kind>/<name>.keys.npy    uint8 (n, 32): sha256 of each text, row-aligned

    Shards are written atomically, embeddings before keys, so a killed run leaves at most an orphan ``.npy`` that
    is never read; shard names are content hashes, so concurrent runs can share a directory. Shards are
    memory-mapped, not loaded.

    Attributes:
        directory: Root directory.
        shard_size: Texts encoded (and written) per shard.
        encoded: Texts encoded so far, per kind.
        hits: Requested distinct texts found in the cache, per kind.
    """

    def __init__(self, directory: str | Path, *, shard_size: int = 16384) -> None:
        """Open (or create on first write) a cache directory.

        Args:
            directory: Root directory.
            shard_size: Texts encoded per shard; bounds the memory of one encoding call.
        """
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.directory = Path(directory)
        self.shard_size = shard_size
        self._spaces: dict[tuple[str, str], _Space] = {}
        self.encoded: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()

    def _space(self, fingerprint: str, kind: str) -> _Space:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        if not _SAFE_NAME.match(fingerprint):
            raise ValueError(
                f"encoder fingerprint {fingerprint!r}: use 1-128 letters, digits, '.', '_' or '-' (e.g. a sha256 hex)"
            )
        key = (fingerprint, kind)
        if key not in self._spaces:
            self._spaces[key] = _Space(self.directory / fingerprint / kind)
        return self._spaces[key]

    def ensure(self, encoder: Encoder, texts: Iterable[str], kind: Kind) -> int:
        """Encode and store the texts that are not cached yet.

        Missing texts are encoded in first-seen order, in shards of ``shard_size`` (a shard is one ``encode`` call,
        so a sentence-transformers model length-sorts within it exactly as for a direct ``model.encode``).

        Args:
            encoder: The model; its fingerprint selects the namespace.
            texts: Texts (repeats are fine).
            kind: ``"query"`` or ``"passage"``.

        Returns:
            How many texts were encoded.

        Raises:
            ValueError: The encoder returned the wrong shape, a non-finite or non-normalised embedding, or a
                dimension that differs from what the cache holds for its fingerprint.
        """
        space = self._space(encoder.fingerprint, kind)
        unique = list(dict.fromkeys(texts))
        digests = _digests(unique)  # (n,)
        missing = np.flatnonzero(space.find(digests) < 0)
        if missing.size and space.refresh():  # another run may have written them meanwhile
            missing = np.flatnonzero(space.find(digests) < 0)
        self.hits[kind] += len(unique) - missing.size
        for start in range(0, missing.size, self.shard_size):
            chunk = missing[start : start + self.shard_size]
            emb = self._checked(encoder, [unique[i] for i in chunk], kind, space.dim)  # (len(chunk), dim)
            space.write(digests[chunk], emb)
            self.encoded[kind] += chunk.size
            logger.info("encoded %d/%d %s texts", min(start + self.shard_size, missing.size), missing.size, kind)
        return int(missing.size)

    @staticmethod
    def _checked(encoder: Encoder, texts: list[str], kind: Kind, dim: int | None) -> npt.NDArray[np.float32]:
        emb = np.asarray(encoder.encode(texts, kind), dtype=np.float32)
        where = f"encoder {encoder.fingerprint[:16]} ({kind})"
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"{where}: returned shape {emb.shape} for {len(texts)} texts; expected (n, dim)")
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(
                f"{where}: returned dim {emb.shape[1]} but the cache holds dim {dim} for this fingerprint; "
                "the fingerprint must identify the model"
            )
        if not np.isfinite(emb).all():
            raise ValueError(f"{where}: returned non-finite embeddings")
        norms = np.linalg.norm(emb, axis=1)  # (n,)
        if np.abs(norms - 1.0).max(initial=0.0) > 1e-3:
            raise ValueError(f"{where}: embeddings are not L2-normalised (norms {norms.min():.4f}..{norms.max():.4f})")
        return emb

    def lookup(self, fingerprint: str, texts: Sequence[str], kind: Kind) -> npt.NDArray[np.float32]:
        """Cached embeddings of ``texts``, in order.

        Args:
            fingerprint: The encoder's fingerprint.
            texts: Texts, all cached already (see :meth:`ensure`).
            kind: ``"query"`` or ``"passage"``.

        Returns:
            float32 array ``(len(texts), dim)``.

        Raises:
            KeyError: A text is not cached.
        """
        space = self._space(fingerprint, kind)
        locs = space.find(_digests(texts))  # (n,)
        if (locs < 0).any() and space.refresh():
            locs = space.find(_digests(texts))
        absent = np.flatnonzero(locs < 0)
        if absent.size:
            raise KeyError(f"{absent.size} {kind} text(s) not in the embedding cache, e.g. {texts[absent[0]][:80]!r}")
        return space.gather(locs)

    def embed(self, encoder: Encoder, texts: Sequence[str], kind: Kind) -> npt.NDArray[np.float32]:
        """:meth:`ensure` then :meth:`lookup`: embeddings of ``texts``, encoding only those not cached."""
        self.ensure(encoder, texts, kind)
        return self.lookup(encoder.fingerprint, texts, kind)


# ----------------------------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------------------------


class _Searcher:
    """Top-k inner-product search over one partition's passages."""

    def __init__(self, emb: npt.NDArray[np.float32], kind: str) -> None:
        import faiss

        self._faiss = faiss
        self.emb = np.ascontiguousarray(emb, dtype=np.float32)  # (n, dim)
        n, dim = self.emb.shape
        self.kind = kind if n >= APPROX_MIN_PASSAGES else "flat"
        if kind != self.kind:
            logger.info("partition of %d passages is below %d: exact search, not %s", n, APPROX_MIN_PASSAGES, kind)
        self.index: Any = None
        if self.kind == "ivf":
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per list
            self._quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(self.emb)
            self.index.add(self.emb)
            self.index.nprobe = min(nlist, IVF_MAX_NPROBE)
        elif self.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            self.index.add(self.emb)

    def search(self, q: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(b, k)`` float32 and passage indices ``(b, k)`` int64 (-1 where fewer than ``k`` were found)."""
        n = self.emb.shape[0]
        kk = min(k, n)
        q = np.ascontiguousarray(q, dtype=np.float32)
        if self.kind == "flat":
            scores, idx = self._faiss.knn(q, self.emb, kk, metric=self._faiss.METRIC_INNER_PRODUCT)  # (b, kk)
        else:
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = max(HNSW_MIN_EF_SEARCH, 2 * kk)
            scores, idx = self.index.search(q, kk)  # (b, kk)
        if kk < k:
            pad = ((0, 0), (0, k - kk))
            scores = np.pad(scores, pad, constant_values=-np.inf)  # (b, k)
            idx = np.pad(idx, pad, constant_values=-1)  # (b, k)
        return scores, idx


def select_candidates(
    idx: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    excl_ids: npt.NDArray[np.int64],
    excl_reason: npt.NDArray[np.int8],
    n_excluded: npt.NDArray[np.int64],
    threshold: npt.NDArray[np.float32],
    n_want: npt.NDArray[np.int64],
    *,
    range_min: int,
    range_max: int,
    rank_window: RankWindow = "search",
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Apply the filters and the rank window to one batch of search results, vectorised.

    Args:
        idx: Passage indices ``(b, k)`` by descending score, -1 for none.
        scores: Their scores ``(b, k)``.
        excl_ids: Identity-excluded passage indices per row ``(b, m)``, padded with -2.
        excl_reason: Reason code per excluded passage ``(b, m)``: 1 + its position in :data:`DROP_REASONS`.
        n_excluded: Distinct excluded passages per row ``(b,)``.
        threshold: Margin threshold per row ``(b,)``: candidates scoring above it are dropped.
        n_want: Negatives to mine per row ``(b,)``.
        range_min: First rank of the window (inclusive).
        range_max: End of the window (exclusive).
        rank_window: ``"search"``: ranks of the raw result; ``"filtered"``: ranks among the survivors of the
            first ``range_max + n_excluded`` results (see the module docstring).

    Returns:
        ``chosen`` ``(b, k)`` bool mask of the kept candidates (at most ``n_want`` per row, the first ones by
        rank); ``dropped`` ``(b, len(DROP_REASONS))`` counts per reason; ``below_range_min`` ``(b,)`` survivors
        skipped by ``range_min`` (only for ``"filtered"``; zeros otherwise).
    """
    b, k = idx.shape
    cols = np.arange(k)[None, :]  # (1, k)
    valid = idx >= 0  # (b, k)
    eq = idx[:, :, None] == excl_ids[:, None, :]  # (b, k, m)
    hit = eq.any(axis=2)  # (b, k)
    first = eq.argmax(axis=2)  # (b, k)
    reason = np.where(hit, np.take_along_axis(excl_reason, first, axis=1), 0)  # (b, k)
    over = scores > threshold[:, None]  # (b, k)
    if rank_window == "search":
        pool = valid & (cols >= range_min) & (cols < range_max)  # (b, k)
    elif rank_window == "filtered":
        pool = valid & (cols < range_max + n_excluded[:, None])  # (b, k)
    else:
        raise ValueError(f"rank_window must be 'search' or 'filtered', got {rank_window!r}")
    dropped = np.zeros((b, len(DROP_REASONS)), dtype=np.int64)  # (b, reasons)
    for code in range(1, _N_IDENTITY + 1):
        dropped[:, code - 1] = (pool & (reason == code)).sum(axis=1)
    passes_identity = pool & (reason == 0)  # (b, k)
    dropped[:, _MARGIN] = (passes_identity & over).sum(axis=1)
    survive = passes_identity & ~over  # (b, k)
    rank = np.cumsum(survive, axis=1) - 1  # (b, k) 0-based rank among survivors
    if rank_window == "search":
        chosen = survive & (rank < n_want[:, None])
        below = np.zeros(b, dtype=np.int64)
    else:
        in_window = (rank >= range_min) & (rank < range_max)
        chosen = survive & in_window & (rank - range_min < n_want[:, None])
        below = (survive & (rank < range_min)).sum(axis=1)
    return chosen, dropped, below


# ----------------------------------------------------------------------------------------------------------------
# Mining
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Partition:
    """One candidate corpus: its passages and the rows whose queries search it."""

    key: tuple[str, str]  # (lang, source), or ("*", "*") for scope "all"
    rows: list[int]
    texts: list[str]
    pool_sources: list[tuple[str, str]]  # (source_id, text) of the pool passages in ``texts``
    pool_queries: list[tuple[str, str]]  # (query, text): a pool passage and each query it is the positive of


def _norm_key(text: str) -> bytes:
    """A 16-byte digest of :func:`normalise_text`: equal for duplicates, and far smaller than the text."""
    return hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=16).digest()


def _shared_groups(pairs: Iterable[tuple[Any, int]]) -> dict[Any, list[int]]:
    """Group passage indices by key, keeping only keys with two or more distinct passages."""
    first: dict[Any, int] = {}
    groups: dict[Any, list[int]] = {}
    for key, c in pairs:
        f = first.setdefault(key, c)
        if f != c:
            group = groups.setdefault(key, [f])
            if c not in group:
                group.append(c)
    return groups


def _validate_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"row {i} (id={row.get('id')!r})" if isinstance(row, Mapping) else f"row {i}"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in _REQUIRED_STR:
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
        for key in ("negative", "source_id"):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: {key!r} must be a string or null, got {type(value).__name__}")
        if row["id"] in seen:
            raise ValueError(f"{where}: duplicate id, also row {seen[row['id']]}; ids must be unique")
        seen[row["id"]] = i


def _negative_text(row: Mapping[str, Any]) -> str | None:
    neg = row.get("negative")
    return neg if isinstance(neg, str) and neg.strip() else None


def _partitions(rows: Sequence[Mapping[str, Any]], scope: str, pool: Sequence[Mapping[str, Any]] = ()) -> list[_Partition]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[("*", "*") if scope == "all" else (row["lang"], row["source"])].append(i)
    extra: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    extra_queries: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for passage in pool:
        key = ("*", "*") if scope == "all" else (passage["lang"], passage["source"])
        extra[key].append((str(passage["source_id"]), passage["text"]))
        extra_queries[key] += [(query, passage["text"]) for query in passage.get("queries") or ()]
    parts = []
    for key in sorted(groups):
        texts: dict[str, None] = {}
        for i in groups[key]:
            texts.setdefault(rows[i]["positive"])
            neg = _negative_text(rows[i])
            if neg is not None:
                texts.setdefault(neg)
        for _, text in extra.get(key, ()):
            texts.setdefault(text)
        parts.append(_Partition(key, groups[key], list(texts), extra.get(key, []), extra_queries.get(key, [])))
    return parts


def _out_row(row: Mapping[str, Any], negatives: list[dict[str, Any]], positive_score: float | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "query": row["query"],
        "positive": row["positive"],
        "negatives": negatives,
        "positive_score": positive_score,
        "lang": row["lang"],
        "task_type": row["task_type"],
        "source": row["source"],
        "source_id": row.get("source_id"),
        "provenance": row.get("provenance"),
    }


def score_summary(scores: npt.ArrayLike) -> dict[str, Any]:
    """Distribution of similarity scores: count, mean, std, min, quantiles, max and a histogram over [-1, 1].

    Args:
        scores: 1-D scores.

    Returns:
        ``{"count", "mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max", "histogram": {"edges",
        "counts"}}``; statistics are ``None`` when there are no scores.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    counts, _ = np.histogram(np.clip(s, -1.0, 1.0), bins=HIST_EDGES)
    out: dict[str, Any] = {"count": int(s.size), "histogram": {"edges": [round(float(e), 2) for e in HIST_EDGES],
                                                                "counts": counts.tolist()}}
    names = ("mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max")
    if s.size == 0:
        out.update(dict.fromkeys(names))
        return out
    q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    values = (s.mean(), s.std(), s.min(), *q, s.max())
    out.update({n: round(float(v), 6) for n, v in zip(names, values, strict=True)})
    return out


def mine(
    rows: Sequence[Mapping[str, Any]],
    encoder: Encoder | None,
    params: NegativesParams,
    cache: EmbeddingCache | None,
    *,
    rank_window: RankWindow = "search",
    search_batch_size: int = 8192,
    pool: Sequence[Mapping[str, Any]] = (),
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Mine hard negatives for every row (see the module docstring for the filters and the output schema).

    Args:
        rows: The dedupe stage's rows.
        encoder: The teacher; unused (may be ``None``) when ``params.hard`` is false.
        params: The ``negatives`` params group.
        cache: Embedding cache; unused (may be ``None``) when ``params.hard`` is false.
        rank_window: Where ``range_min``/``range_max`` count ranks: ``"search"`` (raw search result) or
            ``"filtered"`` (survivors of the filters, as ``sentence_transformers.util.mine_hard_negatives``).
        search_batch_size: Queries per FAISS search call; memory is ``O(search_batch_size * k)`` beyond the
            partition's embeddings. FAISS's exact search is up to ~2x slower per query in batches of 1024 than of
            8192 (measured on 100k x 64-d passages, one thread).
        pool: Extra candidate passages, ``{"lang", "source", "source_id", "text"}`` each, and optionally
            ``"queries"`` (``source`` names the rows' source whose partition they join, e.g. ``"synthetic"`` or an
            English dataset, :mod:`retrofit.english_pool`); their ``source_id`` excludes them from the rows of the
            same passage, and ``queries`` (the queries a passage is the positive of) from the rows with one of
            those query texts.
        seed: Seed of the random-negative baseline in the report.

    Returns:
        ``(mined_rows, report)``: one output row per input row, in input order; the report holds score
        distributions, per-filter drop counts, short rows and the same per language and per source.

    Raises:
        ValueError: A row lacks a field or has a wrong type (the message names the row), or ``hard`` is set
            without an encoder or cache.

    References:
        Moreira et al., "NV-Retriever: Improving text embedding models with effective hard-negative mining",
        arXiv 2407.15831.
    """
    _validate_rows(rows)
    if search_batch_size < 1:
        raise ValueError(f"search_batch_size must be at least 1, got {search_batch_size}")
    n = len(rows)
    has_neg = np.array([_negative_text(r) is not None for r in rows], dtype=bool)  # (n,)
    report: dict[str, Any] = {"hard": params.hard, "params": params.model_dump(), "rank_window": rank_window}

    if not params.hard:
        mined = [_out_row(r, [], None) for r in rows]
        report["rows"] = {"in": n, "out": n, "with_dataset_negative": int(has_neg.sum())}
        report["dataset_negatives"] = {"dropped_not_hard": int(has_neg.sum())}
        logger.info("negatives.hard is false: %d rows with in-batch negatives only (%d dataset negatives dropped)",
                    n, int(has_neg.sum()))
        return mined, report
    if encoder is None or cache is None:
        raise ValueError("negatives.hard is true: mine() needs a teacher encoder and an embedding cache")

    parts = _partitions(rows, params.scope, pool)
    fp = encoder.fingerprint
    encoded = {
        "passage": cache.ensure(encoder, (t for p in parts for t in p.texts), "passage"),
        "query": cache.ensure(encoder, (r["query"] for r in rows), "query"),
    }
    n_unique = {"passage": len({t for p in parts for t in p.texts}), "query": len({r["query"] for r in rows})}

    out: list[dict[str, Any] | None] = [None] * n
    pos_score = np.zeros(n, dtype=np.float32)  # (n,)
    n_negs = np.zeros(n, dtype=np.int64)  # (n,)
    dropped = np.zeros((n, len(DROP_REASONS)), dtype=np.int64)  # (n, reasons)
    below_min = np.zeros(n, dtype=np.int64)  # (n,)
    in_window = np.zeros(n, dtype=np.int64)  # (n,)
    kept_dataset = np.zeros(n, dtype=bool)  # (n,)
    dataset_above_margin = np.zeros(n, dtype=bool)  # (n,)
    dataset_score = np.full(n, np.nan, dtype=np.float32)  # (n,)
    hardest_gap = np.full(n, np.nan, dtype=np.float32)  # (n,) positive score minus the hardest mined negative's
    random_score = np.full(n, np.nan, dtype=np.float32)  # (n,) a uniformly drawn, non-excluded candidate's score
    rng = np.random.default_rng(seed)
    mined_scores: list[np.ndarray] = []
    dataset_equals_positive = 0
    dataset_no_room = 0
    index_used: Counter[str] = Counter()

    for part in parts:
        emb = cache.lookup(fp, part.texts, "passage")  # (n_c, dim)
        searcher = _Searcher(emb, params.index) if params.num_negatives else None
        index_used[_index_label(params.index, searcher)] += 1
        pid = {t: c for c, t in enumerate(part.texts)}
        norm = [_norm_key(t) for t in part.texts]
        # only groups of several passages: a singleton is the row's own positive, excluded as itself anyway
        by_norm = _shared_groups((key, c) for c, key in enumerate(norm))
        by_query = _shared_groups([  # the rows' positives, then the pool passages by the queries they answer
            *((rows[i]["query"], pid[rows[i]["positive"]]) for i in part.rows),
            *((query, pid[text]) for query, text in part.pool_queries),
        ])
        owned = [  # (source_id, passage): the rows' positives, then the pool's passages
            *((rows[i]["source_id"], pid[rows[i]["positive"]]) for i in part.rows if rows[i].get("source_id") is not None),
            *((sid, pid[text]) for sid, text in part.pool_sources),
        ]
        by_source = _shared_groups(owned)
        source_of: dict[int, str] = {}
        for sid, c in owned:
            source_of.setdefault(c, str(sid))
        logger.info("partition %s: %d rows, %d passages, %s search", "/".join(part.key), len(part.rows),
                    len(part.texts), searcher.kind if searcher else "no")

        for start in range(0, len(part.rows), search_batch_size):
            batch = np.array(part.rows[start : start + search_batch_size], dtype=np.int64)  # (b,)
            b = len(batch)
            q = cache.lookup(fp, [rows[i]["query"] for i in batch], "query")  # (b, dim)
            p_idx = np.array([pid[rows[i]["positive"]] for i in batch], dtype=np.int64)  # (b,)
            ps = np.einsum("ij,ij->i", q, emb[p_idx])  # (b,)
            threshold = (ps - np.abs(ps) * np.float32(params.relative_margin)).astype(np.float32)  # (b,)

            # identity exclusions per row (passage -> reason code, first reason wins), and the dataset negative
            excl: list[dict[int, int]] = []
            neg_idx = np.full(b, -1, dtype=np.int64)  # (b,)
            for j, i in enumerate(batch.tolist()):
                row = rows[i]
                c_pos = int(p_idx[j])
                e: dict[int, int] = {}
                for c in by_norm.get(norm[c_pos], (c_pos,)):
                    e.setdefault(c, 1)
                for c in by_query.get(row["query"], ()):
                    e.setdefault(c, 2)
                if row.get("source_id") is not None:
                    for c in by_source.get(row["source_id"], ()):
                        e.setdefault(c, 3)
                neg = _negative_text(row)
                if neg is not None:
                    c_neg = pid[neg]
                    if norm[c_neg] == norm[c_pos]:
                        dataset_equals_positive += 1
                    elif params.num_negatives == 0:
                        dataset_no_room += 1
                    else:
                        neg_idx[j] = c_neg
                        for c in by_norm.get(norm[c_neg], (c_neg,)):
                            e.setdefault(c, 4)
                excl.append(e)
            for j, e in enumerate(excl):
                allowed = len(part.texts) - len(e)
                if allowed > 0:  # the allowed-th passage not excluded, drawn uniformly
                    pick = int(rng.integers(allowed))
                    for c in sorted(e):
                        pick += c <= pick
                    random_score[batch[j]] = float(q[j] @ emb[pick])
            has_kept_neg = neg_idx >= 0  # (b,)
            neg_sc = np.einsum("ij,ij->i", q, emb[np.maximum(neg_idx, 0)])  # (b,) meaningful where has_kept_neg
            n_want = np.maximum(params.num_negatives - has_kept_neg.astype(np.int64), 0)  # (b,)
            kept_dataset[batch] = has_kept_neg
            dataset_score[batch[has_kept_neg]] = neg_sc[has_kept_neg]
            dataset_above_margin[batch] = has_kept_neg & (neg_sc > threshold)

            per_row: list[list[dict[str, Any]]] = [
                [{"text": part.texts[neg_idx[j]], "score": round(float(neg_sc[j]), 6), "source_id": None}]
                if has_kept_neg[j] else []
                for j in range(b)
            ]
            if searcher is not None and n_want.any():
                m = max(1, max(len(e) for e in excl))
                excl_ids = np.full((b, m), -2, dtype=np.int64)  # (b, m)
                excl_reason = np.zeros((b, m), dtype=np.int8)  # (b, m)
                for j, e in enumerate(excl):
                    excl_ids[j, : len(e)] = list(e.keys())
                    excl_reason[j, : len(e)] = list(e.values())
                n_excl = np.array([len(e) for e in excl], dtype=np.int64)  # (b,)
                k = params.range_max + (int(n_excl.max()) if rank_window == "filtered" else 0)
                cand_sc, cand_idx = searcher.search(q, k)  # (b, k), (b, k)
                chosen, drop, below = select_candidates(
                    cand_idx, cand_sc, excl_ids, excl_reason, n_excl, threshold, n_want,
                    range_min=params.range_min, range_max=params.range_max, rank_window=rank_window,
                )  # (b, k), (b, reasons), (b,)
                dropped[batch] = drop
                below_min[batch] = below
                cols = np.arange(k)[None, :]  # (1, k)
                if rank_window == "search":
                    window = (cols >= params.range_min) & (cols < params.range_max)  # (1, k)
                else:
                    window = cols < params.range_max + n_excl[:, None]  # (b, k)
                in_window[batch] = ((cand_idx >= 0) & window).sum(axis=1)
                rj, cj = np.nonzero(chosen)  # row-major: per row, by descending score
                sc = cand_sc[rj, cj]
                mined_scores.append(sc)
                has_mined = chosen.any(axis=1)  # (b,)
                first = chosen.argmax(axis=1)  # (b,)
                hardest_gap[batch[has_mined]] = (ps - cand_sc[np.arange(b), first])[has_mined]
                for j, c, s in zip(rj.tolist(), cand_idx[rj, cj].tolist(), sc.tolist(), strict=True):
                    per_row[j].append({"text": part.texts[c], "score": round(s, 6), "source_id": source_of.get(c)})

            pos_score[batch] = ps
            for j, i in enumerate(batch.tolist()):
                n_negs[i] = len(per_row[j])
                out[i] = _out_row(rows[i], per_row[j], round(float(ps[j]), 6))
        del emb, searcher, pid, norm, by_norm, by_query, by_source, source_of  # before the next partition's

    short = n_negs < params.num_negatives  # (n,)
    all_mined = np.concatenate(mined_scores) if mined_scores else np.zeros(0, dtype=np.float32)

    def by(keys: list[str]) -> dict[str, Any]:
        names, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
        stats: dict[str, Any] = {}
        for g, name in enumerate(names.tolist()):
            sel = inverse == g
            stats[name] = {
                "rows": int(sel.sum()),
                "short": int(short[sel].sum()),
                "negatives": int(n_negs[sel].sum()),
                "dropped": {r: int(dropped[sel, c].sum()) for c, r in enumerate(DROP_REASONS)},
                "positive_score_mean": round(float(pos_score[sel].mean()), 6),
                "hardest_gap_mean": _nanmean(hardest_gap[sel]),
            }
        return stats

    report.update({
        "teacher_fingerprint": fp,
        "rows": {
            "in": n,
            "out": n,
            "with_dataset_negative": int(has_neg.sum()),
            "short": int(short.sum()),
            "without_negatives": int((n_negs == 0).sum()),
        },
        "negatives": {"total": int(n_negs.sum()), "dataset": int(kept_dataset.sum()), "mined": int(all_mined.size)},
        "dataset_negatives": {
            "kept": int(kept_dataset.sum()),
            "above_margin": int(dataset_above_margin.sum()),  # kept anyway: the dataset labels them negative
            "dropped_equal_to_positive": dataset_equals_positive,
            "dropped_num_negatives_0": dataset_no_room,
        },
        "candidates": {
            "in_window": int(in_window.sum()),
            "dropped": {r: int(dropped[:, c].sum()) for c, r in enumerate(DROP_REASONS)},
            "below_range_min": int(below_min.sum()),
            "chosen": int(all_mined.size),
        },
        "corpus": {
            "partitions": len(parts),
            "passages": sum(len(p.texts) for p in parts),
            "largest_partition": max((len(p.texts) for p in parts), default=0),
            "index": dict(sorted(index_used.items())),
        },
        "encoding": {
            kind: {"unique": n_unique[kind], "encoded": encoded[kind], "cached": n_unique[kind] - encoded[kind]}
            for kind in KINDS
        },
        "scores": {
            "positive": score_summary(pos_score),
            "mined_negative": score_summary(all_mined),
            "random_negative": score_summary(random_score[~np.isnan(random_score)]),
            "dataset_negative": score_summary(dataset_score[~np.isnan(dataset_score)]),
            "hardest_gap": score_summary(hardest_gap[~np.isnan(hardest_gap)]),
        },
        "by_lang": by([r["lang"] for r in rows]),
        "by_source": by([r["source"] for r in rows]),
    })
    logger.info(
        "mined %d negatives for %d rows (%d short of %d); dropped %s",
        int(n_negs.sum()), n, int(short.sum()), params.num_negatives, report["candidates"]["dropped"],
    )
    return [r for r in out if r is not None], report


def _index_label(requested: str, searcher: _Searcher | None) -> str:
    if searcher is None:
        return "none"
    return searcher.kind if searcher.kind == requested else f"{requested}->{searcher.kind}"


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return round(float(values.mean()), 6) if values.size else None
