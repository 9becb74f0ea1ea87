"""The work an encoder did in this process, counted where it runs, for the roofline bench (``bench/roofline.py``).

Every forward of a BERT-family encoder through this project's code adds its texts' real token lengths and the
layers it ran to :data:`WORK`: the padding-free forward and the frozen-trunk cache (evaluation, training) and the
equal-length batches of :class:`~retrofit.embed.encoder.SentenceTransformerEncoder` (generate's round trip,
mining). A stage writes :meth:`EncoderWork.to_json` beside its timings; the bench turns it into floating-point
operations with :func:`encoder_flops` and compares the stage's time with what the CPU's measured peak allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EncoderWork:
    """Running totals of one process's encoder work.

    Attributes:
        texts: Sequences encoded (a text encoded twice counts twice).
        tokens: Real (non-padding) tokens encoded.
        layer_tokens: Sum over sequences of tokens x encoder layers run.
        layer_attention: Sum over sequences of length squared x encoder layers run (attention's work).
    """

    texts: int = 0
    tokens: int = 0
    layer_tokens: int = 0
    layer_attention: int = 0

    def add(self, lengths: Iterable[int], layers: int) -> None:
        """Count sequences of the given real lengths run through ``layers`` encoder layers."""
        lengths = [int(n) for n in lengths]
        self.texts += len(lengths)
        self.tokens += sum(lengths)
        self.layer_tokens += layers * sum(lengths)
        self.layer_attention += layers * sum(n * n for n in lengths)

    def skip(self, lengths: Iterable[int], layers: int) -> None:
        """Uncount ``layers`` layers of sequences already counted (served from the frozen-trunk cache)."""
        lengths = [int(n) for n in lengths]
        self.layer_tokens -= layers * sum(lengths)
        self.layer_attention -= layers * sum(n * n for n in lengths)

    def to_json(self) -> dict[str, int]:
        """The totals as a JSON object."""
        return asdict(self)


#: This process's encoder work.
WORK = EncoderWork()


def encoder_flops(work: dict[str, Any], hidden: int, intermediate: int) -> float:
    """Floating-point operations of a BERT-family forward with the work of :meth:`EncoderWork.to_json`.

    Per token and layer: the Q, K, V and output projections (4 h^2 multiply-adds) and the feed-forward block
    (2 h i); per sequence and layer: attention's scores and weighted sum (2 L^2 h). A multiply-add is 2 operations;
    layer norms, activations and pooling are left out (under 2% here).
    """
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    return float(work["layer_tokens"] * per_token_layer + work["layer_attention"] * 4 * hidden)
