"""One request to an OpenAI-compatible ``/chat/completions`` endpoint: its body, attempts, retries and answer.

:class:`ChatRequests` holds the per-request methods of :class:`~retrofit.generate.openai_backend.OpenAIBackend`,
which adds the worker pool, the circuit breaker and the preflight check. The helpers here (token estimates,
:func:`redact_url`, ``Retry-After`` parsing) need no endpoint.

Retry policy (per request; ``max_retries`` retries after the first attempt):

* **retried**: HTTP 429 (``429``), HTTP 5xx (``5xx``), client timeouts and HTTP 408 (``timeout``), refused or
  dropped connections (``connection``), and 2xx bodies that are not a chat completion (``malformed``);
* **not retried**: any other 4xx (``4xx``) and any other non-2xx status (``other``): the request fails at once
  with an error naming the status and the server's message;
* **wait** before retry ``n`` (0-based): ``d = min(backoff_max_s, backoff_base_s * 2**n)``, then a uniform
  draw in ``[d/2, d]`` (equal jitter, so concurrent workers spread out but the wait still grows). A 429 that
  carries ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date) waits what the server asked instead, plus
  up to ``backoff_base_s`` of jitter;
* after ``max_retries`` the request is recorded as failed with the reason of its last attempt, and
  :meth:`OpenAIBackend.generate` goes on with the others and returns the failures.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from .base import GenRequest, GenResponse
from .ledger import FailedRequest, Ledger

log = logging.getLogger(__name__)

#: Rough chat-format overhead per message (role and separators), used only when the server reports no usage.
_TOKENS_PER_MESSAGE = 4
#: How much of a server's error body goes into a failure detail.
_DETAIL_CHARS = 300
#: HTTP statuses that mean no request of this run can succeed: the key was refused, or the URL or model is wrong.
ENDPOINT_STATUSES = (401, 403, 404)


def estimate_tokens(text: str) -> int:
    """Rough token count for cost accounting when a server reports no usage.

    UTF-8 bytes / 4 is about right for English with BPE vocabularies (≈4 characters a token) and errs high rather
    than low for non-Latin scripts, whose characters take 2-4 bytes and often about one token each.

    Args:
        text: Any text.

    Returns:
        ``ceil(len(text.encode("utf-8")) / 4)``.
    """
    return math.ceil(len(text.encode("utf-8")) / 4)


def estimate_prompt_tokens(messages: Sequence[dict[str, str]]) -> int:
    """Rough prompt token count of chat ``messages``: :func:`estimate_tokens` of each content plus a per-message
    overhead of 4.

    Args:
        messages: Chat messages as :meth:`GenRequest.chat` returns them.

    Returns:
        The estimate.
    """
    return sum(estimate_tokens(m["content"]) + _TOKENS_PER_MESSAGE for m in messages)


def redact_url(url: str) -> str:
    """``url`` without user info, query string or fragment, i.e. without anything that may carry credentials.

    Args:
        url: An http(s) URL.

    Returns:
        ``scheme://host[:port]/path``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class _Retry:
    reason: str
    detail: str
    retry_after_s: float | None = None
    status: int | None = None


@dataclass(frozen=True)
class _Fatal:
    reason: str
    detail: str
    status: int | None = None


class Cancelled(Exception):
    """Raised in a worker when :meth:`OpenAIBackend.generate` is being torn down."""


