"""A dry-run plan: what every stage will do under the active params, and what it will cost. Offline and fast.

:func:`plan` reads the params (nothing else: no data, no network) and estimates, per stage, the work and its cost,
each with the method next to the number:

- **generate**: LLM requests (languages x ``per_language`` x ``oversample``: the first round expects a pass rate of
  ``1 / oversample``), input tokens per request from the real prompt template of :mod:`retrofit.generate.prompts`
  filled with a passage of typical length, output tokens from the requested query lengths, and the cost at
  ``generate.openai``'s prices: ``input_tokens x price_per_1m_input / 1e6 + output_tokens x price_per_1m_output / 1e6``.
  Also the worst case (nothing passes validation, every top-up round at its 20x cap) and the base model's
  round-trip encoding;
- **dedupe** and **mine**: rows, candidate corpus, teacher encoding tokens and GPU time, FAISS search FLOPs;
- **train**: per run (every scale point and named run): mixture rows, examples seen, epochs, tokens, FLOPs
  (6 x non-embedding parameters x tokens plus attention, 8x instead of 6x with GradCache's extra forward pass) and
  GPU-hours at a stated model-FLOPs utilisation (MFU) of a stated peak;
- **evaluate**: per evaluated model, held-out XQuAD and, with ``mmteb`` in ``evaluate.benchmarks``, documents and
  queries per MMTEB task from the descriptive statistics that mteb ships (no download), the tokens to encode after
  truncation, and GPU-hours;
- **disk**: generated JSONL, LLM response cache, deduped and mined JSONL, embedding caches, models, checkpoints and
  the hub caches that can be sized offline.

Units are in the keys: ``*_usd``, ``*_tokens``, ``*_flops``, ``*_gpu_hours``, ``*_wall_hours``, ``*_bytes``, and
counts (``*_rows``, ``*_requests``, ``*_texts``, ``*_steps``, ...).

GPU time: ``hours = FLOPs / (MFU x peak) / 3600`` on one NVIDIA H100 SXM (989 TFLOP/s dense bf16). MFU 20%
comes from a measurement: an XLM-R-base-shaped encoder (multilingual-e5-base's shape) trained at 561 examples/s
(bf16, batch 64, length 256) on one H100; counted as (query, positive, negative) triplets with the FLOPs formula here,
that is 23% MFU. Encoding is assumed to reach the same. The optimistic bound uses 35%. Evaluation and mining times
are compute only: dataset download, tokenisation and scoring come on top (MMTEB's MIRACL hard-negative corpus alone
is 2.4M passages, about 1 GB of text).

Command line::

    python tools/plan.py [--params params.yaml] [--profile profiles/paper.yaml] [--set KEY=VALUE ...]
                            [--gpus N] [--json plan.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

from retrofit.config import (
    Params,
    ParamsError,
    apply_overrides,
    default_params,
    validate_params,
)
from retrofit.eval.mmteb_tasks import CHARS_PER_TOKEN, mmteb_eval_stats
from retrofit.generate.openai_request import estimate_prompt_tokens
from retrofit.generate.prompts import (
    CLARITY,
    DIFFICULTY,
    LENGTHS,
    Attributes,
    instruction_messages,
)
from retrofit.profiles import is_group, merge_profile_text

# ----------------------------------------------------------------------------------------------------------------
# Assumptions (every estimate below names the ones it uses)
# ----------------------------------------------------------------------------------------------------------------

GPU_NAME = "NVIDIA H100 SXM"
#: bf16 dense tensor-core peak of one H100 SXM (1979 TFLOP/s is the 2:4-sparse figure).
PEAK_FLOPS_PER_S = 989e12
#: Model-FLOPs utilisation: ~20% measured (XLM-R-base shape, 561 ex/s, bf16, batch 64, length 256, one H100).
MFU = 0.20
#: The optimistic end of the range (well-tuned encoder training or length-sorted inference).
MFU_OPTIMISTIC = 0.35
#: UTF-8 bytes per token: the LLM ledger's own estimate (retrofit.generate.openai_request.estimate_tokens), also
#: used for encoder tokens of texts whose byte length is known. High for Indic and Thai scripts.
BYTES_PER_TOKEN = 4.0
#: Typical UTF-8 bytes of a Wikipedia paragraph: measured mean of XQuAD's paragraphs (Wikipedia) for its 12
#: languages; by script for the others (Latin 900, Cyrillic as ru, Arabic script as ar, Indic as hi, CJK as zh/ja).
PASSAGE_BYTES: dict[str, int] = {
    "ar": 1232, "de": 910, "el": 1600, "en": 786, "es": 900, "hi": 1954, "ro": 922, "ru": 1546, "th": 2083,
    "tr": 856, "vi": 1053, "zh": 685,
    "bg": 1546, "bn": 1954, "fa": 1232, "fr": 900, "he": 1232, "id": 900, "it": 900, "ja": 800, "ko": 900,
    "nl": 900, "pl": 900, "pt": 900, "sw": 900, "ur": 1232,
}
#: English words per generated query for each requested length ("less than 8", "8 to 20", "at least 20" words).
QUERY_WORDS = {"short": 5, "medium": 14, "long": 25}
#: UTF-8 bytes per English word including the space; other languages scale by PASSAGE_BYTES[lang] / PASSAGE_BYTES[en].
BYTES_PER_WORD = 6.0
#: A JSON answer's wrapper, ``{"query": ""}``.
JSON_WRAPPER_BYTES = len('{"query": ""}')
#: Seconds per request at the endpoint (gpt-4o-mini, ~500 prompt and ~30 completion tokens; assumed, not measured).
REQUEST_LATENCY_S = 1.5
#: Typical bytes of an English task passage (MS MARCO, NQ, HotpotQA, FEVER, NLI, Quora, abstracts; a rough mean).
ENGLISH_PASSAGE_BYTES = 500
ENGLISH_QUERY_BYTES = 60
#: Tokens the query column is padded to in a training batch (the longest query of the batch; assumed).
QUERY_PAD_TOKENS = 64
#: XQuAD: paragraphs and questions per language over its 48 articles.
XQUAD_ARTICLES, XQUAD_PARAGRAPHS, XQUAD_QUESTIONS = 48, 240, 1190
#: JSON overhead per row (ids, provenance, attributes) in the generated / deduped / mined files.
ROW_OVERHEAD_BYTES = {"generated": 450, "deduped": 350, "mined": 400, "response": 250}
#: Bytes of a tokenizer saved with each model (XLM-R's sentencepiece + tokenizer.json).
TOKENIZER_BYTES = 22_000_000
#: UTF-8 bytes per MMTEB character in the hub cache (Arrow text plus compressed Parquet download).
HF_CACHE_BYTES_PER_CHAR = 1.5


@dataclass(frozen=True)
class EncoderShape:
    """A BERT/XLM-R-style encoder's size; enough for parameter counts and FLOPs."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    positions: int
    max_len: int
    source: str

    @property
    def non_embedding_params(self) -> int:
        """Attention and FFN weights and biases plus two LayerNorms per layer (the matmul parameters)."""
        h, i = self.hidden, self.intermediate
        return self.layers * (4 * h * h + 2 * h * i + 9 * h + i)

    @property
    def params(self) -> int:
        """All parameters: non-embedding plus token, position and type embeddings (pooler excluded)."""
        return self.non_embedding_params + (self.vocab + self.positions + 1) * self.hidden + 2 * self.hidden

    def forward_flops(self, tokens_per_text: float, texts: float) -> float:
        """FLOPs to encode ``texts`` texts of ``tokens_per_text`` tokens: 2 N T for the weights, 4 L T^2 h for
        attention scores and values."""
        t = tokens_per_text
        return texts * (2 * self.non_embedding_params * t + 4 * self.layers * t * t * self.hidden)


