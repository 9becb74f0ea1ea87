"""Backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server).

Requests go out over raw HTTP with ``httpx2`` (the HTTP client the ``openai`` package itself is built on), not
through the ``openai`` client, because this backend must classify every failure exactly and count it:

* the ``openai`` client folds a 200 with a broken body into a lenient pydantic parse or a generic error, while
  here a malformed body is a retryable failure of its own, counted as ``malformed``;
* ``Retry-After`` / ``retry-after-ms`` must be honoured and logged by our retry loop, not by a hidden one, and
  one retry loop (ours, with ``max_retries``) is easier to reason about than two;
* the ``openai`` client also reads ``OPENAI_BASE_URL``/``OPENAI_ORG_ID`` and other settings from the environment,
  which would make a run depend on more than its params.

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

The API key is read from the environment variable named by ``api_key_env`` and is only ever put in the
``Authorization`` header: it is not stored in ``repr``, :meth:`OpenAIBackend.identity`, log lines, failure
details or exceptions (server text that echoes it is redacted).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
from tqdm.auto import tqdm

from .base import GenRequest, GenResponse
from .ledger import FailedRequest, Ledger

logger = logging.getLogger(__name__)

#: Rough chat-format overhead per message (role and separators), used only when the server reports no usage.
_TOKENS_PER_MESSAGE = 4
#: How much of a server's error body goes into a failure detail.
_DETAIL_CHARS = 300


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


@dataclass(frozen=True)
class _Fatal:
    reason: str
    detail: str


class _Cancelled(Exception):
    """Raised in a worker when :meth:`OpenAIBackend.generate` is being torn down."""


class OpenAIBackend:
    """:class:`~retrofit.generate.base.Backend` for an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1`` (vLLM);
            ``/chat/completions`` is appended.
        model: Model name sent with every request (``gpt-4o-mini`` at paper scale).
        api_key_env: Name of the environment variable holding the API key. It must be set and non-empty; servers
            without authentication (local vLLM, llama.cpp) accept any value, e.g. ``EMPTY``.
        concurrency: Requests in flight at once (worker threads and pooled connections).
        timeout_s: Per-attempt timeout for connecting and for each read of the response, in seconds.
        max_retries: Retries after the first attempt before a request counts as failed.
        backoff_base_s: Base of the exponential backoff, in seconds.
        backoff_max_s: Cap on one computed backoff wait (a server's ``Retry-After`` is honoured even above it).
        ledger: Where requests, retries, failures, tokens and cost are counted; a new zero-price one if ``None``.
        progress: Show a tqdm bar (rate and ETA) on stderr during :meth:`generate`.
        sleep: Function that waits the given seconds between attempts; tests pass a recorder. ``None``: a real
            wait that :meth:`generate` can cut short when it is aborting.

    Raises:
        ValueError: A parameter is out of range, ``base_url`` is not an http(s) URL, or the API key variable is
            unset or empty (the message names the variable, never a value).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 60,
        max_retries: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30,
        ledger: Ledger | None = None,
        *,
        progress: bool = True,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OpenAIBackend: base_url must be an http(s) URL, got {redact_url(base_url)!r}")
        if parts.username is not None or parts.password is not None:
            # httpx logs request URLs, so credentials in the URL would end up in logs; they belong in the env var.
            raise ValueError(
                f"OpenAIBackend: base_url must not contain credentials (user:password@); got {redact_url(base_url)!r}. "
                f"Put the API key in the environment variable {api_key_env} instead"
            )
        if not model:
            raise ValueError("OpenAIBackend: model must be a non-empty model name")
        if concurrency < 1:
            raise ValueError(f"OpenAIBackend: concurrency must be >= 1, got {concurrency}")
        if not timeout_s > 0:
            raise ValueError(f"OpenAIBackend: timeout_s must be > 0 seconds, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"OpenAIBackend: max_retries must be >= 0, got {max_retries}")
        if not 0 <= backoff_base_s <= backoff_max_s:
            raise ValueError(
                f"OpenAIBackend: need 0 <= backoff_base_s <= backoff_max_s, got {backoff_base_s} and {backoff_max_s}"
            )
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise ValueError(
                f"OpenAIBackend: environment variable {api_key_env} is unset or empty; export the API key there "
                "(servers without authentication accept any value, e.g. EMPTY)"
            )
        self._api_key = api_key
        self._base_url = base_url
        # Keep any query (e.g. ``?api-version=``) after the path we append.
        self._url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/") + "/chat/completions", parts.query, "")
        )
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.ledger = ledger if ledger is not None else Ledger()
        self.progress = progress
        self._sleep = sleep
        self._rng = random.Random()  # jitter only; never affects outputs

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(base_url={redact_url(self._base_url)!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, timeout_s={self.timeout_s}, "
            f"max_retries={self.max_retries})"
        )

    def identity(self) -> dict[str, str]:
        """Provenance: ``{"backend": "openai", "model": ..., "base_url": ...}`` with the URL's credentials removed.

        Returns:
            The identity dict recorded in every output row.
        """
        return {"backend": self.name, "model": self.model, "base_url": redact_url(self._base_url)}

    def generate(
        self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]
    ) -> list[FailedRequest]:
        """Send every request (bounded concurrency, retries) and hand each answer to ``on_response``.

        ``on_response`` is called once per successful request, in the calling thread, as soon as its answer
        arrives (completion order), so it needs no locking; it should write the raw answer to the response cache
        before parsing it. If it raises (or the run is interrupted), queued requests are cancelled, the ones in
        flight finish their current attempt, and the exception propagates.

        Args:
            requests: Requests to send; none of them is skipped or deduplicated here (see
                :func:`~retrofit.generate.cache.generate_with_cache`).
            on_response: Receives ``(request, raw response)``.

        Returns:
            The requests that failed for good (non-retryable error, or retries exhausted), in input order; empty
            when all succeeded. A summary of failures and retries is logged.

        Raises:
            ValueError: A request has neither ``prompt`` nor ``messages`` (before anything is sent).
        """
        bodies = [self._body(i, req) for i, req in enumerate(requests)]
        if not requests:
            return []
        stop = threading.Event()
        retries_before = self.ledger.retries_total
        failed: dict[int, FailedRequest] = {}
        limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        with (
            tqdm(total=len(requests), unit="req", desc=f"openai {self.model}", disable=not self.progress) as bar,
            httpx2.Client(timeout=httpx2.Timeout(self.timeout_s), limits=limits, headers=headers) as client,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool,
        ):
            futures: dict[Future[GenResponse | FailedRequest], int] = {
                pool.submit(self._run_one, client, req, body, stop): i
                for i, (req, body) in enumerate(zip(requests, bodies, strict=True))
            }
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    outcome = fut.result()
                    if isinstance(outcome, FailedRequest):
                        failed[i] = outcome
                    else:
                        on_response(requests[i], outcome)
                    bar.update(1)
                    retries = self.ledger.retries_total - retries_before
                    bar.set_postfix(retries=retries, failed=len(failed), refresh=False)
            except BaseException:
                stop.set()  # wake workers in backoff; they give up instead of retrying
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        self._log_summary(len(requests), failed, self.ledger.retries_total - retries_before)
        return [failed[i] for i in sorted(failed)]

    # -- one request -------------------------------------------------------------------------------------------

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
        self.ledger.record_sent()
        retry = 0
        while True:
            outcome = self._attempt(client, req, body)
            if isinstance(outcome, GenResponse):
                return outcome
            if isinstance(outcome, _Fatal) or retry >= self.max_retries:
                self.ledger.record_failure(outcome.reason)
                detail = outcome.detail if isinstance(outcome, _Fatal) else f"{outcome.detail} (retries exhausted)"
                logger.warning("request %s failed after %d attempt(s): %s", req.key[:12], retry + 1, detail)
                return FailedRequest(request=req, reason=outcome.reason, detail=detail, attempts=retry + 1)
            delay = self._delay(retry, outcome.retry_after_s)
            self.ledger.record_retry(outcome.reason)
            logger.info(
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
            raise _Cancelled

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
            return _Retry("429", f"HTTP 429: {self._snippet(resp)}", _retry_after_s(resp.headers))
        if status == 408:
            return _Retry("timeout", f"HTTP 408: {self._snippet(resp)}")
        if status >= 500:
            return _Retry("5xx", f"HTTP {status}: {self._snippet(resp)}")
        if not 200 <= status < 300:
            reason = "4xx" if 400 <= status < 500 else "other"
            return _Fatal(
                reason, f"HTTP {status} from {redact_url(self._url)} (not retried): {self._snippet(resp)}"
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

    def _log_summary(self, n: int, failed: dict[int, FailedRequest], retries: int) -> None:
        if retries:
            by_reason = ", ".join(f"{k}={v}" for k, v in self.ledger.retries.items() if v)
            logger.warning("%d retries over %d requests (cumulative by reason: %s)", retries, n, by_reason)
        if failed:
            counts: dict[str, int] = {}
            for f in failed.values():
                counts[f.reason] = counts.get(f.reason, 0) + 1
            logger.error(
                "%d of %d requests failed and got no response (%s); they are not cached, so a rerun resends them",
                len(failed), n, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
            )


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
        logger.warning("ignoring unparseable Retry-After header %r", value[:64])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
