"""The generate stage end to end: planning, validation, top-up, determinism, and kill -9 / resume."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import params_group

from retrofit.config import GenerateParams
from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.ledger import FailedRequest, Ledger
from retrofit.generate.openai_backend import CircuitOpen, EndpointError, OpenAIBackend
from retrofit.generate.pipeline import run_generation, wilson_upper
from retrofit.generate.planner import Planner
from retrofit.generate.sample_report import write_sample
from retrofit.data.passages import load_passages
from retrofit.generate.pools import load_exemplars
from retrofit.generate.validate import LanguageIdentifier, validate
from retrofit.io import read_jsonl
from tests.generate.fake_openai_server import FakeOpenAIServer, refused_url
from tests.mirror import mirror_or_skip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/prepared`` built by the real preparers from the data mirror (skips without a mirror)."""
    from retrofit.data import english, ntrex, sources, xquad

    mirror = mirror_or_skip()
    root = tmp_path_factory.mktemp("gen")
    raw = root / "raw"
    sources.fetch(sources.load_registry(["xquad", "ntrex128", "stsb_multi_mt"]), raw, mirror=mirror)
    out = root / "prepared"
    out.mkdir()
    xquad.prepare_xquad(raw / "xquad", out / "xquad", ["de", "en", "zh"], 24, 42)
    ntrex.prepare_ntrex(raw / "ntrex128", out / "ntrex", ["de", "en", "zh"], 600)
    english.prepare_english(raw, out / "english", ["stsb_multi_mt"])
    english.prepare_exemplars(raw, out / "exemplars" / "stsb_paraphrase.jsonl")  # the paraphrase exemplars
    return out


def reversed_query(passage: str) -> str:
    """A deterministic, in-language 'query' that is not a verbatim span of the passage."""
    words = passage.split()
    if len(words) > 3:
        return " ".join(reversed(words[:9])) + "?"
    return passage[:14][::-1] + "？"


class FakeChatBackend:
    """In-process chat backend: answers ``{"query": reversed words}``; ``empty_every`` answers some with ""."""

    name = "openai"

    def __init__(self, empty_every: int = 0) -> None:
        self.empty_every = empty_every
        self.sent: list[str] = []

    def identity(self) -> dict[str, str]:
        return {"backend": "openai", "model": "fake", "base_url": "http://fake"}

    def generate(self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]):
        for req in requests:
            self.sent.append(req.key)
            passage = req.chat()[-1]["content"].split("Text:\n", 1)[1]
            empty = self.empty_every and int(req.key[:8], 16) % self.empty_every == 0
            text = "" if empty else json.dumps({"query": reversed_query(passage)}, ensure_ascii=False)
            on_response(req, GenResponse(req.key, text, "stop", 100, 10, "fake"))
        return []


def params(**over) -> GenerateParams:
    """params.yaml's generate group for 4 short queries in de and zh over openai, with ``over`` merged in."""
    over = {"backend": "openai", "languages": ["de", "zh"], "per_language": 4, "roundtrip_top_k": 0,
            "task_types": {"short_query": 1.0}, "oversample": 1.6, **over}
    group = params_group("generate", **over).model_dump()
    group["task_types"] = over["task_types"]  # a value mapping replaces params.yaml's whole; params_group merges it
    return GenerateParams.model_validate(group)


def test_planner_is_deterministic_and_never_uses_test_articles(prepared: Path):
    p = params(backend="local", task_types={"short_query": 1, "title": 1, "paraphrase": 1})
    passages = load_passages(prepared, p.passage_sources, p.languages)
    ex = load_exemplars(prepared, p.languages, p.local.snippet_chars)
    a, b = Planner(p, 7, passages, ex), Planner(p, 7, passages, ex)
    for i in range(20):
        pa, pb = a.plan("de", i), b.plan("de", i)
        assert pa.request.key == pb.request.key
        assert pa.passage.source in {"xquad", "ntrex"}
        assert len(pa.exemplars) == 3 and pa.request.prompt.count("\n\n") == 3
    test_ids = {f"xquad:{r['id']}" for r in read_jsonl(prepared / "xquad/paragraphs.jsonl") if r["split"] == "test"}
    assert not {x.source_id for x in a.pool["de"]} & test_ids
    # de has XQuAD questions, NTREX headlines and STS-B pairs: every local task type has exemplars
    assert a.unsupported["de"] == []


