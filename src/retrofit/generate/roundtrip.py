"""The generate stage's round-trip filter: a query is kept only if the base embedder ranks its positive in the top k."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def base_embedder(
    cache_dir: Path, bf16: bool, model_dir: str | Path = "models/base"
) -> Callable[[list[str], str], np.ndarray]:
    """The round-trip filter's embedding function: the base model, through the shared on-disk embedding cache
    (``<base.cache_dir>/embeddings``, which the mine stage reuses), for :class:`RoundTrip` and the benches that rank
    as the stage does."""
    # heavy (torch, sentence-transformers): imported only when an embedder is built
    from retrofit.embed.cache import EmbeddingCache
    from retrofit.embed.encoder import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(model_dir, batch_size=64, bf16=bf16)
    cache = EmbeddingCache(Path(cache_dir) / "embeddings")
    return lambda texts, kind: cache.embed(encoder, texts, kind)


class RoundTrip:
    """Round-trip consistency: keep a query only if the base embedder ranks its positive in the top ``k``.

    Candidates are the language's passage pool plus every positive that a planned example uses (so sentence
    positives of ``paraphrase`` compete too). Embeddings go through the mine stage's on-disk cache, so the mine
    stage reuses them.

    References:
        Alberti et al., "Synthetic QA Corpora Generation with Roundtrip Consistency", arXiv 1906.05416.
        Dai et al., "Promptagator: Few-shot Dense Retrieval From 8 Examples", arXiv 2209.11755.
    """

    def __init__(self, encode: Callable[[list[str], str], np.ndarray], k: int) -> None:
        self.encode = encode
        self.k = k

    def ranks(self, queries: list[str], positives: list[str], candidates: list[str]) -> list[int]:
        """Rank (0 = best) of each query's positive among ``candidates`` (positives must be among them)."""
        if not queries:
            return []
        index = {t: i for i, t in enumerate(candidates)}
        c = self.encode(candidates, "passage")  # (n_cand, dim)
        q = self.encode(queries, "query")  # (n_q, dim)
        out = []
        for start in range(0, len(queries), 256):  # bounded memory: (256, n_cand) at a time
            s = q[start : start + 256] @ c.T  # (b, n_cand)
            pos = np.array([index[p] for p in positives[start : start + 256]])
            own = s[np.arange(len(pos)), pos][:, None]  # (b, 1)
            out.extend((s > own).sum(axis=1).tolist())
        return out