#: Shapes of the models the profiles name (from their config.json files), so the plan needs no download.
KNOWN_ENCODERS: dict[str, EncoderShape] = {
    s.name: s
    for s in (
        EncoderShape("intfloat/multilingual-e5-small", 12, 384, 1536, 250037, 514, 512, "config.json"),
        EncoderShape("intfloat/multilingual-e5-base", 12, 768, 3072, 250002, 514, 512, "config.json"),
        EncoderShape("intfloat/multilingual-e5-large", 24, 1024, 4096, 250002, 514, 512, "config.json"),
        EncoderShape("intfloat/multilingual-e5-large-instruct", 24, 1024, 4096, 250002, 514, 512, "config.json"),
        EncoderShape("Alibaba-NLP/gte-multilingual-base", 12, 768, 3072, 250048, 0, 8192, "config.json"),
        EncoderShape("BAAI/bge-m3", 24, 1024, 4096, 250002, 8194, 8192, "config.json"),
    )
}
KNOWN_ENCODERS["bundled:multilingual-e5-small"] = KNOWN_ENCODERS["intfloat/multilingual-e5-small"]


def encoder_shape(spec: str) -> tuple[EncoderShape, str | None]:
    """The shape of ``model.base`` / ``negatives.teacher``: a known hub id, or a local directory's config.json.

    Returns:
        ``(shape, warning or None)``; an unknown model is assumed to be XLM-R-base-shaped, with a warning.
    """
    if spec in KNOWN_ENCODERS:
        return KNOWN_ENCODERS[spec], None
    cfg = Path(spec).expanduser() / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text(encoding="utf-8"))
        try:
            return EncoderShape(
                spec, c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"], c["vocab_size"],
                c.get("max_position_embeddings", 512), min(c.get("max_position_embeddings", 512), 8192), str(cfg),
            ), None
        except KeyError as exc:
            return _fallback(spec), f"{cfg}: no {exc.args[0]}; assumed multilingual-e5-base's shape"
    return _fallback(spec), f"{spec!r}: shape unknown offline; assumed multilingual-e5-base's (12 x 768)"


def _fallback(spec: str) -> EncoderShape:
    base = KNOWN_ENCODERS["intfloat/multilingual-e5-base"]
    return EncoderShape(spec, base.layers, base.hidden, base.intermediate, base.vocab, base.positions, base.max_len,
                        "assumed")


def gpu_hours(flops: float, mfu: float = MFU) -> float:
    """Hours on one GPU of :data:`PEAK_FLOPS_PER_S` at ``mfu``."""
    return flops / (mfu * PEAK_FLOPS_PER_S) / 3600.0


def llm_cost_usd(input_tokens: float, output_tokens: float, price_in: float, price_out: float) -> float:
    """USD for the tokens at per-million-token prices (the ledger's formula)."""
    return input_tokens * price_in / 1e6 + output_tokens * price_out / 1e6


def _bytes_for(lang: str) -> int:
    return PASSAGE_BYTES.get(lang, 1000)


def _script_factor(lang: str) -> float:
    return _bytes_for(lang) / PASSAGE_BYTES["en"]


def query_bytes(lang: str) -> float:
    """Expected UTF-8 bytes of a generated query: the mean over the three requested lengths."""
    words = sum(QUERY_WORDS.values()) / len(QUERY_WORDS)
    return words * BYTES_PER_WORD * _script_factor(lang)


@lru_cache(maxsize=256)
def prompt_tokens(task_type: str, lang: str, target_bytes: int) -> float:
    """Mean input tokens of an openai-backend request over every attribute combination, estimated like the ledger.

    The real template (:func:`retrofit.generate.prompts.instruction_messages`) is filled with a placeholder passage
    of ``target_bytes`` UTF-8 bytes and counted with
    :func:`retrofit.generate.openai_request.estimate_prompt_tokens` (bytes / 4 plus 4 per message).
    """
    passage = "x" * target_bytes
    counts = [
        estimate_prompt_tokens(
            [{"role": r, "content": c} for r, c in instruction_messages(task_type, lang, passage, Attributes(*a))]
        )
        for a in product(LENGTHS, CLARITY, DIFFICULTY)
    ]
    return sum(counts) / len(counts)