def test_run_writes_schema_and_metrics(prepared: Path, tmp_path: Path):
    backend = FakeChatBackend()
    m = run_generation(params(), 3, prepared, tmp_path / "out", tmp_path / "cache", encode=None, backend=backend)
    rows = read_jsonl(tmp_path / "out/examples.jsonl")
    assert [r["lang"] for r in rows] == ["de"] * 4 + ["zh"] * 4
    for r in rows:
        assert set(r) >= {"id", "lang", "task_type", "query", "positive", "negative", "source_id", "generator",
                          "prompt_version", "seed"}
        assert r["query"] and r["query"] not in r["positive"]
        assert r["generator"]["model"] == "fake"
        assert r["evidence"] and r["evidence"] in r["positive"]  # the text the query was written from
    assert m["shortfall"] == 0 and m["examples"] == 8
    pool = read_jsonl(tmp_path / "out/pool.jsonl")
    assert {p["lang"] for p in pool} == {"de", "zh"} and all(set(p) == {"lang", "source", "source_id", "text"}
                                                              for p in pool)
    assert {(r["lang"], r["source_id"]) for r in rows} <= {(p["lang"], p["source_id"]) for p in pool}
    on_disk = json.loads((tmp_path / "out/metrics.json").read_text())
    assert on_disk["per_language"]["de"]["accepted"] == 4
    write_sample(tmp_path / "out/examples.jsonl", tmp_path / "sample.md", per_language=2)
    assert (tmp_path / "sample.md").read_text().count("| short_query |") == 4


def test_rejections_are_counted_and_topped_up(prepared: Path, tmp_path: Path):
    backend = FakeChatBackend(empty_every=2)
    ledger = Ledger()
    m = run_generation(
        params(per_language=6, oversample=1.0), 3, prepared, tmp_path / "o", tmp_path / "c",
        encode=None, backend=backend, ledger=ledger,
    )
    assert m["shortfall"] == 0 and m["rounds"] >= 2
    empties = sum(1 for k in backend.sent if int(k[:8], 16) % 2 == 0)
    assert m["rejected"]["empty"] == empties > 0
    assert m["requests"] == len(backend.sent)
    out = tmp_path / "o"
    write_sample(out / "examples.jsonl", tmp_path / "sample.md", per_language=2, rejected=out / "rejected.jsonl",
                 metrics=out / "metrics.json")
    sample = (tmp_path / "sample.md").read_text()
    per = m["per_language"]["de"]
    assert f"| de | {per['requested']} | {per['accepted']} | {per['validation_pass_rate']} |" in sample
    assert sample.count("Rejected:") == 2 and "| empty |" in sample  # each language shows its rejections


def test_same_seed_same_output_and_cache_prevents_resend(prepared: Path, tmp_path: Path):
    outs = []
    for run in ("a", "b"):
        run_generation(params(), 5, prepared, tmp_path / run, tmp_path / f"cache-{run}", encode=None,
                       backend=FakeChatBackend())
        outs.append((tmp_path / run / "examples.jsonl").read_bytes())
    assert outs[0] == outs[1]
    again = FakeChatBackend()
    run_generation(params(), 5, prepared, tmp_path / "c", tmp_path / "cache-a", encode=None, backend=again)
    assert again.sent == []  # every request was answered from the response cache
    assert (tmp_path / "c/examples.jsonl").read_bytes() == outs[0]


