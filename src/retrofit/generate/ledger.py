"""Per-run accounting for LLM generation: what was sent, retried, failed, and what it cost.

A :class:`Ledger` is shared by the response-cache helper (which counts cache hits) and a backend (which counts
requests sent, retries by reason, failures and tokens). It is thread-safe because backends record from worker
threads. :meth:`Ledger.to_metrics` gives a JSON-able dict for a DVC metrics file, for example::

    {"requests_total": 120, "cached_hits": 100, "duplicates": 0, "requests_sent": 20, "http_attempts": 23,
     "succeeded": 19, "failed": 1, "retries_total": 3,
     "retries": {"429": 1, "5xx": 2, "timeout": 0, "connection": 0, "malformed": 0},
     "failures": {"4xx": 1, "429": 0, "5xx": 0, "timeout": 0, "connection": 0, "malformed": 0, "other": 0},
     "prompt_tokens": 5120, "completion_tokens": 1900, "tokens_estimated": false,
     "estimated_responses": 0, "estimated_prompt_tokens": 0, "estimated_completion_tokens": 0,
     "price_per_1m_input": 0.15, "price_per_1m_output": 0.6, "cost_usd": 0.001908}

Tokens and cost cover only the responses received in this run; cache hits cost nothing now and are not counted.
Failed attempts are not billed by OpenAI and carry no usage, so they add no tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

from .base import GenRequest

#: Why an attempt is retried: HTTP 429, HTTP 5xx, a client-side timeout (or HTTP 408), a dropped or refused
#: connection, or a 2xx body that is not the JSON a chat completion should be.
RETRY_REASONS: Final[tuple[str, ...]] = ("429", "5xx", "timeout", "connection", "malformed")

#: Why a request finally failed: a non-retryable client error (4xx other than 408/429), one of the retry reasons
#: once ``max_retries`` is spent (the reason of the last attempt), or ``other`` (an unexpected status such as 3xx).
FAILURE_REASONS: Final[tuple[str, ...]] = ("4xx", *RETRY_REASONS, "other")


@dataclass(frozen=True)
class FailedRequest:
    """A request that got no usable response.

    Args:
        request: The request as it was handed to the backend.
        reason: One of :data:`FAILURE_REASONS`.
        detail: Human-readable cause (status code, server message, exception type); never contains credentials.
        attempts: HTTP attempts made, including the first.
        status: HTTP status of the last attempt, or ``None`` when no response came (timeout, connection).

    Returns:
        A record the stage reports as shortfall; rerunning the stage resends exactly these requests, because
        nothing for them is in the response cache.
    """

    request: GenRequest
    reason: str
    detail: str
    attempts: int
    status: int | None = None

    @property
    def key(self) -> str:
        """The failed request's key."""
        return self.request.key