def _target_bytes(task_type: str, lang: str) -> int:
    # paraphrase requests show one sentence (a Wikipedia paragraph has about five); the others the whole passage
    return _bytes_for(lang) // 5 if task_type == "paraphrase" else _bytes_for(lang)


# ----------------------------------------------------------------------------------------------------------------
# MMTEB statistics
# ----------------------------------------------------------------------------------------------------------------


def _mmteb_flops(stats: Mapping[str, Any], shape: EncoderShape, max_len: int) -> float:
    flops = 0.0
    for sp in stats["_splits"]:
        d_len = min(sp["document_chars"] / max(sp["documents"], 1) / CHARS_PER_TOKEN, max_len)
        q_len = min(sp["query_chars"] / max(sp["queries"], 1) / CHARS_PER_TOKEN, max_len)
        flops += shape.forward_flops(d_len, sp["documents"]) + shape.forward_flops(q_len, sp["queries"])
    return flops


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------


def _deep_update(base: dict[str, Any], over: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """``over`` merged into ``base``: params groups key by key, every other value replaced (as profiles merge)."""
    for k, v in over.items():
        here = (*path, str(k))
        if isinstance(v, Mapping) and isinstance(base.get(k), dict) and is_group(here):
            _deep_update(base[k], v, here)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _raw(params: Params | Mapping[str, Any]) -> dict[str, Any]:
    """Plain params, anything not given taken from the repository's ``params.yaml``; unknown keys are kept."""
    given = params.model_dump() if hasattr(params, "model_dump") else copy.deepcopy(dict(params))
    return _deep_update(default_params().model_dump(), given)


def _english_sources(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every English source the run can use, with rows available after dedupe and passages per row."""
    data, dedupe = cfg["data"], cfg["dedupe"]
    cap = dedupe.get("english_per_source")
    hub_rows = data.get("hub_english_rows")
    out = {}
    for name in data.get("english") or []:
        out[name] = {"rows": cap if cap is not None else 0, "passages_per_row": 1.5, "hub": None}
    for name, spec in (data.get("hub_english") or {}).items():
        avail = hub_rows if hub_rows is not None else (cap or 0)
        rows = min(avail, cap) if cap is not None else avail
        triplet = "triplet" in str(spec.get("config") or "")
        out[name] = {"rows": rows, "passages_per_row": 2.0 if triplet else 1.0, "hub": spec.get("dataset")}
    return out


def _mixture_rows(
    cfg: Mapping[str, Any], english: Mapping[str, Mapping[str, Any]], warnings: list[str]
) -> dict[str, int]:
    mix, gen = cfg["train"]["mix"], cfg["generate"]
    rows_en = 0
    for source in mix.get("english") or []:
        if source not in english:
            warnings.append(f"train.mix.english: {source!r} is in neither data.english nor data.hub_english")
            continue
        avail = english[source]["rows"]
        cap = mix.get("english_per_source")
        rows_en += min(avail, cap) if cap is not None else avail
    weights = {k: w for k, w in gen["task_types"].items() if w > 0}
    share = sum(w for k, w in weights.items() if k in (mix.get("task_types") or [])) / max(sum(weights.values()), 1e-9)
    per_lang_avail = gen["per_language"] * share
    rows_syn = 0
    for lang in mix.get("languages") or []:
        if lang in gen["languages"]:
            rows_syn += min(mix["per_language"], per_lang_avail)
    if mix["per_language"] > per_lang_avail:
        warnings.append(
            f"train.mix.per_language={mix['per_language']} exceeds the {per_lang_avail:.0f} generated rows per "
            "language of mix.task_types; the run gets fewer"
        )
    return {"english_rows": int(rows_en), "synthetic_rows": int(rows_syn), "mixture_rows": int(rows_en + rows_syn)}


def _train_run(cfg: Mapping[str, Any], english: Mapping[str, Any], shape: EncoderShape, warnings: list[str]) -> dict:
    t = cfg["train"]
    rows = _mixture_rows(cfg, english, warnings)
    seq = t["max_seq_length"]
    q_len = min(QUERY_PAD_TOKENS, seq)
    k = t["num_negatives"] if cfg["negatives"]["hard"] else 0
    examples = t["max_steps"] * t["batch_size"]
    tokens = examples * (q_len + (1 + k) * seq)
    trainable = (t["trainable_layers"] / shape.layers) if t.get("trainable_layers") is not None else 1.0
    mult = 1 + 2 * min(trainable, 1.0) + (1 if t["cached"] else 0)  # forward + backward (+ GradCache's extra forward)
    fwd = shape.forward_flops(q_len, examples) + shape.forward_flops(seq, examples * (1 + k))
    flops = mult * fwd
    return {
        **rows,
        "steps": t["max_steps"],
        "batch_size_per_device": t["batch_size"],
        "examples_seen_per_device": examples,
        "epochs_on_one_gpu": round(examples / rows["mixture_rows"], 2) if rows["mixture_rows"] else None,
        "train_tokens": int(tokens),
        "train_flops": flops,
        "gpu_hours": gpu_hours(flops),
        "gpu_hours_optimistic": gpu_hours(flops, MFU_OPTIMISTIC),
    }


@dataclass(frozen=True)
class _Volumes:
    """Counts several stages share: languages, LLM requests, the passage pool, rows and passages to mine."""

    langs: list[str]
    per_language: int
    first_round: int
    requests: int
    requests_cap: int
    pool: int
    english: dict[str, dict[str, Any]]
    en_rows: int
    syn_rows: int
    rows: int
    syn_passages: int
    en_passages: float
    mean_syn_bytes: float
    mean_syn_query_bytes: float


def _volumes(cfg: Mapping[str, Any]) -> _Volumes:
    """The shared counts: first-round and worst-case requests, passage pool, synthetic and English rows."""
    g = cfg["generate"]
    langs = list(g["languages"])
    per_language = g["per_language"]
    first_round = math.ceil(per_language * g["oversample"])
    worst = first_round + (g["max_rounds"] - 1) * 20 * per_language
    pool = len(langs) * g["passages_per_language"]
    english = _english_sources(cfg)
    en_rows = sum(s["rows"] for s in english.values())
    syn_rows = per_language * len(langs)
    return _Volumes(
        langs=langs,
        per_language=per_language,
        first_round=first_round,
        requests=first_round * len(langs),
        requests_cap=worst * len(langs),
        pool=pool,
        english=english,
        en_rows=en_rows,
        syn_rows=syn_rows,
        rows=en_rows + syn_rows,
        syn_passages=min(syn_rows, pool),
        en_passages=sum(s["rows"] * s["passages_per_row"] for s in english.values()),
        mean_syn_bytes=sum(_bytes_for(x) for x in langs) / max(len(langs), 1),
        mean_syn_query_bytes=sum(query_bytes(x) for x in langs) / max(len(langs), 1),
    )


def _model_shapes(cfg: Mapping[str, Any], warnings: list[str]) -> tuple[EncoderShape, EncoderShape]:
    """Shapes of ``model.base`` and ``negatives.teacher`` (``"base"``: the base model's), warning on guesses."""
    base_shape, warn = encoder_shape(cfg["model"]["base"])
    if warn:
        warnings.append(f"model.base {warn}")
    teacher_spec = cfg["negatives"]["teacher"]
    teacher_shape, warn = (base_shape, None) if teacher_spec == "base" else encoder_shape(teacher_spec)
    if warn:
        warnings.append(f"negatives.teacher {warn}")
    return base_shape, teacher_shape


def _base_model_stage(cfg: Mapping[str, Any], base_shape: EncoderShape) -> dict[str, Any]:
    """The ``base_model`` stage: parameter counts and the fp32 download."""
    spec = cfg["model"]["base"]
    return {
        "does": f"materialize {spec} as an fp32 sentence-transformers directory (models/base)",
        "params": base_shape.params,
        "non_embedding_params": base_shape.non_embedding_params,
        "download_bytes": 0 if spec.startswith("bundled:") else 4 * base_shape.params,
        "method": "parameter counts from the architecture (config.json) of the named model; fp32 weights: 4 bytes each",
    }


def _generate_tokens(g: Mapping[str, Any], langs: Sequence[str], first_round: int) -> tuple[float, float]:
    """Input and output tokens of generation's first round: per language, its requests x tokens per request."""
    weights = {k: w for k, w in g["task_types"].items() if w > 0}
    wsum = sum(weights.values())
    in_tok = out_tok = 0.0
    for lang in langs:
        if g["backend"] == "openai":
            p_tok = sum(w * prompt_tokens(t, lang, _target_bytes(t, lang)) for t, w in weights.items()) / wsum
        else:  # few-shot completion: shots x (snippet + query) + target snippet
            snip = min(g["local"]["snippet_chars"] * _script_factor(lang), _bytes_for(lang))
            p_tok = (g["local"]["shots"] + 1) * (snip + query_bytes(lang) + 20) / BYTES_PER_TOKEN
        o_tok = min(g["max_tokens"], math.ceil((JSON_WRAPPER_BYTES + query_bytes(lang)) / BYTES_PER_TOKEN))
        in_tok += first_round * p_tok
        out_tok += first_round * o_tok
    return in_tok, out_tok


def _roundtrip_flops(g: Mapping[str, Any], vol: _Volumes, base_shape: EncoderShape) -> float:
    """FLOPs of the round-trip filter: the base model encodes the passage pool and every answered query."""
    if g["roundtrip_top_k"] <= 0:
        return 0.0
    p_len = min(vol.mean_syn_bytes / BYTES_PER_TOKEN, base_shape.max_len)
    q_len = vol.mean_syn_query_bytes / BYTES_PER_TOKEN
    return base_shape.forward_flops(p_len, vol.pool) + base_shape.forward_flops(q_len, vol.requests)


def _generate_method(g: Mapping[str, Any], paid: bool) -> str:
    """How the ``generate`` numbers are estimated (the paid backend's text names prices and latency)."""
    return (
        f"requests = languages x ceil(per_language x oversample) (the first round assumes a pass rate of "
        f"1/oversample; the cap is nothing passing, then {g['max_rounds'] - 1} top-up rounds at "
        "20 x per_language). "
        + (
            "Input tokens: the real instruction template filled with a passage of typical UTF-8 length (XQuAD's "
            "Wikipedia paragraphs per language), averaged over all 27 attribute combinations, counted as "
            f"bytes/{BYTES_PER_TOKEN:g} + 4 per message (the ledger's estimate when a server reports no usage). "
            "Output tokens: the JSON answer with a query of the mean requested length ("
            + "/".join(str(v) for v in QUERY_WORDS.values()) + " words for " + "/".join(QUERY_WORDS)
            + f", {BYTES_PER_WORD:g} bytes per English word, scaled by script), capped at max_tokens. "
            "cost_usd = input_tokens x price_per_1m_input / 1e6 + output_tokens x price_per_1m_output / 1e6. "
            f"wall_hours = requests x {REQUEST_LATENCY_S} s / concurrency (assumed latency; the account's "
            "tokens-per-minute limit may bind first)."
            if paid else "local backend: no API cost; tokens are few-shot prompts (shots + 1 snippets and queries)."
        )
        + " Round trip: the base model encodes the passage pool and every answered query."
    )


def _generate_stage(cfg: Mapping[str, Any], vol: _Volumes, base_shape: EncoderShape) -> dict[str, Any]:
    """The ``generate`` stage: LLM requests, tokens and cost (expected and worst case), wall time, round trip."""
    g = cfg["generate"]
    langs, per_language, requests = vol.langs, vol.per_language, vol.requests
    weights = {k: w for k, w in g["task_types"].items() if w > 0}
    in_tok, out_tok = _generate_tokens(g, langs, vol.first_round)
    o = g["openai"]
    paid = g["backend"] == "openai"
    price_in, price_out = (o["price_per_1m_input"], o["price_per_1m_output"]) if paid else (0.0, 0.0)
    rt_flops = _roundtrip_flops(g, vol, base_shape)
    model = o["model"] if paid else g["local"]["model"]
    return {
        "does": (
            f"{g['backend']} backend ({model}{' at ' + o['base_url'] if paid else ''}): {len(langs)} languages x "
            f"{per_language} examples of {', '.join(weights)} from {', '.join(g['passage_sources'])} passages "
            f"({g['passages_per_language']} per language), validated and round-trip filtered "
            f"(top {g['roundtrip_top_k']})"
        ),
        "target_rows": per_language * len(langs),
        "expected_requests": requests,
        "cap_requests": vol.requests_cap,
        "input_tokens": round(in_tok),
        "output_tokens": round(out_tok),
        "input_tokens_per_request": round(in_tok / max(requests, 1), 1),
        "output_tokens_per_request": round(out_tok / max(requests, 1), 1),
        "price_per_1m_input_usd": price_in,
        "price_per_1m_output_usd": price_out,
        "cost_usd": llm_cost_usd(in_tok, out_tok, price_in, price_out),
        "cap_cost_usd": llm_cost_usd(in_tok, out_tok, price_in, price_out) * vol.requests_cap / max(requests, 1),
        "wall_hours": requests * REQUEST_LATENCY_S / (o["concurrency"] if paid else 1) / 3600 if paid else None,
        "roundtrip_flops": rt_flops,
        "roundtrip_gpu_hours": gpu_hours(rt_flops),
        "method": _generate_method(g, paid),
    }


def _dedupe_stage(vol: _Volumes) -> dict[str, Any]:
    """The ``dedupe`` stage: synthetic plus English input rows (CPU only)."""
    return {
        "does": (
            f"normalise, decontaminate against held-out XQuAD, drop exact and near-duplicate queries over "
            f"{vol.syn_rows} synthetic + {vol.en_rows} English rows ({len(vol.english)} sources)"
        ),
        "input_rows": vol.rows,
        "english_rows": vol.en_rows,
        "synthetic_rows": vol.syn_rows,
        "method": "input rows = generated target + min(rows prepared, dedupe.english_per_source) per English source; "
        "CPU only (MinHash LSH), minutes at this size; drops are reported by the stage",
    }


def _mine_flops(vol: _Volumes, teacher_shape: EncoderShape) -> tuple[float, float]:
    """``(encode FLOPs, search FLOPs)`` of hard-negative mining: the teacher encodes queries and passages, then an
    exact search scores every (query, candidate) pair within a language or English source."""
    langs, rows = vol.langs, vol.rows
    p_len_t = min(vol.mean_syn_bytes / BYTES_PER_TOKEN, teacher_shape.max_len)
    e_len_t = min(ENGLISH_PASSAGE_BYTES / BYTES_PER_TOKEN, teacher_shape.max_len)
    q_bytes = (vol.mean_syn_query_bytes * vol.syn_rows + ENGLISH_QUERY_BYTES * vol.en_rows) / max(rows, 1)
    q_len_t = q_bytes / BYTES_PER_TOKEN
    mine_flops = (
        teacher_shape.forward_flops(q_len_t, rows)
        + teacher_shape.forward_flops(p_len_t, vol.syn_passages)
        + teacher_shape.forward_flops(e_len_t, vol.en_passages)
    )
    per_lang_q = vol.per_language
    per_lang_c = vol.syn_passages / max(len(langs), 1)
    search_flops = 2 * teacher_shape.hidden * (
        len(langs) * per_lang_q * per_lang_c
        + sum(s["rows"] * s["rows"] * s["passages_per_row"] for s in vol.english.values())
    )
    return mine_flops, search_flops


def _mine_stage(cfg: Mapping[str, Any], vol: _Volumes, teacher_shape: EncoderShape) -> dict[str, Any]:
    """The ``mine`` stage: texts the teacher encodes, encode and search FLOPs, GPU time (nothing without
    ``negatives.hard``)."""
    neg = cfg["negatives"]
    mine_flops, search_flops = _mine_flops(vol, teacher_shape) if neg["hard"] else (0.0, 0.0)
    passages = round(vol.syn_passages + vol.en_passages)
    return {
        "does": (
            f"teacher {neg['teacher']} encodes {vol.rows} queries and ~{passages} passages, FAISS "
            f"{neg['index']} search per {neg['scope']}, keeps {neg['num_negatives']} negatives ranked "
            f"{neg['range_min']}..{neg['range_max']} below {1 - neg['relative_margin']:.0%} of the positive's score"
            if neg["hard"] else "negatives.hard is false: rows pass through without mined negatives (no model loaded)"
        ),
        "query_texts": vol.rows if neg["hard"] else 0,
        "passage_texts": passages if neg["hard"] else 0,
        "teacher_params": teacher_shape.params,
        "encode_flops": mine_flops,
        "search_flops": search_flops,
        "gpu_hours": gpu_hours(mine_flops + search_flops),
        "gpu_hours_optimistic": gpu_hours(mine_flops + search_flops, MFU_OPTIMISTIC),
        "method": (
            "passages = distinct synthetic positives (at most the passage pool) + English positives and dataset "
            f"negatives; tokens = UTF-8 bytes / {BYTES_PER_TOKEN:g} (English passages ~{ENGLISH_PASSAGE_BYTES} bytes), "
            "truncated at the teacher's max length; FLOPs = 2 N T + 4 L T^2 h per text; exact search 2 d per "
            f"(query, candidate) pair within a partition; GPU time at {MFU:.0%} MFU (compute only)"
        ),
    }


def _train_stage(
    cfg: Mapping[str, Any], vol: _Volumes, base_shape: EncoderShape, gpus: int, warnings: list[str]
) -> dict[str, Any]:
    """The ``train`` stage: one :func:`_train_run` per scale point and named run, and their sums."""
    runs: dict[str, Any] = {}
    for n in cfg["scale"]["per_language"]:
        c = apply_overrides(copy.deepcopy(cfg), [f"train.mix.per_language={n}"])
        runs[f"scale_{n}"] = _train_run(c, vol.english, base_shape, warnings)
    for name, sets in (cfg.get("runs") or {}).items():
        c = apply_overrides(copy.deepcopy(cfg), sets.split())
        runs[name] = _train_run(c, vol.english, base_shape, warnings)
    t = cfg["train"]
    train_gpu = sum(r["gpu_hours"] for r in runs.values())
    return {
        "does": (
            f"{len(runs)} runs ({len(cfg['scale']['per_language'])} scale points + {len(cfg.get('runs') or {})} named) "
            f"of {t['max_steps']} steps x batch {t['batch_size']} per device, length {t['max_seq_length']}, "
            f"{'bf16, ' if t['bf16'] else ''}{'GradCache, ' if t['cached'] else ''}"
            f"{'all layers' if t.get('trainable_layers') is None else str(t['trainable_layers']) + ' top layers'}"
        ),
        "runs": runs,
        "train_tokens": sum(r["train_tokens"] for r in runs.values()),
        "train_flops": sum(r["train_flops"] for r in runs.values()),
        "gpu_hours": train_gpu,
        "gpu_hours_optimistic": sum(r["gpu_hours_optimistic"] for r in runs.values()),
        "wall_hours": train_gpu / gpus,
        "method": (
            f"examples = max_steps x batch_size (per device: N GPUs see N x as many in the same steps); tokens per "
            f"example = query padded to {QUERY_PAD_TOKENS} + (1 + hard negatives) x max_seq_length (an upper bound: "
            "batches pad to their longest text); FLOPs = (forward + 2 x forward for backward through the trainable "
            "layers + 1 forward with GradCache) with forward = 2 N T + 4 L T^2 h per text, N = non-embedding "
            f"parameters (6 N T plus attention without GradCache); GPU-hours at {MFU:.0%} MFU of {GPU_NAME} "
            f"({PEAK_FLOPS_PER_S / 1e12:.0f} TFLOP/s bf16 dense; {MFU:.0%} measured: XLM-R-base shape, 561 "
            f"examples/s, bf16, batch 64, length 256, one H100), optimistic at {MFU_OPTIMISTIC:.0%}; wall_hours = "
            "GPU-hours / GPUs, which holds when the global batch is kept (train.batch_size = global / GPUs)"
        ),
    }


def _xquad_eval(cfg: Mapping[str, Any], base_shape: EncoderShape) -> dict[str, Any]:
    """Held-out XQuAD per evaluated model: paragraphs and questions of the test articles, FLOPs, GPU-hours."""
    ev = cfg["evaluate"]
    frac = cfg["data"]["test_articles"] / XQUAD_ARTICLES
    n_lang = len(ev["languages"])
    docs = round(XQUAD_PARAGRAPHS * frac) * n_lang
    qs = min(round(XQUAD_QUESTIONS * frac), ev.get("max_queries_per_lang") or 10**9) * n_lang
    mean_b = sum(_bytes_for(x) for x in ev["languages"]) / n_lang
    f = base_shape.forward_flops(min(mean_b / BYTES_PER_TOKEN, cfg["train"]["max_seq_length"]), docs)
    f += base_shape.forward_flops(80 / BYTES_PER_TOKEN, qs)  # XQuAD questions: ~80 bytes
    return {"documents": docs, "queries": qs, "flops_per_model": f, "gpu_hours_per_model": gpu_hours(f)}


def _mmteb_eval(cfg: Mapping[str, Any], base_shape: EncoderShape) -> dict[str, Any]:
    """MMTEB per evaluated model: per task documents, queries and tokens from mteb's descriptive statistics (no
    download), FLOPs and GPU-hours, and the text the hub cache will hold."""
    ev = cfg["evaluate"]
    mm = ev.get("mmteb") or {}
    bench = mm.get("benchmark") or "MTEB(Multilingual, v2)"
    types = tuple(mm.get("task_types") or ["Retrieval"])
    max_len = ev.get("max_seq_length") or cfg["train"]["max_seq_length"]
    stats = mmteb_eval_stats(bench, types, max_len)
    wanted = mm.get("tasks")
    if wanted:
        stats = {k: v for k, v in stats.items() if k in set(wanted)}
    tasks = {}
    per_model = 0.0
    for name, s in stats.items():
        fl = _mmteb_flops(s, base_shape, max_len)
        per_model += fl
        tasks[name] = {k: v for k, v in s.items() if not k.startswith("_")} | {
            "encode_flops": fl,
            "gpu_hours_per_model": gpu_hours(fl),
        }
    return {
        "benchmark": bench,
        "task_types": list(types),
        "max_seq_length": max_len,
        "tasks": tasks,
        "documents": sum(s["documents"] for s in tasks.values()),
        "queries": sum(s["queries"] for s in tasks.values()),
        "encode_tokens_per_model": sum(s["document_tokens"] + s["query_tokens"] for s in tasks.values()),
        "flops_per_model": per_model,
        "gpu_hours_per_model": gpu_hours(per_model),
        "text_bytes": round(
            sum(s["document_chars"] + s["query_chars"] for s in tasks.values()) * HF_CACHE_BYTES_PER_CHAR
        ),
    }


def _evaluate_stage(cfg: Mapping[str, Any], n_runs: int, base_shape: EncoderShape, gpus: int) -> dict[str, Any]:
    """The ``evaluate`` stage: the base model and every trained run on ``evaluate.benchmarks`` (default XQuAD)."""
    benchmarks = list(cfg["evaluate"].get("benchmarks") or ["xquad"])
    models = 1 + n_runs
    evaluate: dict[str, Any] = {"models": models, "benchmarks": benchmarks}
    eval_flops = 0.0
    if "xquad" in benchmarks:
        evaluate["xquad"] = _xquad_eval(cfg, base_shape)
        eval_flops += evaluate["xquad"]["flops_per_model"] * models
    if "mmteb" in benchmarks:
        evaluate["mmteb"] = _mmteb_eval(cfg, base_shape)
        eval_flops += evaluate["mmteb"]["flops_per_model"] * models
    evaluate.update({
        "does": f"{models} models ({'base, ' if models else ''}{n_runs} trained) on {', '.join(benchmarks)}",
        "eval_flops": eval_flops,
        "gpu_hours": gpu_hours(eval_flops),
        "gpu_hours_optimistic": gpu_hours(eval_flops, MFU_OPTIMISTIC),
        "wall_hours": gpu_hours(eval_flops) / gpus,
        "method": (
            "documents and queries per task and split from mteb's descriptive statistics (shipped with mteb, no "
            f"download); tokens = texts mteb requests x min(mean characters / {CHARS_PER_TOKEN:g}, max_seq_length), an "
            "upper bound since each distinct text is embedded once per task (12 of "
            "18 tasks are English; non-Latin scripts are undercounted); FLOPs = 2 N T + 4 L T^2 h per text; "
            f"GPU-hours at {MFU:.0%} MFU, compute only (download, tokenisation and scoring are extra); the base "
            "model is counted at the trained models' length; wall_hours = GPU-hours / GPUs with models or task "
            "shards spread over the GPUs (MIRACLRetrievalHardNegatives alone is ~60% of one model's work)"
        ),
    })
    return evaluate


def _disk_stage(
    cfg: Mapping[str, Any],
    vol: _Volumes,
    base_shape: EncoderShape,
    teacher_shape: EncoderShape,
    stages: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``disk`` stage: bytes of every output and cache the earlier ``stages`` produce, and their total."""
    neg, t = cfg["negatives"], cfg["train"]
    rows, requests = vol.rows, vol.requests
    mean_q = vol.mean_syn_query_bytes
    k_neg = neg["num_negatives"] if neg["hard"] else 0
    mean_p = (vol.mean_syn_bytes * vol.syn_rows + ENGLISH_PASSAGE_BYTES * vol.en_rows) / max(rows, 1)
    layer_share = min((t.get("trainable_layers") or base_shape.layers) / base_shape.layers, 1.0)
    trainable_params = base_shape.non_embedding_params * layer_share + (
        0 if t["freeze_embeddings"] else base_shape.params - base_shape.non_embedding_params
    )
    teacher_bytes = 4 * teacher_shape.params if neg["hard"] and neg["teacher"] != "base" else 0
    models, n_runs = stages["evaluate"]["models"], len(stages["train"]["runs"])
    disk = {
        "generated_bytes": round(vol.syn_rows * (vol.mean_syn_bytes + mean_q + ROW_OVERHEAD_BYTES["generated"])),
        "response_cache_bytes": round(requests * (mean_q + ROW_OVERHEAD_BYTES["response"])),
        "prepared_english_bytes": round(
            vol.en_passages * ENGLISH_PASSAGE_BYTES + vol.en_rows * (ENGLISH_QUERY_BYTES + 200)
        ),
        "deduped_bytes": round(rows * (mean_p * 1.5 + mean_q + ROW_OVERHEAD_BYTES["deduped"])),
        "mined_bytes": round(rows * (mean_p * (1 + k_neg) + mean_q + ROW_OVERHEAD_BYTES["mined"])),
        "embedding_cache_bytes": round(
            (vol.pool + requests) * (4 * base_shape.hidden + 32)
            + ((rows + vol.syn_passages + vol.en_passages) * (4 * teacher_shape.hidden + 32) if neg["hard"] else 0)
        ),
        "models_bytes": (models - 1) * (4 * base_shape.params + TOKENIZER_BYTES) + 4 * base_shape.params
        + teacher_bytes,
        "checkpoints_bytes": round(n_runs * 2 * (4 * base_shape.params + 8 * trainable_params)),
        "hf_cache_bytes": (
            (0 if cfg["model"]["base"].startswith("bundled:") else 4 * base_shape.params)
            + teacher_bytes
            + stages["evaluate"].get("mmteb", {}).get("text_bytes", 0)
        ),
    }
    disk["total_bytes"] = sum(disk.values())
    return {
        **disk,
        "does": "outputs under data/ and models/, caches under base.cache_dir and HF_HOME",
        "method": (
            "JSONL rows = text bytes + JSON overhead (ids, provenance); embeddings float32 (dim x 4 + 32-byte key) "
            "per text; models fp32 (4 bytes per parameter + tokenizer); checkpoints: the last 2 per run, weights plus "
            "AdamW moments (8 bytes per trainable parameter); HF cache: base and teacher weights plus MMTEB text "
            f"x {HF_CACHE_BYTES_PER_CHAR} bytes per character. Not sized offline: the hub English datasets (whole "
            "splits are downloaded unless streamed) and Wikipedia (streamed). The DVC cache holds a second copy of "
            "data/ and models/ unless cache.type is a link type"
        ),
    }


def _totals(stages: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    """LLM cost (expected and worst case), GPU-hours over all stages, wall hours on ``gpus`` GPUs, disk."""
    generate, mine, train, evaluate = stages["generate"], stages["mine"], stages["train"], stages["evaluate"]
    totals = {
        "cost_usd": generate["cost_usd"],
        "cap_cost_usd": generate["cap_cost_usd"],
        "gpu_hours": generate["roundtrip_gpu_hours"] + mine["gpu_hours"] + train["gpu_hours"] + evaluate["gpu_hours"],
        "gpu_hours_optimistic": gpu_hours(generate["roundtrip_flops"], MFU_OPTIMISTIC) + mine["gpu_hours_optimistic"]
        + train["gpu_hours_optimistic"] + evaluate["gpu_hours_optimistic"],
        "disk_bytes": stages["disk"]["total_bytes"],
    }
    totals["wall_hours_on_gpus"] = totals["gpu_hours"] / gpus + (generate["wall_hours"] or 0.0)
    return totals


def _assumptions(gpus: int) -> dict[str, Any]:
    """The constants every estimate rests on, and the GPUs assumed in parallel."""
    return {
        "gpu": GPU_NAME,
        "peak_flops_per_s": PEAK_FLOPS_PER_S,
        "mfu_fraction": MFU,
        "mfu_optimistic_fraction": MFU_OPTIMISTIC,
        "gpus": gpus,
        "bytes_per_token": BYTES_PER_TOKEN,
        "chars_per_token": CHARS_PER_TOKEN,
        "request_latency_s": REQUEST_LATENCY_S,
    }


def plan(params: Params | Mapping[str, Any], *, gpus: int = 1) -> dict[str, Any]:
    """Estimate what every stage will do and cost under ``params`` (no data, no network).

    Each stage has its own helper (``_generate_stage``, ``_mine_stage``, ...); this function is the outline.

    Args:
        params: Validated :class:`~retrofit.config.Params`, or a params mapping (defaults fill missing keys; keys
            the config does not know yet, such as ``evaluate.benchmarks``, are read when present).
        gpus: GPUs working in parallel, for wall-clock hours (data-parallel training and sharded evaluation are
            assumed to scale linearly).

    Returns:
        ``{"assumptions", "stages": {"base_model", "generate", "dedupe", "mine", "train", "evaluate", "disk"},
        "totals", "warnings"}``; every stage has ``does`` (one line) and ``method`` (how its numbers are estimated).
    """
    cfg = _raw(params)
    warnings: list[str] = []
    base_shape, teacher_shape = _model_shapes(cfg, warnings)
    vol = _volumes(cfg)
    stages: dict[str, Any] = {
        "base_model": _base_model_stage(cfg, base_shape),
        "generate": _generate_stage(cfg, vol, base_shape),
        "dedupe": _dedupe_stage(vol),
        "mine": _mine_stage(cfg, vol, teacher_shape),
        "train": _train_stage(cfg, vol, base_shape, gpus, warnings),
    }
    stages["evaluate"] = _evaluate_stage(cfg, len(stages["train"]["runs"]), base_shape, gpus)
    stages["disk"] = _disk_stage(cfg, vol, base_shape, teacher_shape, stages)
    return {
        "assumptions": _assumptions(gpus),
        "stages": stages,
        "totals": _totals(stages, gpus),
        "warnings": sorted(set(warnings)),
    }


# ----------------------------------------------------------------------------------------------------------------
# Printing and command line
# ----------------------------------------------------------------------------------------------------------------


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if key.endswith("usd"):
        return f"${v:,.2f}"
    if key.endswith("bytes"):
        for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(v) >= size:
                return f"{v / size:.1f} {unit}"
        return f"{v:.0f} B"
    if "flops" in key:
        return f"{v:.2e}"
    if "hours" in key:
        return f"{v:.2f} h" if v >= 0.01 else f"{v * 3600:.0f} s"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(p: Mapping[str, Any]) -> str:
    """The plan as a plain-text table per stage, with each stage's method underneath."""
    lines = []
    skip = {"does", "method", "runs", "tasks", "xquad", "mmteb", "benchmarks"}
    for stage, s in p["stages"].items():
        lines += ["", f"== {stage}: {s.get('does', '')}"]
        for k, v in s.items():
            if k not in skip and not isinstance(v, (dict, list)):
                lines.append(f"   {k:<34} {_fmt(k, v)}")
        if stage == "train":
            lines.append(f"   {'run':<14} {'rows':>9} {'epochs':>7} {'tokens':>14} {'GPU-h':>7}")
            for name, r in s["runs"].items():
                lines.append(
                    f"   {name:<14} {r['mixture_rows']:>9,} {r['epochs_on_one_gpu'] or 0:>7} {r['train_tokens']:>14,} "
                    f"{r['gpu_hours']:>7.2f}"
                )
        if stage == "evaluate":
            for bench in ("xquad", "mmteb"):
                if bench in s:
                    b = s[bench]
                    lines.append(f"   {bench}: " + ", ".join(
                        f"{k} {_fmt(k, v)}" for k, v in b.items() if not isinstance(v, (dict, list))
                    ))
            if "mmteb" in s:
                lines.append(f"   {'task':<34} {'documents':>10} {'queries':>8} {'tokens':>13} {'GPU-h/model':>11}")
                for name, t in s["mmteb"]["tasks"].items():
                    lines.append(
                        f"   {name:<34} {t['documents']:>10,} {t['queries']:>8,} "
                        f"{t['document_tokens'] + t['query_tokens']:>13,} {t['gpu_hours_per_model']:>11.3f}"
                    )
        lines.append(f"   method: {s.get('method', '')}")
    t = p["totals"]
    a = p["assumptions"]
    lines += [
        "",
        (
            f"== totals: LLM {_fmt('usd', t['cost_usd'])} (worst case {_fmt('usd', t['cap_cost_usd'])}), "
            f"{t['gpu_hours']:.2f} GPU-hours at {a['mfu_fraction']:.0%} MFU ({t['gpu_hours_optimistic']:.2f} at "
            f"{a['mfu_optimistic_fraction']:.0%}) on {a['gpu']}; about {t['wall_hours_on_gpus']:.1f} h wall on "
            f"{a['gpus']} GPU(s) with generation's requests included (compute only: downloads and CPU stages come "
            f"on top); disk {_fmt('bytes', t['disk_bytes'])}"
        ),
    ]
    lines += [f"warning: {w}" for w in p["warnings"]]
    return "\n".join(lines).lstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python tools/plan.py``: print the plan of the active params (optionally with a profile applied)."""
    ap = argparse.ArgumentParser(prog="python tools/plan.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", help="plan params.yaml with this profile merged in (nothing is written)")
    ap.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs in parallel, for wall-clock hours")
    ap.add_argument("--json", type=Path, help="also write the plan as JSON here")
    args = ap.parse_args(argv)
    try:
        import yaml

        path = Path(args.params)
        if not path.is_file():
            raise ParamsError(f"{path}: not found; run from the repository root or pass --params")
        if args.profile:
            _, raw, _ = merge_profile_text(
                path.read_text(encoding="utf-8"), Path(args.profile).read_text(encoding="utf-8"), args.profile
            )
            source = f"{path} + {args.profile}"
        else:
            raw, source = yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path)
        if args.overrides:
            raw = apply_overrides(raw, args.overrides)
        params = validate_params(raw, source=source)
        result = plan(params, gpus=args.gpus)
    except (ParamsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"plan for {source}")
    print(render(result), end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
