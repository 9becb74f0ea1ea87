"""Backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server).

Requests go out over raw HTTP with ``httpx2`` (the HTTP client the ``openai`` package itself is built on), not
through the ``openai`` client, because this backend must classify every failure exactly and count it:

* the ``openai`` client folds a 200 with a broken body into a lenient pydantic parse or a generic error, while
  here a malformed body is a retryable failure of its own, counted as ``malformed``;
* ``Retry-After`` / ``retry-after-ms`` must be honoured and logged by our retry loop, not by a hidden one, and
  one retry loop (ours, with ``max_retries``) is easier to reason about than two;
* the ``openai`` client also reads ``OPENAI_BASE_URL``/``OPENAI_ORG_ID`` and other settings from the environment,
  which would make a run depend on more than its params.

Retry policy (per request): see :mod:`retrofit.generate.openai_request`. HTTP 429 and 5xx, timeouts, dropped
connections and malformed answers are retried with exponential backoff (a server's ``Retry-After`` is honoured); other
4xx fail at once.

Circuit breaker (so a dead endpoint or a bad key costs seconds and a handful of requests, not a round of them):

* :meth:`OpenAIBackend.preflight`, called once before the first request of a run, sends ``GET {base_url}/models``
  (free; a server without that route gets one 1-token chat completion instead). A refused connection, a DNS
  failure, a timeout, or HTTP 401/403/404 raises :class:`EndpointError` at once, without retries;
* during :meth:`OpenAIBackend.generate`, a request that fails with HTTP 401/403/404 (the key was refused, the URL or
  model is wrong: every other request would fail the same way) stops the run at once, and so does a failure rate
  above ``breaker_failure_rate`` over the last ``breaker_window`` finished requests (a request fails only once its
  retries are spent). Stopping raises :class:`CircuitOpen`; every answer that arrived before, including those of
  requests still in flight when it tripped, has already been handed to ``on_response`` (the response cache), so a
  rerun resends none of them.

Every :class:`EndpointError` names the endpoint (without credentials), the environment variable that holds the key
(never the key) and the cause.

The API key is read from the environment variable named by ``api_key_env`` and is only ever put in the
``Authorization`` header: it is not stored in ``repr``, :meth:`OpenAIBackend.identity`, log lines, failure
details or exceptions (server text that echoes it is redacted).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
from tqdm.auto import tqdm

from retrofit.errors import RetrofitError

from .base import GenRequest, GenResponse
from .ledger import FailedRequest, Ledger
from .openai_request import ENDPOINT_STATUSES, Cancelled, ChatRequests, redact_url

log = logging.getLogger(__name__)

#: Connect timeout of the preflight check, in seconds (at most ``timeout_s``): an unreachable host fails fast.
_PREFLIGHT_CONNECT_S = 5.0


class EndpointError(RetrofitError):
    """The endpoint cannot serve this run: unreachable, key refused, wrong URL or model, or failing too often.

    The message names the endpoint (without credentials), the environment variable that holds the API key (never the
    key itself) and the cause.
    """


class CircuitOpen(EndpointError):
    """Raised by :meth:`OpenAIBackend.generate` when the circuit breaker stops a run; finished answers are kept."""


@dataclass
class _Round:
    """The outcomes of one :meth:`OpenAIBackend.generate` call, gathered in the calling thread."""

    requests: Sequence[GenRequest]
    on_response: Callable[[GenRequest, GenResponse], None]
    retries_before: int  # the ledger's retry count when the round began
    failed: dict[int, FailedRequest] = field(default_factory=dict)  # request index -> final failure
    delivered: set[int] = field(default_factory=set)  # request indices whose outcome was handled
    tripped: str | None = None  # why the circuit breaker stopped the round

    def deliver(self, i: int, outcome: GenResponse | FailedRequest) -> None:
        """Handle request ``i``'s outcome: keep a failure, hand an answer to ``on_response``."""
        self.delivered.add(i)
        if isinstance(outcome, FailedRequest):
            self.failed[i] = outcome
        else:
            self.on_response(self.requests[i], outcome)