class Ledger:
    """Thread-safe counters for one generation run, with cost from per-million-token prices.

    Args:
        price_per_1m_input: USD per million prompt tokens (GPT-4o-mini: 0.15).
        price_per_1m_output: USD per million completion tokens (GPT-4o-mini: 0.60).

    Raises:
        ValueError: A price is negative.
    """

    def __init__(self, price_per_1m_input: float = 0.0, price_per_1m_output: float = 0.0) -> None:
        for name, value in (("price_per_1m_input", price_per_1m_input), ("price_per_1m_output", price_per_1m_output)):
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"Ledger: {name} must be a non-negative number of USD, got {value!r}")
        self.price_per_1m_input = float(price_per_1m_input)
        self.price_per_1m_output = float(price_per_1m_output)
        self._lock = threading.Lock()
        self.cached_hits = 0
        self.duplicates = 0
        self.requests_sent = 0
        self.succeeded = 0
        self.failed = 0
        self.retries: dict[str, int] = {r: 0 for r in RETRY_REASONS}
        self.failures: dict[str, int] = {r: 0 for r in FAILURE_REASONS}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.estimated_responses = 0
        self.estimated_prompt_tokens = 0
        self.estimated_completion_tokens = 0

    def __repr__(self) -> str:
        return (
            f"Ledger(sent={self.requests_sent}, cached={self.cached_hits}, ok={self.succeeded}, "
            f"failed={self.failed}, retries={self.retries_total}, cost_usd={self.cost_usd:.6f})"
        )

    def record_cached(self, n: int = 1) -> None:
        """Count ``n`` requests answered from the response cache (not sent)."""
        with self._lock:
            self.cached_hits += n

    def record_duplicates(self, n: int = 1) -> None:
        """Count ``n`` requests whose key repeats an earlier request in the same batch (answered by that one)."""
        with self._lock:
            self.duplicates += n

    def record_sent(self) -> None:
        """Count one distinct request sent to the API (its first attempt)."""
        with self._lock:
            self.requests_sent += 1

    def record_retry(self, reason: str) -> None:
        """Count one retry (an attempt after the first) caused by ``reason``.

        Args:
            reason: One of :data:`RETRY_REASONS`.

        Raises:
            ValueError: ``reason`` is not a known retry reason.
        """
        if reason not in self.retries:
            raise ValueError(f"Ledger.record_retry: unknown reason {reason!r}; expected one of {RETRY_REASONS}")
        with self._lock:
            self.retries[reason] += 1

    def record_failure(self, reason: str) -> None:
        """Count one request that finally failed.

        Args:
            reason: One of :data:`FAILURE_REASONS`.

        Raises:
            ValueError: ``reason`` is not a known failure reason.
        """
        if reason not in self.failures:
            raise ValueError(f"Ledger.record_failure: unknown reason {reason!r}; expected one of {FAILURE_REASONS}")
        with self._lock:
            self.failed += 1
            self.failures[reason] += 1

    def record_answered(self, prompt_tokens: int, completion_tokens: int) -> None:
        """One request sent and answered at once (a local model: no retries, no failures)."""
        self.record_sent()
        self.record_success(prompt_tokens, completion_tokens)

    def record_success(self, prompt_tokens: int, completion_tokens: int, estimated: bool = False) -> None:
        """Count one successful response and its tokens.

        Args:
            prompt_tokens: Prompt tokens the server reported (or our estimate).
            completion_tokens: Completion tokens the server reported (or our estimate).
            estimated: True when the server sent no usage and the counts are estimates.
        """
        with self._lock:
            self.succeeded += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if estimated:
                self.estimated_responses += 1
                self.estimated_prompt_tokens += prompt_tokens
                self.estimated_completion_tokens += completion_tokens

    @property
    def retries_total(self) -> int:
        """All retries, whatever the reason."""
        return sum(self.retries.values())

    @property
    def cost_usd(self) -> float:
        """Cost of the tokens counted so far at the configured prices."""
        return (
            self.prompt_tokens * self.price_per_1m_input + self.completion_tokens * self.price_per_1m_output
        ) / 1_000_000

    def to_metrics(self) -> dict[str, Any]:
        """A consistent, JSON-able snapshot of every counter.

        Returns:
            A dict with plain ints, floats, bools and nested dicts of ints (see the module docstring); ``http_attempts``
            is ``requests_sent + retries_total`` and ``requests_total`` is ``cached_hits + duplicates + requests_sent``.
        """
        with self._lock:
            retries_total = sum(self.retries.values())
            return {
                "requests_total": self.cached_hits + self.duplicates + self.requests_sent,
                "cached_hits": self.cached_hits,
                "duplicates": self.duplicates,
                "requests_sent": self.requests_sent,
                "http_attempts": self.requests_sent + retries_total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "retries_total": retries_total,
                "retries": dict(self.retries),
                "failures": dict(self.failures),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "tokens_estimated": self.estimated_responses > 0,
                "estimated_responses": self.estimated_responses,
                "estimated_prompt_tokens": self.estimated_prompt_tokens,
                "estimated_completion_tokens": self.estimated_completion_tokens,
                "price_per_1m_input": self.price_per_1m_input,
                "price_per_1m_output": self.price_per_1m_output,
                "cost_usd": round(self.cost_usd, 8),
            }
