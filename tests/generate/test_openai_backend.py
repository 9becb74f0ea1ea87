"""OpenAIBackend against a local fault-injecting OpenAI-compatible server (127.0.0.1 only, no external network)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from retrofit.errors import RetrofitError
from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.cache import ResponseCache, generate_with_cache
from retrofit.generate.ledger import Ledger
from retrofit.generate.openai_backend import CircuitOpen, EndpointError, OpenAIBackend
from retrofit.generate.openai_request import estimate_prompt_tokens, estimate_tokens, redact_url

from .fake_openai_server import (
    COMPLETION_TOKENS,
    FakeOpenAIServer,
    expected_text,
    prompt_tokens_for,
    refused_url,
)

KEY_ENV = "RETROFIT_TEST_OPENAI_KEY"
SECRET = "fake-test-key-secret"
PRICE_IN, PRICE_OUT = 0.15, 0.60  # GPT-4o-mini, USD per 1M tokens
BASE_S, MAX_S = 0.01, 0.08  # small backoffs: the recorder below never really sleeps anyway
#: Client timeout where the plan has a ``slow`` answer (which comes after SLOW_S): short enough to keep the test
#: quick, long enough that no normal answer on a busy 2-core host hits it. Elsewhere the timeout is 10 s.
PLAN_TIMEOUT_S, SLOW_S = 1.5, 6.0


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # 127.0.0.1 must be reached directly


class SleepRecorder:
    """Stands in for time.sleep: records each backoff wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.delays.append(seconds)


def make_backend(server: FakeOpenAIServer, sleep: SleepRecorder, **kw) -> OpenAIBackend:
    args = dict(
        base_url=server.url, model="fake-mini", api_key_env=KEY_ENV, concurrency=4, timeout_s=10.0, max_retries=6,
        backoff_base_s=BASE_S, backoff_max_s=MAX_S, ledger=Ledger(PRICE_IN, PRICE_OUT), progress=False, sleep=sleep,
    )
    args.update(kw)
    return OpenAIBackend(**args)


def requests_for(prompts: list[str]) -> list[GenRequest]:
    return [
        GenRequest(messages=(("system", "You write queries."), ("user", p)), max_tokens=32, temperature=0.7, seed=11,
                   stop=("\n\n",), meta={"i": i})
        for i, p in enumerate(prompts)
    ]


#: A plan exercising every fault; "p-exhaust" fails 7 times = 1 attempt + max_retries (6).
PLAN = {
    "p-429": ["429", "ok"],
    "p-5xx": ["500", "503", "ok"],
    "p-slow": ["slow", "ok"],
    "p-malformed": ["malformed", "not_chat", "ok"],
    "p-drop": ["drop", "ok"],
    "p-400": ["400", "400"],  # the second 400 answers the rerun in the cache test
    "p-exhaust": ["500"] * 7,
    "p-nousage": ["no_usage"],
    "p-mixed": ["429_bare", "drop", "503", "ok"],
}
PROMPTS = [*PLAN, *(f"p-ok-{i}" for i in range(11))]  # 20 requests
FAILING = {"p-400": "4xx", "p-exhaust": "5xx"}
#: HTTP attempts the server must see per prompt in one run of PLAN.
ATTEMPTS = {"p-429": 2, "p-5xx": 3, "p-slow": 2, "p-malformed": 3, "p-drop": 2, "p-400": 1, "p-exhaust": 7,
            "p-nousage": 1, "p-mixed": 4, **{f"p-ok-{i}": 1 for i in range(11)}}


