"""The on-disk embedding cache: embeddings keyed by ``(model fingerprint, kind, sha256(text))``.

Kept as our own code because no library we use offers it: sentence-transformers and FAISS cache nothing between
runs. With it, changing a mining parameter re-runs only the search, a run whose embeddings are all cached never
loads the teacher, and memory stays bounded by sharded ``.npy`` files rather than one ``texts x dim`` array.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrofit.embed.encoder import KINDS, Encoder, Kind, text_digest
from retrofit.io import atomic_file, write_json

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


_DIGEST_BYTES = 32


_KEY_DTYPE = np.dtype(f"V{_DIGEST_BYTES}")


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, array)


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
                log.warning("embedding cache: skipping unreadable shard %s (%s)", emb_path, exc)
                continue
            if keys.ndim != 2 or keys.shape[1] != _DIGEST_BYTES or emb.ndim != 2 or emb.shape[0] != keys.shape[0]:
                log.warning("embedding cache: skipping malformed shard %s", emb_path)
                continue
            if self.dim is not None and emb.shape[1] != self.dim:
                log.warning("embedding cache: skipping shard %s of dim %d, not %d", emb_path, emb.shape[1], self.dim)
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

        Missing texts are encoded in first-seen order, in shards of ``shard_size`` (a shard is one ``encode`` call).
        A cached embedding is served to later runs whatever texts it was encoded beside, so the encoder must make
        each embedding independent of its batch (:class:`retrofit.embed.encoder.SentenceTransformerEncoder` does:
        bit for bit under bf16 autocast, within 1e-7 in fp32).

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
            log.info("encoded %d/%d %s texts", min(start + self.shard_size, missing.size), missing.size, kind)
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
