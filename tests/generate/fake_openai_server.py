"""A local, deterministic OpenAI-compatible chat-completions server that injects faults on a per-request plan.

Runs on 127.0.0.1 with a random port in a background thread. A request is identified by the content of its last
message (the *prompt*); ``plan[prompt]`` lists what to do on the 1st, 2nd, ... attempt for that prompt, and any
attempt beyond the list gets ``default_fault`` (normally ``ok``), or a ``500`` when the server is set to fail
(``fail_after`` chat requests have been received, or a deterministic draw below ``fail_rate``; :meth:`heal` ends
both). The server stops by itself after ``lifetime_s`` seconds and answers at most ``max_requests`` requests (later
ones get a 400, which the client does not retry).

With ``api_key`` set, every request whose ``Authorization`` is not ``Bearer <api_key>`` gets a 401 that echoes the
header (a leaky server, to test redaction). ``GET /v1/models`` lists ``models`` (``None``: no such route, 404);
those requests are recorded in :attr:`FakeOpenAIServer.probes`, not in :attr:`FakeOpenAIServer.attempts`.

Faults:
    ``ok``          200 with a chat completion and ``usage``.
    ``no_usage``    200 with a chat completion but no ``usage``.
    ``delay``       ``ok`` after ``delay_s`` seconds (well inside the client timeout; for concurrency checks).
    ``429``         429 with ``Retry-After: <retry_after>`` (seconds).
    ``429_ms``      429 with ``retry-after-ms: <retry_after_ms>``.
    ``429_bare``    429 without any retry header.
    ``500``/``503`` that status with a JSON error body.
    ``400``         400 whose message echoes the request's Authorization header (a leaky server, to test redaction).
    ``401``/``404`` that status, the 401 echoing the Authorization header.
    ``slow``        ``ok`` only after ``slow_s`` seconds, meant to exceed the client timeout.
    ``malformed``   200 whose body is truncated JSON.
    ``not_chat``    200 with valid JSON that is not a chat completion.
    ``drop``        read the request, then close the socket without any response.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

#: Completion tokens the server reports for every answer.
COMPLETION_TOKENS = 7


def expected_text(prompt: str) -> str:
    """The answer the server gives for ``prompt``."""
    return "echo:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def prompt_tokens_for(prompt: str) -> int:
    """The prompt tokens the server reports for ``prompt`` (its length in characters)."""
    return len(prompt)


@dataclass
class Attempt:
    """One HTTP request the server received."""

    prompt: str
    fault: str
    body: dict[str, Any]
    authorization: str
    path: str = "/v1/chat/completions"


@dataclass
class _State:
    plan: dict[str, list[str]]
    retry_after: str
    retry_after_ms: str
    slow_s: float
    delay_s: float
    max_requests: int
    responder: Callable[[str], str] | None = None
    default_fault: str = "ok"
    api_key: str | None = None
    models: tuple[str, ...] | None = ()
    fail_rate: float = 0.0
    fail_after: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[Attempt] = field(default_factory=list)
    probes: list[Attempt] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; every response carries Content-Length
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        with state.lock:
            state.probes.append(Attempt("", "probe", {}, auth, self.path))
            models = state.models
        try:
            if state.api_key is not None and auth != f"Bearer {state.api_key}":
                self._json(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
            elif self.path == "/v1/models" and models is not None:
                self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
            else:
                self._json(404, {"error": {"message": f"fake server: no route GET {self.path}"}})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.loads(raw)
        prompt = body["messages"][-1]["content"]
        auth = self.headers.get("Authorization", "")
        with state.lock:
            n_prev = sum(1 for a in state.attempts if a.prompt == prompt)
            steps = state.plan.get(prompt, [])
            if state.api_key is not None and auth != f"Bearer {state.api_key}":
                fault = "401"
            elif n_prev < len(steps):
                fault = steps[n_prev]
            elif (state.fail_after is not None and len(state.attempts) >= state.fail_after) or (
                state.fail_rate and _draw(prompt, n_prev) < state.fail_rate
            ):
                fault = "500"
            else:
                fault = state.default_fault
            over_budget = len(state.attempts) >= state.max_requests
            state.attempts.append(Attempt(prompt, fault, body, auth))
            state.inflight += 1
            state.max_inflight = max(state.max_inflight, state.inflight)
        try:
            if over_budget or self.path != "/v1/chat/completions":
                self._json(400, {"error": {"message": f"fake server: request budget spent or bad path {self.path}"}})
            else:
                self._serve(fault, prompt, body, auth)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before we answered
            self.close_connection = True
        finally:
            with state.lock:
                state.inflight -= 1

    def _serve(self, fault: str, prompt: str, body: dict[str, Any], auth: str) -> None:
        state = self.server.state
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "slow":
            if state.stop.wait(state.slow_s):
                return
        if fault == "delay":
            state.stop.wait(state.delay_s)
        if fault == "429":
            self._json(429, {"error": {"message": "rate limited"}}, {"Retry-After": state.retry_after})
        elif fault == "429_ms":
            self._json(429, {"error": {"message": "rate limited"}}, {"retry-after-ms": state.retry_after_ms})
        elif fault == "429_bare":
            self._json(429, {"error": {"message": "rate limited"}})
        elif fault in ("500", "503"):
            self._json(int(fault), {"error": {"message": "server trouble"}})
        elif fault == "400":
            self._json(400, {"error": {"message": f"bad request (you sent Authorization: {auth})"}})
        elif fault == "401":
            self._json(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
        elif fault == "404":
            self._json(404, {"error": {"message": "The model does not exist"}})
        elif fault == "malformed":
            self._raw(200, b'{"id": "x", "choices": [{"message": {"content": "tru', "application/json")
        elif fault == "not_chat":
            self._json(200, {"object": "error", "message": "overloaded"})
        else:
            text = state.responder(prompt) if state.responder else expected_text(prompt)
            message = {"role": "assistant", "content": text}
            completion: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            if fault != "no_usage":
                pt, ct = prompt_tokens_for(prompt), COMPLETION_TOKENS
                completion["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
            self._json(200, completion)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(obj).encode("utf-8"), "application/json", headers)

    def _raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _draw(prompt: str, attempt: int) -> float:
    """A uniform number in [0, 1) fixed by the prompt and attempt number: fault rates that replay exactly."""
    return int(hashlib.sha256(f"{prompt}\x00{attempt}".encode()).hexdigest()[:8], 16) / 16**8


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeOpenAIServer:
    """Context manager running the fake server.

    Args:
        plan: Per-prompt list of faults for successive attempts (see the module docstring).
        retry_after: ``Retry-After`` value sent with fault ``429``.
        retry_after_ms: ``retry-after-ms`` value sent with fault ``429_ms``.
        slow_s: How long fault ``slow`` waits before answering.
        delay_s: How long fault ``delay`` waits before answering.
        max_requests: Requests answered before every further one gets a 400.
        responder: ``prompt -> answer text`` for ``ok`` answers (default: :func:`expected_text`).
        default_fault: What to do for attempts beyond a prompt's plan (``ok``, or e.g. ``delay``).
        lifetime_s: The server shuts itself down after this many seconds.
        api_key: The only key accepted (``None``: any); other requests get a 401.
        models: Model ids ``GET /v1/models`` lists; ``None``: the route does not exist (404).
        fail_rate: Share of attempts beyond a prompt's plan answered with a 500 (a deterministic draw per prompt
            and attempt number).
        fail_after: Every chat request after this many gets a 500 (``None``: never).
    """

    def __init__(
        self,
        plan: dict[str, list[str]] | None = None,
        *,
        retry_after: str = "1",
        retry_after_ms: str = "1500",
        slow_s: float = 3.0,
        delay_s: float = 0.05,
        max_requests: int = 500,
        lifetime_s: float = 60.0,
        responder: Callable[[str], str] | None = None,
        default_fault: str = "ok",
        api_key: str | None = None,
        models: Sequence[str] | None = (),
        fail_rate: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.state = _State(
            dict(plan or {}), retry_after, retry_after_ms, slow_s, delay_s, max_requests, responder, default_fault,
            api_key, None if models is None else tuple(models), fail_rate, fail_after,
        )
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL to give the client (``.../v1``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def attempts(self) -> list[Attempt]:
        """A copy of every request received so far, in arrival order."""
        with self.state.lock:
            return list(self.state.attempts)

    @property
    def max_inflight(self) -> int:
        """The most requests the server was handling at the same time."""
        return self.state.max_inflight

    @property
    def probes(self) -> list[Attempt]:
        """A copy of every GET request (``/v1/models``) received so far, in arrival order."""
        with self.state.lock:
            return list(self.state.probes)

    @property
    def requests_total(self) -> int:
        """Every HTTP request received: chat attempts and GET probes."""
        with self.state.lock:
            return len(self.state.attempts) + len(self.state.probes)

    def heal(self) -> None:
        """Stop failing: ``fail_after`` and ``fail_rate`` no longer apply to later requests."""
        with self.state.lock:
            self.state.fail_after = None
            self.state.fail_rate = 0.0

    def attempts_for(self, prompt: str) -> list[Attempt]:
        """The requests received for ``prompt``."""
        return [a for a in self.attempts if a.prompt == prompt]

    def start(self) -> FakeOpenAIServer:
        """Start serving; returns ``self``."""
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); handlers still waiting give up at once."""
        if self._stopped:
            return
        self._stopped = True
        self.state.stop.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def refused_url() -> str:
    """A base URL whose port refuses connections: bound once to get a free port, then closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"