def test_fault_plan_every_request_answered_once_and_ledger_exact():
    reqs = requests_for(PROMPTS)
    sleep = SleepRecorder()
    got: list[tuple[GenRequest, GenResponse]] = []
    with FakeOpenAIServer(PLAN, retry_after="2", slow_s=SLOW_S) as server:
        backend = make_backend(server, sleep, timeout_s=PLAN_TIMEOUT_S)
        failed = backend.generate(reqs, lambda r, x: got.append((r, x)))
        attempts = server.attempts

    # Every succeeding request got exactly one response, and the right one.
    per_key = Counter(r.key for r, _ in got)
    ok_prompts = [p for p in PROMPTS if p not in FAILING]
    assert sorted(r.messages[-1][1] for r, _ in got) == sorted(ok_prompts)  # type: ignore[index]
    assert set(per_key.values()) == {1}
    for req, resp in got:
        prompt = req.messages[-1][1]  # type: ignore[index]
        assert resp.key == req.key
        assert resp.text == expected_text(prompt)
        assert (resp.finish_reason, resp.model) == ("stop", "fake-mini")
        if prompt == "p-nousage":
            assert resp.prompt_tokens == estimate_prompt_tokens(req.chat())
            assert resp.completion_tokens == estimate_tokens(expected_text(prompt))
        else:
            assert (resp.prompt_tokens, resp.completion_tokens) == (prompt_tokens_for(prompt), COMPLETION_TOKENS)

    # Failures are reported, in input order, with the right reason and attempt count.
    assert [(f.request.messages[-1][1], f.reason, f.attempts) for f in failed] == [  # type: ignore[index]
        ("p-400", "4xx", 1), ("p-exhaust", "5xx", 7),
    ]
    assert "HTTP 400" in failed[0].detail and "not retried" in failed[0].detail
    assert "HTTP 500" in failed[1].detail and "retries exhausted" in failed[1].detail

    # The server saw exactly the planned attempts: retries happen, nothing is sent twice beyond the plan.
    assert Counter(a.prompt for a in attempts) == ATTEMPTS
    for a in attempts:  # request fields forwarded as given
        assert a.body["model"] == "fake-mini" and a.body["max_tokens"] == 32 and a.body["temperature"] == 0.7
        assert a.body["seed"] == 11 and a.body["stop"] == ["\n\n"]
        assert a.body["messages"][0] == {"role": "system", "content": "You write queries."}
        assert a.authorization == f"Bearer {SECRET}"

    m = backend.ledger.to_metrics()
    retries = {"429": 2, "5xx": 2 + 6 + 1, "timeout": 1, "connection": 2, "malformed": 2}
    assert m["retries"] == retries
    assert m["retries_total"] == sum(retries.values()) == len(attempts) - len(PROMPTS)
    assert (m["requests_sent"], m["http_attempts"], m["succeeded"], m["failed"]) == (20, len(attempts), 18, 2)
    assert m["failures"] == {"4xx": 1, "429": 0, "5xx": 1, "timeout": 0, "connection": 0, "malformed": 0, "other": 0}
    nousage_req = reqs[PROMPTS.index("p-nousage")]
    est_pt, est_ct = estimate_prompt_tokens(nousage_req.chat()), estimate_tokens(expected_text("p-nousage"))
    served = [p for p in ok_prompts if p != "p-nousage"]
    pt = sum(prompt_tokens_for(p) for p in served) + est_pt
    ct = COMPLETION_TOKENS * len(served) + est_ct
    assert (m["prompt_tokens"], m["completion_tokens"]) == (pt, ct)
    assert (m["tokens_estimated"], m["estimated_responses"]) == (True, 1)
    assert (m["estimated_prompt_tokens"], m["estimated_completion_tokens"]) == (est_pt, est_ct)
    assert m["cost_usd"] == pytest.approx((pt * PRICE_IN + ct * PRICE_OUT) / 1e6, abs=1e-8)
    json.dumps(m)  # JSON-able for a DVC metrics file

    # Backoff waits: one per retry; Retry-After honoured (2 s + up to base of jitter); others capped.
    assert len(sleep.delays) == m["retries_total"]
    assert sum(1 for d in sleep.delays if 2.0 <= d <= 2.0 + BASE_S) == 1
    assert all(0 <= d <= MAX_S for d in sleep.delays if d < 2.0)


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after_ms():
    sleep = SleepRecorder()
    with FakeOpenAIServer({"a": ["503"] * 4, "b": ["429_ms"]}, retry_after_ms="1500") as server:
        backend = make_backend(server, sleep, concurrency=1, backoff_base_s=0.01, backoff_max_s=0.05)
        assert backend.generate(requests_for(["a"]), lambda r, x: None) == []
        d = sleep.delays
        assert len(d) == 4
        for n, delay in enumerate(d):  # equal jitter in [cap/2, cap], cap = min(max, base * 2**n)
            cap = min(0.05, 0.01 * 2**n)
            assert cap / 2 <= delay <= cap
        assert backend.generate(requests_for(["b"]), lambda r, x: None) == []
        assert 1.5 <= sleep.delays[-1] <= 1.5 + 0.01