@pytest.mark.parametrize(
    ("raw", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("Wie hoch ist der Berg im Süden", "length", "truncated"),
        ("Wo?", "stop", "too_short"),
        ("Wie " * 80, "stop", "too_long"),
        ("Der Berg ist hoch", "stop", "copies_passage"),
        ("Wie heißt die Hauptstadt von Frankreich?", "stop", "copies_example"),
        ("What is the height of the mountain in the south?", "stop", "wrong_language"),
        ("Question: Wie hoch ist der Berg im Süden?", "stop", None),
    ],
)
def test_validation_reasons(raw: str, finish: str, reason: str | None):
    li = LanguageIdentifier(["de", "en", "zh"])
    v = validate(
        raw, finish, chat=False, lang="de", passage="Der Berg ist hoch. Er liegt im Süden.",
        exemplars=["Wie heißt die Hauptstadt von Frankreich?"], min_chars=8, max_chars=200, langid=li,
    )
    assert v.reason == reason
    if reason is None:
        assert v.query == "Wie hoch ist der Berg im Süden?"


def test_chat_json_is_parsed():
    v = validate('```json\n{"query": "¿Dónde está el monte?"}\n```', "stop", chat=True, lang="es", passage="x",
                 exemplars=[], min_chars=5, max_chars=100, langid=None)
    assert v.ok and v.query == "¿Dónde está el monte?"
    assert validate("{not json", "stop", chat=True, lang="es", passage="x", exemplars=[], min_chars=1,
                    max_chars=100, langid=None).reason == "empty"


def _responder(prompt: str) -> str:
    passage = prompt.split("Text:\n", 1)[1]
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return json.dumps({"query": reversed_query(passage), "tag": tag}, ensure_ascii=False)


