"""The generate stage: plan, request, validate, round-trip filter and top up synthetic examples.

Output ``examples.jsonl``, one row per accepted example, ``per_language`` rows per language (fewer only if
the top-up rounds could not reach the target, which ``metrics.json`` reports as a shortfall)::

    {"id": "syn-de-000042",                  # stable: language and plan index
     "lang": "de",
     "task_type": "short_query",             # see retrofit.schema.GENERATED_TASK_TYPES
     "query": "...",                         # the generated query (validated)
     "positive": "...",                      # the source passage (or the source sentence, for paraphrase)
     "evidence": "...",                      # the text the generator saw: a sentence of the passage (short_query,
                                             # paraphrase), its opening (title); the whole passage over openai
     "negative": null,                       # optional; generators here do not write negatives
     "source": "xquad",                      # where the passage came from: xquad | ntrex | wikipedia
     "source_id": "xquad:a07p3",             # language-independent passage id (translations share it)
     "generator": {"backend": "local", "model": "...", "sha256": "..."},   # or base_url for openai
     "prompt_version": "v1",
     "seed": 1234567,                        # this example's seed (derived from base.seed, language and index)
     "attributes": {"length": "short", "clarity": "clear", "difficulty": "college"},
     "roundtrip_rank": 0}                    # rank of the positive for the query under the base embedder

Output ``rejected.jsonl``, one row per rejected answer, in the order judged (a plan sent again after a failure
is judged once)::

    {"lang": "de", "reason": "roundtrip",    # a retrofit.generate.validate.REASONS entry, or "roundtrip"
     "query": "...",                         # the parsed query ("" for an empty answer)
     "target": "...",                        # the text the generator saw
     "roundtrip_rank": 14}                   # round-trip rejections only: the rank of the plan's own passage

Output ``pool.jsonl``, the passage pool each language's examples were drawn from (``passages_per_language`` seeded
passages; the mine stage searches it for hard negatives)::

    {"lang": "de", "source": "xquad", "source_id": "xquad:a07p3", "text": "..."}

Reliability: every raw answer goes to an append-only :class:`~retrofit.generate.cache.ResponseCache` before it is
parsed, so a killed run (even ``kill -9``) never re-sends a finished request and loses no finished example; the
output directory is written atomically at the end.

Failures: a request that failed (after the backend's retries) is not an answer. The top-up arithmetic divides
accepted examples by *answered* requests, and a failed plan is sent again first in the next round (except a 4xx,
which the same request would get again). Before the first request is sent, a backend with a ``preflight`` check
(``openai``) verifies the endpoint and key, and its circuit breaker stops a round that fails too often (both raise
:class:`~retrofit.generate.openai_backend.EndpointError`, with finished answers kept in the cache). A run with fewer
than ``min_examples`` examples raises :class:`~retrofit.errors.RetrofitError` and writes nothing.

Requests that cannot pass: a language stops getting fresh plans once even the optimistic (95% upper) bound of its
pass rate could not fill its quota within ``max_requests_per_language`` (``_Run.hopeless``); it keeps what it has,
and ``metrics.json`` records why (``stopped_early``) and each language's ``requests_per_accepted``. Between rounds
an ``auto`` thread count is decided again (:func:`retrofit.runtime.redecide_threads`).

Plan determinism (:mod:`retrofit.generate.planner`): the plan of example ``i`` of language ``L`` does not depend
on how many examples are requested, so the first ``n`` accepted examples of a larger run are those of a smaller one
with the same backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrofit.config import GenerateParams
from retrofit.data.passages import load_passages
from retrofit.errors import RetrofitError
from retrofit.generate.base import Backend, GenResponse
from retrofit.generate.bundled import resolve_gguf
from retrofit.generate.cache import ResponseCache, answer_all
from retrofit.generate.ledger import Ledger
from retrofit.generate.planner import Planned, Planner
from retrofit.generate.pools import load_exemplars
from retrofit.generate.prompts import PROMPT_VERSION
from retrofit.generate.roundtrip import RoundTrip
from retrofit.generate.validate import REASONS, LanguageIdentifier, validate
from retrofit.io import atomic_dir, write_json, write_jsonl
from retrofit.runtime import redecide_threads
from retrofit.schema import RowSchema

log = logging.getLogger(__name__)

#: The contract of ``examples.jsonl`` (module docstring), checked by the stages that read it.
EXAMPLE_ROW = RowSchema("generated example row", "generate", {
    "id": (str,), "lang": (str,), "task_type": (str,), "query": (str,), "positive": (str,), "evidence": (str,),
    "negative": (str, type(None)), "source": (str,), "source_id": (str,), "generator": (dict,),
}, nonempty=("id", "lang", "query", "positive"))
#: The contract of ``pool.jsonl``.
POOL_ROW = RowSchema("generation pool row", "generate", {
    "lang": (str,), "source": (str,), "source_id": (str,), "text": (str,),
}, nonempty=("lang", "source_id", "text"))


def backend_from_params(
    params: GenerateParams, ledger: Ledger, cache_dir: Path, bf16: bool = False, threads: int = 1
) -> Backend:
    """Build the configured backend (backend imports are local so the openai path never loads torch models).

    Args:
        params: The generate params.
        ledger: Request and token accounting.
        cache_dir: ``base.cache_dir``; bundled and converted models are kept under its ``llm/``.
        bf16: Run a transformers generator in bfloat16 (``base.bf16_inference``, resolved).
        threads: CPU threads of a llama.cpp generator (``base.threads``, resolved).
    """
    if params.backend == "local":
        lp = params.local
        if lp.runtime == "llamacpp":
            # optional, heavy runtime (ik_llama.cpp): imported only when chosen
            from retrofit.generate.llamacpp_backend import LlamaCppBackend

            gguf, sha = resolve_gguf(lp.model, cache_dir / "llm")
            return LlamaCppBackend(gguf, lp.model, sha, threads, lp.repetition_penalty, lp.top_p, ledger=ledger)
        # optional, heavy runtime (transformers, torch): imported only when chosen
        from retrofit.generate.local_backend import LocalBackend

        return LocalBackend(
            lp.model, lp.batch_size, lp.repetition_penalty, lp.top_p, cache_dir / "llm", ledger=ledger, bf16=bf16
        )
    # optional backend (httpx2 client): imported only when chosen
    from retrofit.generate.openai_backend import OpenAIBackend

    # The key is read from the environment inside the backend, never stored in params or outputs.
    op = params.openai
    return OpenAIBackend(
        op.base_url, op.model, op.api_key_env, op.concurrency, op.timeout_s, op.max_retries, ledger=ledger,
        breaker_window=op.breaker_window, breaker_failure_rate=op.breaker_failure_rate,
    )


def run_generation(
    params: GenerateParams,
    seed: int,
    prepared: Path,
    out_dir: Path,
    cache_dir: Path,
    *,
    encode: Callable[[list[str], str], np.ndarray] | None,
    backend: Backend | None = None,
    ledger: Ledger | None = None,
    bf16: bool = False,
    threads: int = 1,
    responses: Path | None = None,
) -> dict[str, Any]:
    """Generate ``params.per_language`` validated examples per language and write them to ``out_dir``.

    Args:
        params: The generate params.
        seed: ``base.seed``.
        prepared: ``data/prepared``.
        out_dir: Output directory, written atomically: ``examples.jsonl``, ``metrics.json`` (validation and
            round-trip counts; deterministic), ``rejected.jsonl``, ``pool.jsonl``.
        cache_dir: Root of the on-disk caches (``base.cache_dir``): the bundled generator's weights.
        responses: Folder of the raw-response cache (:mod:`retrofit.generate.cache`); the stage's is
            ``data/responses``, a DVC output that collaborators share. Default: ``<cache_dir>/generate``.
        encode: ``encode(texts, kind)`` with the base embedder for the round-trip filter (``None`` disables it).
        backend: Backend to use (default: built from params).
        ledger: Ledger to account requests in (default: a new one with the configured prices).
        bf16: Run a transformers generator in bfloat16.
        threads: CPU threads of a llama.cpp generator.

    Returns:
        The metrics written to ``metrics.json``, plus ``ledger`` (requests, cache hits, tokens, cost of this run)
        and ``wall_seconds``.

    Raises:
        retrofit.generate.openai_backend.EndpointError: The endpoint is unreachable or refuses the key (preflight),
            or the circuit breaker stopped a round; nothing is written, finished answers stay in the cache.
        RetrofitError: Fewer than ``params.min_examples`` examples; nothing is written.
    """
    t0 = time.time()
    op = params.openai
    ledger = ledger or Ledger(op.price_per_1m_input, op.price_per_1m_output)
    passages = load_passages(prepared, params.passage_sources, params.languages, params.wikipedia,
                             params.passages_per_language)
    exemplars = load_exemplars(prepared, params.languages, params.local.snippet_chars) if params.few_shot else {}
    planner = Planner(params, seed, passages, exemplars)
    backend = backend or backend_from_params(params, ledger, cache_dir, bf16, threads)
    identity = backend.identity()
    langid = LanguageIdentifier(params.languages)
    roundtrip = RoundTrip(encode, params.roundtrip_top_k) if encode and params.roundtrip_top_k > 0 else None
    run = _Run(params, planner, identity, langid, roundtrip)

    cache_path = response_cache_path(identity, responses or cache_dir / "generate", f"responses-{params.backend}")
    rounds = _run_rounds(run, backend, cache_path, ledger)
    rows, per_lang = run.collect()
    metrics = _metrics(run, rows, per_lang, rounds, ledger, t0)
    if len(rows) < params.min_examples:
        raise RetrofitError(_too_few(params, metrics, identity, rounds))
    _write_outputs(out_dir, run, rows, metrics)
    _warn_shortfalls(per_lang, params.per_language, rounds)
    return metrics


@dataclass
class _Run:
    """One run's fixed inputs, and the plans, counts and rows that its top-up rounds share."""

    params: GenerateParams
    planner: Planner
    identity: dict[str, str]
    langid: LanguageIdentifier
    roundtrip: RoundTrip | None
    accepted: dict[str, dict[int, dict[str, Any]]] = field(init=False)  # lang -> plan index -> row
    next_index: dict[str, int] = field(init=False)  # lang -> first plan index not yet sent
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lang, reason) -> count
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)  # every rejection, in the order judged
    requested: Counter[str] = field(default_factory=Counter)  # distinct plans sent
    answered: Counter[str] = field(default_factory=Counter)  # plans that got an answer: the pass rate's denominator
    # A failed plan is not an answer: it is sent again first in the next round (so a transient failure does not
    # change which plans the output keeps), unless the server refused it (4xx), which a resend would repeat.
    unanswered: dict[str, list[Planned]] = field(init=False)
    refused: Counter[str] = field(default_factory=Counter)
    # lang -> why it got no fresh plans any more (its pass rate shows it cannot reach its quota): see hopeless()
    stopped: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Start every language with nothing accepted, planned or unanswered."""
        self.accepted = {lang: {} for lang in self.params.languages}
        self.next_index = dict.fromkeys(self.params.languages, 0)
        self.unanswered = {lang: [] for lang in self.params.languages}

    def plan_round(self) -> list[Planned]:
        """This round's plans: per short language, its unanswered plans, then fresh ones sized by its pass rate."""
        params = self.params
        todo: list[Planned] = []
        for lang in params.languages:
            need = params.per_language - len(self.accepted[lang])
            if need <= 0:
                continue
            done = self.next_index[lang]
            if lang in self.stopped or self.hopeless(lang, need):
                todo += self.unanswered[lang]  # a failed plan is still sent again: it was already counted
                self.unanswered[lang] = []
                continue
            rate = len(self.accepted[lang]) / self.answered[lang] if self.answered[lang] else 1.0 / params.oversample
            n = min(max(need, math.ceil(need / max(rate, 0.05))), 20 * max(need, 1))
            # a language the generator cannot write stops at its request budget instead of eating the run's
            fresh = max(0, min(n - len(self.unanswered[lang]), params.max_requests_per_language - self.requested[lang]))
            todo += self.unanswered[lang] + [self.planner.plan(lang, i) for i in range(done, done + fresh)]
            self.unanswered[lang] = []
            self.next_index[lang] = done + fresh
            self.requested[lang] += fresh
        return todo

    def hopeless(self, lang: str, need: int) -> bool:
        """Whether ``lang`` cannot reach its quota within its request budget even at an optimistic pass rate.

        The rate is the one-sided 95% Wilson upper bound of accepted / answered, after at least
        :data:`MIN_ANSWERED_TO_STOP` answers: only a language whose every plausible rate leaves it short is stopped
        (it keeps what it has; ``metrics.json`` says so), so the stage stops paying for requests that cannot pass.
        The round trip's bar is unchanged. Records the decision in :attr:`stopped`.
        """
        answered = self.answered[lang]
        if answered < MIN_ANSWERED_TO_STOP:
            return False
        left = self.params.max_requests_per_language - self.requested[lang]
        upper = wilson_upper(len(self.accepted[lang]), answered)
        if upper * (left + len(self.unanswered[lang])) >= need:
            return False
        self.stopped[lang] = {"accepted": len(self.accepted[lang]), "answered": answered,
                              "pass_rate_upper_95": round(upper, 4), "requests_left": left, "needed": need}
        log.info("generate: %s stops early: %d accepted of %d answered (pass rate <= %.3f at 95%%) cannot give the "
                 "%d still needed from the %d requests left", lang, len(self.accepted[lang]), answered, upper, need,
                 left)
        return True

    def judge(
        self, todo: list[Planned], answers: dict[str, GenResponse], refused_keys: set[str]
    ) -> list[tuple[Planned, str]]:
        """Count each plan's failure or validation verdict; the ``(plan, query)`` pairs that passed validation."""
        params = self.params
        verdicts = []
        for p in todo:
            resp = answers.get(p.request.key)
            if resp is None:  # failed after retries (counted in the ledger)
                if p.request.key in refused_keys:
                    self.refused[p.lang] += 1
                else:
                    self.unanswered[p.lang].append(p)
                continue
            self.answered[p.lang] += 1
            v = validate(
                resp.text,
                resp.finish_reason,
                chat=not params.few_shot,
                lang=p.lang,
                passage=p.positive,
                exemplars=p.exemplars,
                min_chars=params.min_chars,
                max_chars=params.max_chars,
                langid=self.langid,
            )
            if v.ok:
                verdicts.append((p, v.query))
            else:
                self.reject(p.lang, v.reason, {"lang": p.lang, "reason": v.reason, "query": v.query, "target": p.target})
        return verdicts

    def roundtrip_ranks(self, verdicts: list[tuple[Planned, str]]) -> list[int]:
        """The round-trip rank of each verdict's positive for its query, per language (all 0 without the filter)."""
        ranks = [0] * len(verdicts)
        if self.roundtrip is None:
            return ranks
        by_lang: dict[str, list[int]] = defaultdict(list)
        for i, (p, _) in enumerate(verdicts):
            by_lang[p.lang].append(i)
        for lang, idx in by_lang.items():
            pos = [verdicts[i][0].positive for i in idx]
            cands = sorted({x.text for x in self.planner.pool[lang]} | set(pos))
            for i, r in zip(idx, self.roundtrip.ranks([verdicts[i][1] for i in idx], pos, cands)):
                ranks[i] = r
        return ranks

    def accept(self, verdicts: list[tuple[Planned, str]], ranks: list[int]) -> None:
        """Keep each verdict that passes the round-trip filter as an output row; count the others as rejected."""
        for (p, query), rank in zip(verdicts, ranks):
            if self.roundtrip is not None and rank >= self.roundtrip.k:
                self.reject(p.lang, "roundtrip", {"lang": p.lang, "reason": "roundtrip", "query": query,
                                                  "target": p.target, "roundtrip_rank": rank})
                continue
            self.accepted[p.lang][p.index] = _example_row(p, query, rank, self.identity)

    def reject(self, lang: str, reason: str, row: dict[str, Any]) -> None:
        """Count one rejection and keep its row (``rejected.jsonl``: every rejection, so its ranks are unbiased)."""
        self.rejected[(lang, reason)] += 1
        self.rejected_rows.append(row)

    def collect(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The output rows (each language's first ``per_language`` accepted, in plan order) and per-language metrics."""
        rows: list[dict[str, Any]] = []
        per_lang: dict[str, Any] = {}
        for lang in self.params.languages:
            kept = [self.accepted[lang][i] for i in sorted(self.accepted[lang])][: self.params.per_language]
            rows += kept
            per_lang[lang] = self.language_metrics(lang, kept)
        return rows, per_lang

    def language_metrics(self, lang: str, kept: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``per_language`` entry of ``metrics.json`` for ``lang``, given the rows it keeps."""
        target = self.params.per_language
        rej = {r: self.rejected[(lang, r)] for r in (*REASONS, "roundtrip") if self.rejected[(lang, r)]}
        answered = self.answered[lang]
        passed_validation = answered - sum(v for r, v in rej.items() if r != "roundtrip")
        return {
            "target": target,
            "accepted": len(kept),
            "shortfall": max(0, target - len(kept)),
            "requested": self.requested[lang],
            "failed": len(self.unanswered[lang]) + self.refused[lang],  # plans still without an answer
            "rejected": rej,
            "validation_pass_rate": round(passed_validation / answered, 4) if answered else None,
            "roundtrip_pass_rate": (
                round(1 - rej.get("roundtrip", 0) / passed_validation, 4)
                if passed_validation and self.roundtrip
                else None
            ),
            "task_types": dict(Counter(r["task_type"] for r in kept)),
            "unsupported_task_types": self.planner.unsupported[lang],
            "requests_per_accepted": round(self.requested[lang] / len(kept), 2) if kept else None,
            "stopped_early": self.stopped.get(lang),
        }


#: Answers a language needs before :meth:`_Run.hopeless` may stop it (one first round at the default sizes).
MIN_ANSWERED_TO_STOP = 32


def wilson_upper(successes: int, trials: int, z: float = 1.645) -> float:
    """One-sided upper confidence bound of a binomial rate (Wilson score; ``z`` 1.645: 95%).

    References:
        Wilson, "Probable Inference, the Law of Succession, and Statistical Inference", JASA 22 (1927).
    """
    if trials <= 0:
        return 1.0
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return min(1.0, (centre + spread) / (1 + z2 / trials))


def response_cache_path(identity: dict[str, str], folder: Path, name: str) -> Path:
    """``<folder>/<name>-<digest>.jsonl``: the response cache file of one generator identity, its folder created.

    One cache file per generator identity (backend, model, weights or endpoint): answers of one model are never
    reused for another, while every run of the same generator shares its finished requests. The stage's is
    ``data/responses/responses-<backend>-<digest>.jsonl``; a benchmark names its own.
    """
    ident = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    cache_path = folder / f"{name}-{ident}.jsonl"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    return cache_path


def _run_rounds(run: _Run, backend: Backend, cache_path: Path, ledger: Ledger) -> int:
    """Top up every language over at most ``max_rounds`` rounds; returns the number of rounds that sent requests."""
    preflight: Callable[[], None] | None = getattr(backend, "preflight", None)  # only remote backends have one
    rounds = 0
    with ResponseCache(cache_path) as cache:
        for rounds in range(1, run.params.max_rounds + 1):
            todo = run.plan_round()
            if not todo:
                rounds -= 1
                break
            threads = redecide_threads(f"round {rounds}")  # auto threads: a busy moment at start must not last
            if threads is not None and hasattr(backend, "set_threads"):
                backend.set_threads(threads)
            log.info("generate: round %d, %d requests%s", rounds, len(todo),
                     f" at {threads} thread(s)" if threads is not None else "")
            if preflight is not None and any(p.request.key not in cache for p in todo):
                preflight()  # once, and only when something must be sent: a cached rerun needs no endpoint
                preflight = None
            answers, refused_keys = _answer(backend, todo, cache, ledger)
            verdicts = run.judge(todo, answers, refused_keys)
            run.accept(verdicts, run.roundtrip_ranks(verdicts))
    return rounds


def _answer(
    backend: Backend, todo: list[Planned], cache: ResponseCache, ledger: Ledger
) -> tuple[dict[str, GenResponse], set[str]]:
    """Answer ``todo`` from the cache or the backend: the answers by request key, and the keys refused with a 4xx."""
    answers, failures = answer_all(backend, [p.request for p in todo], cache, ledger)
    return answers, {f.key for f in failures if f.reason == "4xx"}


def _example_row(p: Planned, query: str, rank: int, identity: dict[str, str]) -> dict[str, Any]:
    """The ``examples.jsonl`` row of an accepted plan (schema in the module docstring)."""
    return {
        "id": f"syn-{p.lang}-{p.index:06d}",
        "lang": p.lang,
        "task_type": p.task_type,
        "query": query,
        "positive": p.positive,
        "evidence": p.target,
        "negative": None,
        "source": p.passage.source,
        "source_id": p.passage.source_id,
        "generator": identity,
        "prompt_version": PROMPT_VERSION,
        "seed": p.seed,
        "attributes": p.attrs.to_json(),
        "roundtrip_rank": rank,
    }


def _metrics(
    run: _Run, rows: list[dict[str, Any]], per_lang: dict[str, Any], rounds: int, ledger: Ledger, t0: float
) -> dict[str, Any]:
    """The run's metrics: those of ``metrics.json`` plus ``ledger`` and ``wall_seconds``."""
    params = run.params
    return {
        "generator": run.identity,
        "prompt_version": PROMPT_VERSION,
        "rounds": rounds,
        "examples": len(rows),
        "target": params.per_language * len(params.languages),
        "shortfall": sum(v["shortfall"] for v in per_lang.values()),
        "requests": sum(run.requested.values()),
        "stopped_early": sorted(run.stopped),
        "rejected": {r: sum(run.rejected[(lang, r)] for lang in params.languages) for r in (*REASONS, "roundtrip")},
        "roundtrip_top_k": params.roundtrip_top_k,
        "per_language": per_lang,
        "ledger": ledger.to_metrics(),
        "wall_seconds": round(time.time() - t0, 1),
    }


def _write_outputs(out_dir: Path, run: _Run, rows: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    """Write ``examples.jsonl``, ``rejected.jsonl``, ``pool.jsonl`` and ``metrics.json`` to ``out_dir`` atomically."""
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "examples.jsonl", rows)
        write_jsonl(tmp / "rejected.jsonl", run.rejected_rows)
        write_jsonl(tmp / "pool.jsonl", [
            {"lang": lang, "source": q.source, "source_id": q.source_id, "text": q.text}
            for lang in run.params.languages for q in run.planner.pool[lang]
        ])
        # The ledger and wall time describe this run (a rerun answered from the cache sends nothing), not the data,
        # so they stay out of the output directory and its hash; the stage writes the ledger beside it.
        write_json(tmp / "metrics.json", {k: v for k, v in metrics.items() if k not in ("wall_seconds", "ledger")})


def _warn_shortfalls(per_lang: dict[str, Any], target: int, rounds: int) -> None:
    """Log a warning for each language that ended short of its target."""
    for lang, m in per_lang.items():
        if m["shortfall"]:
            log.warning("generate: %s is %d examples short of %d after %d rounds", lang, m["shortfall"], target, rounds)


def _too_few(params: GenerateParams, metrics: dict[str, Any], identity: dict[str, str], rounds: int) -> str:
    """The message for a run below ``generate.min_examples``: counts, where they went, and which generator."""
    if params.backend == "openai":
        key = params.openai.api_key_env
        gen = f"openai endpoint {identity.get('base_url')} (API key in environment variable {key})"
    else:
        gen = f"local model {identity.get('model')}"
    led = metrics["ledger"]
    failures = ", ".join(f"{k}={v}" for k, v in led["failures"].items() if v) or "none"
    langs = ", ".join(f"{lang} {m['accepted']}/{m['target']}" for lang, m in metrics["per_language"].items())
    rejected = ", ".join(f"{k}={v}" for k, v in metrics["rejected"].items() if v) or "none"
    return (
        f"generate: {metrics['examples']} examples, fewer than generate.min_examples={params.min_examples}, so nothing "
        f"was written. Generator: {gen}. {rounds} round(s): {led['requests_sent']} requests sent, "
        f"{led['cached_hits']} answered from the cache, {led['failed']} failed (by reason: {failures}); "
        f"rejected: {rejected}; accepted per language: {langs}. Finished answers stay in the response cache"
    )