def test_permanent_400_fails_without_retry_and_the_rest_continue():
    sleep = SleepRecorder()
    got: list[str] = []
    with FakeOpenAIServer({"bad": ["400"]}) as server:
        backend = make_backend(server, sleep)
        failed = backend.generate(requests_for(["bad", "good"]), lambda r, x: got.append(x.text))
        assert len(server.attempts_for("bad")) == 1
    assert got == [expected_text("good")]
    assert len(failed) == 1 and failed[0].reason == "4xx" and failed[0].attempts == 1
    assert failed[0].key == requests_for(["bad"])[0].key
    assert sleep.delays == []
    m = backend.ledger.to_metrics()
    assert (m["failed"], m["failures"]["4xx"], m["retries_total"], m["succeeded"]) == (1, 1, 0, 1)


def test_cache_gets_each_answer_once_and_a_rerun_resends_only_failures(tmp_path: Path):
    reqs = requests_for(PROMPTS)
    path = tmp_path / "responses.jsonl"
    sleep = SleepRecorder()
    with FakeOpenAIServer(PLAN, retry_after="0", slow_s=SLOW_S) as server:
        with ResponseCache(path) as cache:
            failed = generate_with_cache(make_backend(server, sleep, timeout_s=PLAN_TIMEOUT_S), reqs, cache)
        assert sorted(f.request.messages[-1][1] for f in failed) == sorted(FAILING)  # type: ignore[index]
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == len({r["key"] for r in rows}) == len(PROMPTS) - len(FAILING)
        by_key = {r.key: r.messages[-1][1] for r in reqs}  # type: ignore[index]
        assert all(row["text"] == expected_text(by_key[row["key"]]) for row in rows)

        n_before = len(server.attempts)
        ledger2 = Ledger(PRICE_IN, PRICE_OUT)
        with ResponseCache(path) as cache:
            backend2 = make_backend(server, sleep, ledger=ledger2)
            failed2 = generate_with_cache(backend2, reqs, cache, ledger=ledger2)
            assert len(cache) == len(PROMPTS) - 1  # p-exhaust's plan is spent, so it succeeds now; p-400 never does
        resent = Counter(a.prompt for a in server.attempts[n_before:])
    assert resent == {"p-400": 1, "p-exhaust": 1}
    assert [f.request.messages[-1][1] for f in failed2] == ["p-400"]  # type: ignore[index]
    m2 = ledger2.to_metrics()
    assert (m2["cached_hits"], m2["requests_sent"], m2["requests_total"]) == (18, 2, 20)


def test_api_key_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]):
    sleep = SleepRecorder()
    plan = {"leaky-400": ["400"], "flaky": ["drop", "malformed"], "dead": ["503"] * 3}
    caplog.set_level(logging.DEBUG)  # every logger, httpx2 and httpcore2 included
    with FakeOpenAIServer(plan) as server:
        backend = make_backend(server, sleep, max_retries=2, progress=True)
        failed = backend.generate(requests_for(list(plan)), lambda r, x: None)
        assert server.attempts[0].authorization == f"Bearer {SECRET}"  # the key is really sent...
        with pytest.raises(RuntimeError) as excinfo:
            backend.generate(requests_for(["x"]), lambda r, x: (_ for _ in ()).throw(RuntimeError(f"boom {r.key}")))
    assert {f.reason for f in failed} == {"4xx", "5xx"}
    assert "you sent Authorization: Bearer ***" in next(f.detail for f in failed if f.reason == "4xx")
    captured = capsys.readouterr()
    texts = [
        caplog.text, captured.out, captured.err, repr(backend), str(backend), json.dumps(backend.identity()),
        repr(failed), str([f.detail for f in failed]), json.dumps(backend.ledger.to_metrics()), str(excinfo.value),
        repr(backend.ledger),
    ]
    assert all(SECRET not in t for t in texts)  # ...but never shown anywhere