def _stage_project(root: Path, prepared: Path, tiny_model_dir: Path, base_url: str, **generate: Any) -> Path:
    (root / "data").mkdir(parents=True)
    os.symlink(prepared, root / "data/prepared")
    (root / "models").mkdir()
    os.symlink(tiny_model_dir, root / "models/base")
    cfg = yaml.safe_load((REPO / "params.yaml").read_text())  # every group: params have no code defaults
    cfg["base"].update({"seed": 11, "threads": 1, "cache_dir": str(root / "cache"), "bf16_inference": False})
    cfg["generate"].update({
        "backend": "openai", "languages": ["de", "zh"], "per_language": 20, "roundtrip_top_k": 0,
        "task_types": {"short_query": 1.0}, "oversample": 1.6, **generate,
    })
    cfg["generate"]["openai"].update({"base_url": base_url, "model": "fake", "api_key_env": "FAKE_KEY",
                                      "concurrency": 2, "timeout_s": 10, "max_retries": 2})
    (root / "params.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _cached_tags(cache_file: Path) -> set[str]:
    tags = set()
    if cache_file.exists():
        for line in cache_file.read_text(encoding="utf-8").splitlines():
            try:
                tags.add(json.loads(json.loads(line)["text"])["tag"])
            except (json.JSONDecodeError, KeyError):
                pass  # a torn last line: the stage itself repairs it
    return tags


def test_stage_killed_with_sigkill_resumes_without_resending(prepared: Path, tiny_model_dir: Path, tmp_path: Path):
    env = {**os.environ, "FAKE_KEY": "fake-test-key-not-real", "HF_HUB_OFFLINE": "1"}
    stage = [sys.executable, str(REPO / "stages/generate.py")]
    with FakeOpenAIServer(responder=_responder, default_fault="delay", delay_s=0.05, lifetime_s=120) as server:
        proj = _stage_project(tmp_path / "p", prepared, tiny_model_dir, server.url)
        proc = subprocess.Popen(stage, cwd=proj, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(server.attempts) < 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "the stage finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = len(server.attempts)
        (cache_file,) = (proj / "data/responses").glob("responses-openai-*.jsonl")  # the stage keeps them in the project
        done_before = _cached_tags(cache_file)
        assert done_before, "nothing was cached before the kill"
        assert not (proj / "data/generated").exists(), "a killed stage left a partial output"

        res = subprocess.run(stage, cwd=proj, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        resent = {hashlib.sha256(a.prompt.encode()).hexdigest()[:12] for a in server.attempts[first:]}
        assert not resent & done_before, "a finished request was sent again"
        rows = read_jsonl(proj / "data/generated/examples.jsonl")
        assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
        assert "fake-test-key" not in res.stderr and "fake-test-key" not in cache_file.read_text()

        # An uninterrupted run from scratch writes the same examples.
        fresh = _stage_project(tmp_path / "q", prepared, tiny_model_dir, server.url)
        res = subprocess.run(stage, cwd=fresh, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (fresh / "data/generated/examples.jsonl").read_bytes() == (
            proj / "data/generated/examples.jsonl"
        ).read_bytes()


def test_plan_prefix_property(prepared: Path):
    """Example i's plan does not depend on how many examples are requested (a smaller run is a prefix)."""
    p_small, p_big = params(per_language=3), params(per_language=30)
    passages = load_passages(prepared, p_small.passage_sources, p_small.languages)
    small, big = Planner(p_small, 1, passages, {}), Planner(p_big, 1, passages, {})
    rng = random.Random(0)
    for i in rng.sample(range(50), 10):
        assert small.plan("zh", i).request.key == big.plan("zh", i).request.key


# -- failures, the circuit breaker and the stage minimum --------------------------------------------------------------

KEY_ENV, SECRET = "RETROFIT_TEST_GEN_KEY", "fake-test-key-pipeline"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # 127.0.0.1 must be reached directly


def openai_params(url: str, **openai: Any) -> GenerateParams:
    """20 examples in each of de and zh from the endpoint at ``url``, without the round-trip filter."""
    op = {"base_url": url, "model": "fake", "api_key_env": KEY_ENV, "concurrency": 3, "timeout_s": 10, **openai}
    return params(per_language=20, openai=op)


def fast_backend(p: GenerateParams) -> OpenAIBackend:
    """The backend the stage builds from ``p``, with millisecond backoff waits."""
    op = p.openai
    return OpenAIBackend(
        op.base_url, op.model, op.api_key_env, op.concurrency, op.timeout_s, op.max_retries,
        backoff_base_s=0.001, backoff_max_s=0.002, breaker_window=op.breaker_window,
        breaker_failure_rate=op.breaker_failure_rate, progress=False,
    )


def cached_keys(cache_dir: Path) -> list[str]:
    (path,) = (cache_dir / "generate").glob("responses-openai-*.jsonl")
    return [json.loads(line)["key"] for line in path.read_text(encoding="utf-8").splitlines()]


def assert_names_endpoint_not_key(exc: BaseException, url: str, env: str = KEY_ENV, key: str = SECRET) -> None:
    assert url in str(exc) and env in str(exc) and key not in str(exc)


class FailingFirstRound(FakeChatBackend):
    """Every request of the first round fails with ``reason`` (after its retries); later rounds are answered."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
        self.calls: list[list[str]] = []

    def generate(self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]):
        self.calls.append([r.key for r in requests])
        if len(self.calls) > 1:
            return super().generate(requests, on_response)
        self.sent += self.calls[0]
        return [FailedRequest(r, self.reason, f"{self.reason} (retries exhausted)", 7) for r in requests]


def test_failed_requests_are_not_answers(prepared: Path, tmp_path: Path):
    p = params(per_language=4, oversample=2.0)  # round 1: 8 requests per language
    clean = run_generation(p, 3, prepared, tmp_path / "clean", tmp_path / "c0", encode=None, backend=FakeChatBackend())

    flaky = FailingFirstRound("5xx")
    m = run_generation(p, 3, prepared, tmp_path / "o1", tmp_path / "c1", encode=None, backend=flaky)
    # A failed request is sent again, alone: a round of failures is no zero pass rate that asks for 20x more.
    assert flaky.calls[1] == flaky.calls[0] and len(flaky.calls[0]) == 16
    assert m["requests"] == clean["requests"] == 16 and m["shortfall"] == 0
    assert all(v["failed"] == 0 for v in m["per_language"].values())
    assert m["per_language"] == clean["per_language"]
    assert (tmp_path / "o1/examples.jsonl").read_bytes() == (tmp_path / "clean/examples.jsonl").read_bytes()

    refused = FailingFirstRound("4xx")  # the same request would be refused again: new plans instead
    m = run_generation(p, 3, prepared, tmp_path / "o2", tmp_path / "c2", encode=None, backend=refused)
    assert not set(refused.calls[1]) & set(refused.calls[0]) and len(refused.calls[1]) == 16
    assert m["shortfall"] == 0 and m["per_language"]["de"]["failed"] == 8 and m["requests"] == 32
    assert m["per_language"]["de"]["validation_pass_rate"] == clean["per_language"]["de"]["validation_pass_rate"]


def test_30_percent_server_errors_lose_and_duplicate_nothing(prepared: Path, tmp_path: Path, api_key: None):
    with FakeOpenAIServer(responder=_responder, fail_rate=0.3, lifetime_s=120) as server:
        p = openai_params(server.url)
        m = run_generation(p, 3, prepared, tmp_path / "out", tmp_path / "cache", encode=None, backend=fast_backend(p))
        attempts = server.attempts
        server.heal()
        run_generation(p, 3, prepared, tmp_path / "clean", tmp_path / "c2", encode=None, backend=fast_backend(p))
    assert sum(a.fault == "500" for a in attempts) > 10
    answers = Counter(a.prompt for a in attempts if a.fault == "ok")
    assert set(answers.values()) == {1} and len(answers) == m["requests"]  # each planned request answered once
    keys = cached_keys(tmp_path / "cache")
    assert len(keys) == len(set(keys)) == len(answers)  # and cached once
    assert m["shortfall"] == 0 and all(v["failed"] == 0 for v in m["per_language"].values())
    rows = read_jsonl(tmp_path / "out/examples.jsonl")
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    assert (tmp_path / "out/examples.jsonl").read_bytes() == (tmp_path / "clean/examples.jsonl").read_bytes()


def test_breaker_stops_a_failing_round_and_a_rerun_resends_nothing_finished(
    prepared: Path, tmp_path: Path, api_key: None
):
    with FakeOpenAIServer(responder=_responder, fail_after=15, lifetime_s=120) as server:
        p = openai_params(server.url, max_retries=1, breaker_window=8, breaker_failure_rate=0.5)
        with pytest.raises(CircuitOpen, match="failed") as info:
            run_generation(p, 3, prepared, tmp_path / "out", tmp_path / "cache", encode=None, backend=fast_backend(p))
        first = server.attempts
        assert not (tmp_path / "out").exists()
        done = {a.prompt for a in first if a.fault == "ok"}
        assert len(done) == 15 and len(first) < 40  # round 1 plans more than 2 x 20 requests; it stopped long before
        assert len(cached_keys(tmp_path / "cache")) == 15

        server.heal()
        m = run_generation(p, 3, prepared, tmp_path / "out", tmp_path / "cache", encode=None, backend=fast_backend(p))
        again = {a.prompt for a in server.attempts[len(first):]}
        assert not again & done  # nothing answered before was sent again
        answers = Counter(a.prompt for a in server.attempts if a.fault == "ok")
        assert set(answers.values()) == {1} and m["shortfall"] == 0
        run_generation(p, 3, prepared, tmp_path / "clean", tmp_path / "c2", encode=None, backend=fast_backend(p))
    assert (tmp_path / "out/examples.jsonl").read_bytes() == (tmp_path / "clean/examples.jsonl").read_bytes()
    assert_names_endpoint_not_key(info.value, server.url)


@pytest.mark.parametrize("endpoint", ["bad key", "refused port"])
def test_unusable_endpoint_stops_before_any_round(prepared: Path, tmp_path: Path, api_key: None, endpoint: str):
    server = FakeOpenAIServer(api_key="fake-key-someone-else").start() if endpoint == "bad key" else None
    url = server.url if server else refused_url()
    p = params(per_language=20, openai={"base_url": url, "model": "fake", "api_key_env": KEY_ENV})  # 6 retries, 60 s
    t0 = time.monotonic()
    try:
        with pytest.raises(EndpointError) as info:
            run_generation(p, 3, prepared, tmp_path / "out", tmp_path / "cache", encode=None)  # backend from params
    finally:
        if server:
            server.stop()
    assert time.monotonic() - t0 < 10  # a safety bound: a retried refused port would take minutes
    assert not (tmp_path / "out").exists()
    if server:
        assert server.requests_total == 1  # the preflight check only
    assert_names_endpoint_not_key(info.value, url)
    assert ("HTTP 401" if server else "cannot connect") in str(info.value)


@pytest.mark.parametrize("case", ["no valid answer", "bad key"])
def test_stage_fails_without_output_below_min_examples_or_on_a_bad_key(
    prepared: Path, tiny_model_dir: Path, tmp_path: Path, case: str
):
    key = "fake-test-key-stage"
    env = {**os.environ, "FAKE_KEY": key, "HF_HUB_OFFLINE": "1"}
    server_kw: dict[str, Any] = {"responder": lambda prompt: ""} if case == "no valid answer" else {"api_key": "x"}
    with FakeOpenAIServer(lifetime_s=120, **server_kw) as server:
        proj = _stage_project(tmp_path / "p", prepared, tiny_model_dir, server.url, per_language=2, max_rounds=1)
        res = subprocess.run([sys.executable, str(REPO / "stages/generate.py")], cwd=proj, env=env,
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-3000:]
    assert not (proj / "data/generated").exists() and not (proj / "reports/generate").exists()
    assert "Traceback" not in res.stderr and key not in res.stderr
    (error,) = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert server.url in error and "FAKE_KEY" in error
    assert ("0 examples, fewer than generate.min_examples=1" if case == "no valid answer" else "HTTP 401") in error


def test_wilson_upper_bound_by_hand():
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(2, 48) == pytest.approx(0.1184, abs=5e-4)  # (p + z²/2n + z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    assert wilson_upper(48, 48) == 1.0
    assert wilson_upper(10, 100) > 0.10 > wilson_upper(1, 100)


class EmptyFor(FakeChatBackend):
    """Answers every request of ``lang`` with nothing: a language the generator cannot write."""

    def __init__(self, lang: str) -> None:
        super().__init__()
        self.lang = lang
        self.by_lang: dict[str, int] = {}

    def generate(self, requests, on_response):
        for req in requests:
            lang = req.meta["lang"]
            self.by_lang[lang] = self.by_lang.get(lang, 0) + 1
            if lang == self.lang:
                self.sent.append(req.key)
                on_response(req, GenResponse(req.key, "", "stop", 100, 1, "fake"))
            else:
                super().generate([req], on_response)
        return []


def test_a_language_that_cannot_reach_its_quota_stops_early(prepared: Path, tmp_path: Path):
    p = params(per_language=16, max_requests_per_language=160, oversample=2.0)
    backend = EmptyFor("zh")
    m = run_generation(p, 3, prepared, tmp_path / "o", tmp_path / "c", encode=None, backend=backend)
    zh, de = m["per_language"]["zh"], m["per_language"]["de"]
    assert de["accepted"] == 16 and de["stopped_early"] is None
    assert zh["accepted"] == 0 and m["stopped_early"] == ["zh"]
    assert zh["requested"] == backend.by_lang["zh"] == 32 < 160  # one round of 16 x 2, then no fresh plans
    # 0 of 32: the rate may still be up to 7.8%, and 7.8% of the 128 requests left gives 10 < 16
    assert zh["stopped_early"]["pass_rate_upper_95"] == pytest.approx(0.078, abs=1e-3)
    on_disk = json.loads((tmp_path / "o/metrics.json").read_text())
    assert on_disk["per_language"]["zh"]["stopped_early"] == zh["stopped_early"]
    assert on_disk["per_language"]["de"]["requests_per_accepted"] == round(de["requested"] / 16, 2)


def test_a_language_that_still_could_reach_its_quota_goes_on(prepared: Path, tmp_path: Path):
    p = params(per_language=8, oversample=4.0)
    m = run_generation(p, 3, prepared, tmp_path / "o", tmp_path / "c", encode=None, backend=FakeChatBackend(8))
    assert m["stopped_early"] == [] and m["shortfall"] == 0