class ChatRequests:
    """One chat-completion request, sent with the retry policy of the module docstring (a mixin).

    :class:`~retrofit.generate.openai_backend.OpenAIBackend` inherits these methods and sets the attributes below in
    its ``__init__`` (see its arguments); each of its worker threads runs :meth:`_run_one`.
    """

    model: str
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    ledger: Ledger
    _api_key: str
    _url: str
    _rng: random.Random
    _sleep: Callable[[float], None] | None

    def _body(self, i: int, req: GenRequest) -> dict[str, Any]:
        if req.prompt is None and req.messages is None:
            raise ValueError(f"request {i} (key {req.key}) has neither prompt nor messages")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": req.chat(),
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        }
        if req.stop:
            body["stop"] = list(req.stop)
        return body

    def _run_one(
        self, client: httpx2.Client, req: GenRequest, body: dict[str, Any], stop: threading.Event
    ) -> GenResponse | FailedRequest:
        if stop.is_set():  # picked up by a worker after the run was stopped: never sent
            raise Cancelled
        self.ledger.record_sent()
        retry = 0
        while True:
            outcome = self._attempt(client, req, body)
            if isinstance(outcome, GenResponse):
                return outcome
            if isinstance(outcome, _Fatal) or retry >= self.max_retries:
                self.ledger.record_failure(outcome.reason)
                detail = outcome.detail if isinstance(outcome, _Fatal) else f"{outcome.detail} (retries exhausted)"
                log.warning("request %s failed after %d attempt(s): %s", req.key[:12], retry + 1, detail)
                if outcome.status in ENDPOINT_STATUSES:
                    stop.set()  # no request of this run can succeed: keep the other workers from sending more
                return FailedRequest(
                    request=req, reason=outcome.reason, detail=detail, attempts=retry + 1, status=outcome.status
                )
            delay = self._delay(retry, outcome.retry_after_s)
            self.ledger.record_retry(outcome.reason)
            log.info(
                "retry %d/%d of request %s after %s (%s); waiting %.2fs",
                retry + 1, self.max_retries, req.key[:12], outcome.reason, outcome.detail, delay,
            )
            self._wait(delay, stop)
            retry += 1

    def _delay(self, retry: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return retry_after_s + self._rng.uniform(0, self.backoff_base_s)
        d = min(self.backoff_max_s, self.backoff_base_s * 2**retry)
        return self._rng.uniform(d / 2, d)

    def _wait(self, delay: float, stop: threading.Event) -> None:
        if self._sleep is not None:
            self._sleep(delay)
        else:
            stop.wait(delay)
        if stop.is_set():
            raise Cancelled

    def _attempt(
        self, client: httpx2.Client, req: GenRequest, body: dict[str, Any]
    ) -> GenResponse | _Retry | _Fatal:
        try:
            resp = client.post(self._url, json=body)
        except httpx2.TimeoutException as exc:
            return _Retry("timeout", f"{type(exc).__name__} after {self.timeout_s}s")
        except httpx2.TransportError as exc:
            return _Retry("connection", f"{type(exc).__name__}: {self._redact(str(exc))}")
        status = resp.status_code
        if status == 429:
            return _Retry("429", f"HTTP 429: {self._snippet(resp)}", _retry_after_s(resp.headers), status)
        if status == 408:
            return _Retry("timeout", f"HTTP 408: {self._snippet(resp)}", status=status)
        if status >= 500:
            return _Retry("5xx", f"HTTP {status}: {self._snippet(resp)}", status=status)
        if not 200 <= status < 300:
            reason = "4xx" if 400 <= status < 500 else "other"
            return _Fatal(
                reason, f"HTTP {status} from {redact_url(self._url)} (not retried): {self._snippet(resp)}", status
            )
        return self._parse(req, body, resp)

    def _parse(self, req: GenRequest, body: dict[str, Any], resp: httpx2.Response) -> GenResponse | _Retry:
        try:
            data = json.loads(resp.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _Retry("malformed", f"HTTP {resp.status_code} body is not JSON ({exc}): {self._snippet(resp)}")
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError("message.content is not a string")
            finish_reason = choice.get("finish_reason") or "unknown"
            model = data.get("model") or self.model
            if not isinstance(finish_reason, str) or not isinstance(model, str):
                raise TypeError("finish_reason or model is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            return _Retry("malformed", f"body is not a chat completion ({why}): {self._snippet(resp)}")
        text = content or ""
        usage = data.get("usage")
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        completion_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        estimated = not (isinstance(prompt_tokens, int) and isinstance(completion_tokens, int))
        if estimated:
            prompt_tokens = estimate_prompt_tokens(body["messages"])
            completion_tokens = estimate_tokens(text)
        assert isinstance(prompt_tokens, int) and isinstance(completion_tokens, int)
        self.ledger.record_success(prompt_tokens, completion_tokens, estimated=estimated)
        return GenResponse(
            key=req.key, text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, model=model,
        )

    # -- helpers -----------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***")

    def _snippet(self, resp: httpx2.Response) -> str:
        text = resp.content[:_DETAIL_CHARS].decode("utf-8", errors="replace").strip()
        return self._redact(text) or "<empty body>"


def _retry_after_s(headers: httpx2.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or HTTP date), if present."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        log.warning("ignoring unparseable Retry-After header %r", value[:64])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