def test_credentials_in_base_url_are_refused_or_stripped():
    with pytest.raises(ValueError, match="must not contain credentials") as excinfo:
        OpenAIBackend(f"https://user:{SECRET}@api.example.org/v1", "m", api_key_env=KEY_ENV)
    assert SECRET not in str(excinfo.value)
    backend = OpenAIBackend(f"https://api.example.org:8443/v1/?key={SECRET}", "m", api_key_env=KEY_ENV)
    assert backend.identity() == {"backend": "openai", "model": "m", "base_url": "https://api.example.org:8443/v1"}
    assert SECRET not in repr(backend)


def test_missing_key_and_bad_params_fail_clearly(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EndpointError, match=f"environment variable {KEY_ENV} is unset or empty"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, SECRET)
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV, concurrency=0)
    with pytest.raises(ValueError, match="base_url") as excinfo:
        OpenAIBackend(f"ftp://u:{SECRET}@host/v1", "m", api_key_env=KEY_ENV)
    assert SECRET not in str(excinfo.value)
    backend = OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV, progress=False)
    with pytest.raises(ValueError, match="neither prompt nor messages"):
        backend.generate([GenRequest()], lambda r, x: None)


def test_concurrency_is_bounded():
    prompts = [f"c{i}" for i in range(12)]
    with FakeOpenAIServer({p: ["delay"] for p in prompts}, delay_s=0.05) as server:
        backend = make_backend(server, SleepRecorder(), concurrency=3)
        assert backend.generate(requests_for(prompts), lambda r, x: None) == []
        assert 1 <= server.max_inflight <= 3


def test_connection_refused_is_retried_then_reported():
    with FakeOpenAIServer() as server:
        url = server.url
    sleep = SleepRecorder()  # the server is gone: its port now refuses connections
    backend = OpenAIBackend(url, "m", api_key_env=KEY_ENV, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02,
                            progress=False, sleep=sleep)
    failed = backend.generate(requests_for(["a"]), lambda r, x: None)
    assert [(f.reason, f.attempts) for f in failed] == [("connection", 3)]
    assert backend.ledger.to_metrics()["retries"]["connection"] == 2 and len(sleep.delays) == 2


def test_on_response_error_stops_the_run_and_propagates():
    prompts = [f"q{i}" for i in range(30)]
    calls: list[str] = []

    def explode(req: GenRequest, resp: GenResponse) -> None:
        calls.append(resp.key)
        raise OSError("disk full")

    with FakeOpenAIServer({p: ["delay"] for p in prompts}, delay_s=0.02) as server:
        backend = make_backend(server, SleepRecorder(), concurrency=2)
        with pytest.raises(OSError, match="disk full"):
            backend.generate(requests_for(prompts), explode)
        assert len(calls) == 1
        assert len(server.attempts) < len(prompts)  # queued requests were cancelled, not sent


# -- circuit breaker ------------------------------------------------------------------------------------------------


def assert_names_endpoint_not_key(exc: BaseException, url: str) -> None:
    """The error names the endpoint and the key's variable, and never the key."""
    msg = str(exc)
    assert redact_url(url) in msg and KEY_ENV in msg
    assert SECRET not in msg and SECRET[:12] not in msg
    assert isinstance(exc, RetrofitError)


def test_preflight_401_stops_after_one_request():
    with FakeOpenAIServer(api_key="fake-key-the-right-one") as server:
        backend = make_backend(server, SleepRecorder())
        with pytest.raises(EndpointError, match="HTTP 401.*key was refused") as info:
            backend.preflight()
        assert server.requests_total == 1 and server.probes[0].path == "/v1/models"
    assert_names_endpoint_not_key(info.value, server.url)  # the server echoed the key: redacted


def test_preflight_refused_port_fails_at_once_without_retries():
    url = refused_url()
    sleep = SleepRecorder()
    # The run's own settings (6 retries, 60 s timeout) would spend about a minute per request on this port.
    backend = OpenAIBackend(url, "m", api_key_env=KEY_ENV, max_retries=6, timeout_s=60, progress=False, sleep=sleep)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="cannot connect") as info:
        backend.preflight()
    assert time.monotonic() - t0 < 10  # a safety bound only: nothing is retried
    assert sleep.delays == [] and backend.ledger.requests_sent == 0
    assert_names_endpoint_not_key(info.value, url)