class OpenAIBackend(ChatRequests):
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
        breaker_window: Finished requests (successes and final failures) over which the failure rate is measured;
            the breaker judges only a full window. It spans successive :meth:`generate` calls (rounds).
        breaker_failure_rate: :meth:`generate` stops with :class:`CircuitOpen` when the share of failures in the
            window is above this; 1.0 never stops on the rate (HTTP 401/403/404 still stop at once).
        progress: Show a tqdm bar (rate and ETA) on stderr during :meth:`generate`.
        sleep: Function that waits the given seconds between attempts; tests pass a recorder. ``None``: a real
            wait that :meth:`generate` can cut short when it is aborting.

    Raises:
        ValueError: A parameter is out of range or ``base_url`` is not an http(s) URL (the message never shows
            credentials); ``params.yaml`` validation catches these before a stage gets here.
        EndpointError: The API key variable is unset or empty (the message names the variable).
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
        breaker_window: int = 32,
        breaker_failure_rate: float = 0.5,
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
        if breaker_window < 1:
            raise ValueError(f"OpenAIBackend: breaker_window must be >= 1 request, got {breaker_window}")
        if not 0 <= breaker_failure_rate <= 1:
            raise ValueError(f"OpenAIBackend: breaker_failure_rate must be in [0, 1], got {breaker_failure_rate}")
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise EndpointError(
                f"openai endpoint {redact_url(base_url)}: environment variable {api_key_env} is unset or empty; export "
                "the API key there (servers without authentication accept any value, e.g. EMPTY)"
            )
        self._api_key = api_key
        self._base_url = base_url
        # Keep any query (e.g. ``?api-version=``) after the path we append.
        self._url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/") + "/chat/completions", parts.query, "")
        )
        self._models_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/models", parts.query, ""))
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.ledger = ledger if ledger is not None else Ledger()
        self.breaker_window = breaker_window
        self.breaker_failure_rate = float(breaker_failure_rate)
        self._recent: deque[FailedRequest | None] = deque(maxlen=breaker_window)  # None: answered
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

    def preflight(self) -> None:
        """Check that the endpoint answers and accepts the key, before a run sends any request.

        Sends ``GET {base_url}/models``, which OpenAI, vLLM, llama.cpp and Ollama serve without cost. Where that route
        is missing (404), or the listing does not name :attr:`model`, one chat completion of 1 token follows, which
        tells a server without the route (or a proxy that lists fewer models) from a wrong ``base_url`` or model.
        Nothing is retried, so a refused port fails in well under a second and an unreachable host within a 5 s
        connect timeout. Other answers (429, 5xx, a dropped connection) are logged and left to the circuit breaker
        of :meth:`generate`, which stops the run if they persist.

        Raises:
            EndpointError: The connection was refused, the host name does not resolve, connecting or the answer
                timed out, or the endpoint answered HTTP 401/403 (the key was refused) or 404 (wrong URL or model).
        """
        timeout = httpx2.Timeout(self.timeout_s, connect=min(self.timeout_s, _PREFLIGHT_CONNECT_S))
        with httpx2.Client(timeout=timeout, headers=self._headers()) as client:
            resp = self._probe(client, "GET", self._models_url)
            if resp is None:
                return
            listed = _model_ids(resp) if resp.is_success else None
            if resp.status_code == 404 or (listed and self.model not in listed):
                why = "has no such route" if resp.status_code == 404 else f"does not list model {self.model!r}"
                log.info("preflight: %s %s; sending one 1-token chat completion", redact_url(self._models_url), why)
                body = {"model": self.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
                resp = self._probe(client, "POST", self._url, json=body)
                if resp is None:
                    return
        status, url = resp.status_code, redact_url(str(resp.request.url))
        if status in (401, 403):
            raise self._error(f"HTTP {status} from {url}: the key was refused ({self._snippet(resp)})")
        if status == 404:
            raise self._error(
                f"HTTP 404 from {url}: check that base_url is the API root (e.g. https://api.openai.com/v1) and that "
                f"model {self.model!r} exists there ({self._snippet(resp)})"
            )
        if not resp.is_success:
            log.warning(
                "preflight: HTTP %d from %s (%s); going on, the circuit breaker stops the run if failures persist",
                status, url, self._snippet(resp),
            )
            return
        log.info("preflight: %s answers and accepts the key in %s", redact_url(self._base_url), self.api_key_env)

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
            CircuitOpen: The circuit breaker stopped the run (see the module docstring): a request got HTTP
                401/403/404, or too many of the last ``breaker_window`` requests failed. Every answer that arrived,
                in flight ones included, was handed to ``on_response`` first; queued requests were not sent.
        """
        bodies = [self._body(i, req) for i, req in enumerate(requests)]
        if not requests:
            return []
        rnd = _Round(requests, on_response, retries_before=self.ledger.retries_total)
        self._send_all(rnd, bodies)
        self._log_summary(len(requests), rnd.failed, self.ledger.retries_total - rnd.retries_before)
        if rnd.tripped is not None:
            self._recent.clear()
            raise self._stopped(rnd)
        return [rnd.failed[i] for i in sorted(rnd.failed)]

    def _send_all(self, rnd: _Round, bodies: list[dict[str, Any]]) -> None:
        """Send every request of ``rnd`` from a worker pool until all are done or the circuit breaker trips."""
        stop = threading.Event()
        limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        with (
            tqdm(total=len(rnd.requests), unit="req", desc=f"openai {self.model}", disable=not self.progress) as bar,
            httpx2.Client(timeout=httpx2.Timeout(self.timeout_s), limits=limits, headers=self._headers()) as client,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool,
        ):
            futures: dict[Future[GenResponse | FailedRequest], int] = {
                pool.submit(self._run_one, client, req, body, stop): i
                for i, (req, body) in enumerate(zip(rnd.requests, bodies, strict=True))
            }
            try:
                self._deliver_as_completed(rnd, futures, bar)
            except BaseException:
                stop.set()  # wake workers in backoff; they give up instead of retrying
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            if rnd.tripped is not None:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                # Answers of requests that were in flight when the breaker tripped are paid for: keep them too.
                for fut, i in futures.items():
                    if i in rnd.delivered or fut.cancelled() or fut.exception() is not None:
                        continue  # not started, or given up in backoff
                    rnd.deliver(i, fut.result())

    def _deliver_as_completed(
        self, rnd: _Round, futures: dict[Future[GenResponse | FailedRequest], int], bar: tqdm
    ) -> None:
        """Deliver each outcome as it arrives and count it in the breaker, stopping when the breaker trips."""
        for fut in as_completed(futures):
            i = futures[fut]
            if isinstance(fut.exception(), Cancelled):
                continue  # never sent, or given up in backoff, after another request got 401/403/404
            outcome = fut.result()
            rnd.deliver(i, outcome)
            bar.update(1)
            retries = self.ledger.retries_total - rnd.retries_before
            bar.set_postfix(retries=retries, failed=len(rnd.failed), refresh=False)
            rnd.tripped = self._breaker(outcome)
            if rnd.tripped is not None:
                break

    def _stopped(self, rnd: _Round) -> EndpointError:
        """The :class:`CircuitOpen` error for a round the breaker stopped, with what became of its requests."""
        answered = len(rnd.delivered) - len(rnd.failed)
        return self._error(
            f"stopped: {rnd.tripped}. Of this round's {len(rnd.requests)} requests {answered} were answered (kept in "
            f"the response cache; a rerun does not send them again), {len(rnd.failed)} failed and "
            f"{len(rnd.requests) - len(rnd.delivered)} were not sent",
            CircuitOpen,
        )

    # -- circuit breaker and preflight ---------------------------------------------------------------------------

    def _breaker(self, outcome: GenResponse | FailedRequest) -> str | None:
        """Count one finished request in the breaker's window; the reason to stop the run, or ``None``."""
        if isinstance(outcome, FailedRequest) and outcome.status in ENDPOINT_STATUSES:
            cause = "the key was refused" if outcome.status in (401, 403) else "wrong base_url or model"
            return f"HTTP {outcome.status} ({cause}), which every request would get: {outcome.detail}"
        self._recent.append(outcome if isinstance(outcome, FailedRequest) else None)
        bad = [f for f in self._recent if f is not None]
        if len(self._recent) < self.breaker_window or len(bad) <= self.breaker_failure_rate * len(self._recent):
            return None
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(Counter(f.reason for f in bad).items()))
        return (
            f"{len(bad)} of the last {len(self._recent)} requests failed ({reasons}), more than "
            f"generate.openai.breaker_failure_rate={self.breaker_failure_rate:g}; last: {bad[-1].detail}"
        )

    def _probe(self, client: httpx2.Client, method: str, url: str, **kw: Any) -> httpx2.Response | None:
        """One preflight request; an unreachable endpoint raises, a dropped connection gives ``None``."""
        try:
            return client.request(method, url, **kw)
        except httpx2.ConnectError as exc:  # refused, DNS failure, TLS failure
            raise self._error(
                f"cannot connect to {redact_url(url)} ({type(exc).__name__}: {self._redact(str(exc))}); "
                "is the server running and generate.openai.base_url right?"
            ) from None
        except httpx2.TimeoutException as exc:
            raise self._error(
                f"no answer from {redact_url(url)} ({type(exc).__name__}; connect timeout "
                f"{min(self.timeout_s, _PREFLIGHT_CONNECT_S):g} s, read timeout {self.timeout_s:g} s)"
            ) from None
        except httpx2.TransportError as exc:
            log.warning(
                "preflight: %s %s failed (%s: %s); going on, the circuit breaker stops the run if failures persist",
                method, redact_url(url), type(exc).__name__, self._redact(str(exc)),
            )
            return None

    def _error(self, cause: str, kind: type[EndpointError] = EndpointError) -> EndpointError:
        return kind(
            f"openai endpoint {redact_url(self._base_url)} (API key in environment variable {self.api_key_env}): "
            f"{self._redact(cause)}"
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}

    # -- helpers -----------------------------------------------------------------------------------------------

    def _log_summary(self, n: int, failed: dict[int, FailedRequest], retries: int) -> None:
        if retries:
            by_reason = ", ".join(f"{k}={v}" for k, v in self.ledger.retries.items() if v)
            log.warning("%d retries over %d requests (cumulative by reason: %s)", retries, n, by_reason)
        if failed:
            counts: dict[str, int] = {}
            for f in failed.values():
                counts[f.reason] = counts.get(f.reason, 0) + 1
            log.error(
                "%d of %d requests failed and got no response (%s); they are not cached, so a rerun resends them",
                len(failed), n, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
            )


def _model_ids(resp: httpx2.Response) -> set[str] | None:
    """The model ids of an OpenAI ``/models`` listing (``{"data": [{"id": ...}, ...]}``); ``None`` if it is not one."""
    try:
        data = json.loads(resp.content)["data"]
        return {m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None