def test_preflight_without_models_route_sends_one_tiny_completion_and_catches_a_wrong_model():
    with FakeOpenAIServer(models=None) as server:
        make_backend(server, SleepRecorder()).preflight()  # no /models route: a 1-token completion answers
        assert [a.path for a in server.probes] == ["/v1/models"]
        (probe,) = server.attempts
        assert probe.body["max_tokens"] == 1 and probe.body["model"] == "fake-mini"
    with FakeOpenAIServer(models=["other-model"], plan={"ping": ["404"]}) as server:
        with pytest.raises(EndpointError, match="HTTP 404.*'fake-mini'") as info:
            make_backend(server, SleepRecorder()).preflight()  # listed, but not this model: asked, and it is not there
        assert server.requests_total == 2
    assert_names_endpoint_not_key(info.value, server.url)
    with FakeOpenAIServer(models=["fake-mini"]) as server:
        make_backend(server, SleepRecorder()).preflight()
        assert server.requests_total == 1  # listed: nothing else is sent


def test_401_during_a_round_stops_it_at_once():
    prompts = [f"k{i}" for i in range(40)]
    with FakeOpenAIServer(api_key="fake-key-rotated-since") as server:
        backend = make_backend(server, SleepRecorder(), concurrency=4)
        with pytest.raises(CircuitOpen, match="HTTP 401") as info:
            backend.generate(requests_for(prompts), lambda r, x: None)
        assert len(server.attempts) <= 4  # the one that tripped it and those already in flight
    assert_names_endpoint_not_key(info.value, server.url)


def test_breaker_trips_on_failure_rate_and_keeps_every_finished_answer(tmp_path: Path):
    prompts = [f"b{i}" for i in range(60)]
    reqs = requests_for(prompts)
    path = tmp_path / "responses.jsonl"
    with FakeOpenAIServer(fail_after=12, default_fault="delay", delay_s=0.01) as server:
        backend = make_backend(server, SleepRecorder(), concurrency=3, max_retries=1, breaker_window=8)
        with ResponseCache(path) as cache, pytest.raises(CircuitOpen, match="breaker_failure_rate=0.5") as info:
            generate_with_cache(backend, reqs, cache)
        first = server.attempts
        answered = {a.prompt for a in first if a.fault in ("ok", "delay")}
        assert len(answered) == 12 and len(first) < len(prompts)  # it stopped early...
        with ResponseCache(path) as cache:  # ...and every answer that came back, in flight ones too, is cached once
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            assert len(rows) == len(cache) == 12
            by_key = {r.key: r.messages[-1][1] for r in reqs}  # type: ignore[index]
            assert {by_key[r["key"]] for r in rows} == answered

            server.heal()
            failed = generate_with_cache(make_backend(server, SleepRecorder(), concurrency=3), reqs, cache)
            assert failed == [] and len(cache) == len(prompts)
        resent = {a.prompt for a in server.attempts[len(first):]}
    assert not resent & answered and resent | answered == set(prompts)
    assert_names_endpoint_not_key(info.value, server.url)
    assert "12 were answered" in str(info.value)


def test_answers_in_flight_when_the_breaker_trips_are_kept():
    plan = {"s0": ["delay"], "s1": ["delay"], "s2": ["delay"], "x": ["401"]}
    got: list[str] = []
    with FakeOpenAIServer(plan, delay_s=0.5) as server:
        backend = make_backend(server, SleepRecorder(), concurrency=4)
        prompts = ["s0", "s1", "s2", "x", *(f"later{i}" for i in range(8))]
        with pytest.raises(CircuitOpen, match="HTTP 401") as info:
            backend.generate(requests_for(prompts), lambda r, x: got.append(r.messages[-1][1]))  # type: ignore[index]
        served = {a.prompt for a in server.attempts if a.fault != "401"}
    # x tripped it while s0-s2 were in flight: their answers (and that of a request a freed worker had already
    # picked up) were still delivered; the queued rest was never sent.
    assert {"s0", "s1", "s2"} <= set(got) == served and len(got) == len(served)
    assert len(server.attempts) <= 4
    assert f"{len(got)} were answered" in str(info.value) and "1 failed" in str(info.value)


def test_breaker_params_are_checked():
    with pytest.raises(ValueError, match="breaker_window"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV, breaker_window=0)
    with pytest.raises(ValueError, match="breaker_failure_rate"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env=KEY_ENV, breaker_failure_rate=1.5)
