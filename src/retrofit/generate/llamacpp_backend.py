"""The ``llamacpp`` runtime of the offline backend: a quantised GGUF run by ik_llama.cpp, with no compiling.

``ik-llama-cpp-python`` (MIT) ships prebuilt AVX2 wheels of the ik_llama.cpp fork. It runs a Q4_K_M GGUF as it
is, with no bf16 and no dequantising, so its speed does not hang on what the CPU computes natively: on one core
Gemma 3 270M took 0.69 CPU s per request, against 0.57 for transformers in native bf16 and 1.58 in fp32, what a CPU
without native bf16 gets (``reports/bench/generators.md``). Two of its Python-level helpers are not used:

- its sampler copies the whole vocabulary into a ctypes array per token, in Python; this module reads the logits
  as a numpy view and takes the argmax (or samples) with numpy;
- its ``detokenize`` decodes each token's bytes on its own, which garbles every character that spans two tokens
  (CJK, Devanagari, Thai); this module joins the raw bytes and decodes once.

Every request starts from an empty KV cache. Reusing the cache of a shared prompt prefix would save prompt time,
but llama.cpp's logits depend on how a prompt is split into batches (up to 0.7 apart here), so an answer would
depend on the request before it, and a resumed run would not reproduce an uninterrupted one. Chat models get their
GGUF's own chat template (``tokenizer.chat_template``, rendered with jinja2 as transformers does). llama.cpp's
own log lines are silenced unless ``RETROFIT_LLAMA_LOG=1``.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.ledger import Ledger

log = logging.getLogger(__name__)


def _api() -> Any:
    """ik_llama.cpp's ctypes module, plus the symbols its bindings leave out (imported on first use)."""
    from ik_llama_cpp import _ctypes_api as C

    lib = C._lib
    if not hasattr(C, "meta_val_str"):
        meta = lib.llama_model_meta_val_str
        meta.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        meta.restype = ctypes.c_int32
        C.meta_val_str = meta
        set_threads = lib.llama_set_n_threads
        set_threads.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
        set_threads.restype = None
        C.set_n_threads = set_threads
        if os.environ.get("RETROFIT_LLAMA_LOG") != "1":
            lib.llama_log_set.argtypes = [_LOG_CALLBACK, ctypes.c_void_p]
            lib.llama_log_set.restype = None
            lib.llama_log_set(_QUIET, None)
    return C


_LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_QUIET = _LOG_CALLBACK(lambda level, text, user: None)  # module-level: the C side keeps the pointer


class LlamaCppModel:
    """One GGUF model and context: tokenize, greedy or sampled decoding with prefix reuse, byte-exact detokenize.

    Args:
        path: The ``.gguf`` file.
        threads: CPU threads for prompt and generation.
        n_ctx: Context length (prompt plus answer).
    """

    def __init__(self, path: Path, threads: int, n_ctx: int = 2048) -> None:
        from ik_llama_cpp._internals import IkContext, IkModel

        self.C = _api()
        self._model = IkModel(str(path))
        # ik_llama.cpp's flash attention asserts on long prompts without AVX-VNNI; it gains little at this size.
        self._ctx = IkContext(self._model, n_ctx=n_ctx, n_threads=threads, flash_attn=False)
        self.n_ctx = n_ctx
        self.n_vocab = self._model.n_vocab
        self._n_ubatch = self._ctx._n_ubatch
        self._pieces = [self._piece(t) for t in range(self.n_vocab)]
        self.newline_ids = np.array([t for t, p in enumerate(self._pieces) if b"\n" in p], dtype=np.int64)
        atexit.register(self.close)  # free the C objects while ctypes still exists (not in interpreter teardown)

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.C.llama_token_to_piece(self._model.model, token, buf, 64, 0, False)
        if n < 0:  # a longer piece: ask again with the size it needs
            buf = ctypes.create_string_buffer(-n)
            n = self.C.llama_token_to_piece(self._model.model, token, buf, -n, 0, False)
        return buf.raw[:n]

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata string (for example ``tokenizer.chat_template``), or None."""
        size = self.C.meta_val_str(self._model.model, key.encode(), None, 0)
        if size < 0:
            return None
        buf = ctypes.create_string_buffer(size + 1)
        self.C.meta_val_str(self._model.model, key.encode(), buf, size + 1)
        return buf.value.decode("utf-8")

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text`` with BOS; ``special`` parses control tokens such as ``<|im_start|>``."""
        return self._model.tokenize(text, add_bos=True, special=special)

    def decode_bytes(self, tokens: Sequence[int]) -> str:
        """Join the tokens' raw bytes, then decode once (multi-token characters survive)."""
        return b"".join(self._pieces[t] for t in tokens).decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        return bool(self.C.llama_token_is_eog(self._model.model, token))

    def _decode(self, tokens: list[int], pos: int) -> np.ndarray:
        """Append ``tokens`` at position ``pos`` (in ``n_ubatch`` chunks); return the last position's logits."""
        from ik_llama_cpp._internals import make_batch_range

        for i in range(0, len(tokens), self._n_ubatch):
            chunk = tokens[i : i + self._n_ubatch]
            batch = make_batch_range(chunk, pos_start=pos + i, logits_last=i + self._n_ubatch >= len(tokens))
            ret = self._ctx.decode(batch)
            self.C.llama_batch_free(batch)
            if ret != 0:
                raise RuntimeError(f"llama_decode failed ({ret}) at position {pos + i}")
        ptr = self.C.llama_get_logits_ith(self._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def complete(
        self,
        prompt: list[int],
        max_tokens: int,
        stop_ids: np.ndarray,
        repetition_penalty: float,
        temperature: float,
        top_p: float,
        rng: np.random.Generator,
    ) -> tuple[list[int], bool]:
        """Continue ``prompt`` until a stop id, an end-of-generation token or ``max_tokens``.

        The repetition penalty is transformers' (CTRL's): each id already in the prompt or the answer has its
        logit divided by the penalty when positive, multiplied when negative.

        Returns:
            ``(answer ids without the stop token, stopped)``; ``stopped`` is False when ``max_tokens`` cut it.
        """
        if len(prompt) + max_tokens > self.n_ctx:
            prompt = prompt[: 1] + prompt[len(prompt) + max_tokens - self.n_ctx + 1 :]
        seen = np.zeros(self.n_vocab, dtype=bool)
        seen[prompt] = True
        out: list[int] = []
        self.C.llama_kv_cache_clear(self._ctx.ctx)  # a fresh prefill: the answer never depends on earlier requests
        logits = self._decode(prompt, 0)
        for step in range(max_tokens):
            if step:
                logits = self._decode(out[-1:], len(prompt) + step - 1)
            if repetition_penalty != 1.0:
                pen = logits[seen]
                logits[seen] = np.where(pen > 0, pen / repetition_penalty, pen * repetition_penalty)
            token = _choose(logits, temperature, top_p, rng)
            if token in stop_ids or self.is_end(token):
                return out, True
            out.append(token)
            seen[token] = True
        return out, False

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads for prompt and generation from the next request on."""
        self.C.set_n_threads(self._ctx.ctx, n, n)

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        self._ctx.close()
        self._model.close()


def _choose(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Argmax when ``temperature`` is 0, else a nucleus sample at ``temperature``."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p)
    cum = np.cumsum(p[order])
    keep = order[: int(np.searchsorted(cum, top_p)) + 1]
    return int(rng.choice(keep, p=p[keep] / p[keep].sum()))


def chat_template(source: str) -> Any:
    """Compile a chat template the way transformers does (a sandboxed jinja2 environment)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)


def render_chat(source: str, messages: list[dict[str, str]]) -> str:
    """Render a chat template for ``messages``, ending where the assistant's answer starts."""
    return chat_template(source).render(messages=messages, add_generation_prompt=True, bos_token="")


class LlamaCppBackend:
    """Few-shot completion or chat with a GGUF model on the CPU through ik_llama.cpp.

    Completion requests (``prompt``) end at the first newline, like the transformers runtime; chat requests
    (``messages``) are rendered with the model's chat template and end at its end-of-turn token.

    Args:
        gguf: The model file.
        spec: The ``generate.local.model`` value it came from, recorded as the model name.
        sha256: The file's sha256, for provenance and the response cache's key.
        threads: CPU threads.
        repetition_penalty: As in :class:`~retrofit.generate.local_backend.LocalBackend`.
        top_p: Nucleus mass when sampling.
        progress: Show a progress bar.
        ledger: Where requests and token counts are accounted.
    """

    name = "local"

    def __init__(
        self,
        gguf: Path,
        spec: str,
        sha256: str,
        threads: int,
        repetition_penalty: float,
        top_p: float,
        progress: bool = True,
        ledger: Ledger | None = None,
    ) -> None:
        self.gguf = Path(gguf)
        self.spec = spec
        self.sha256 = sha256
        self.threads = threads
        self.repetition_penalty = repetition_penalty
        self.top_p = top_p
        self.progress = progress
        self.ledger = ledger
        self._model: LlamaCppModel | None = None
        self._template: Any = None  # the compiled chat template, on the first chat request

    def identity(self) -> dict[str, str]:
        """Backend, runtime, model and the GGUF's sha256; the weights stay quantised, so no dtype choice."""
        return {"backend": "local", "runtime": "llamacpp", "model": self.spec, "sha256": self.sha256, "dtype": "gguf"}

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads from the next request on (the stage decides again each round)."""
        self.threads = n
        if self._model is not None:
            self._model.set_threads(n)

    def _prompt_tokens(self, model: LlamaCppModel, req: GenRequest) -> list[int]:
        if req.messages is None:
            return model.tokenize(req.prompt or "", special=False)
        if self._template is None:  # read and compiled once per model, not per request
            source = model.metadata("tokenizer.chat_template")
            if source is None:
                raise ValueError(f"{self.spec} has no chat template; use few-shot prompts with it")
            self._template = chat_template(source)
        return model.tokenize(self._template.render(messages=req.chat(), add_generation_prompt=True, bos_token=""),
                              special=True)

    def generate(
        self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]
    ) -> list:
        """Answer ``requests`` one by one, in key order.

        Returns:
            An empty list: a local model has no transient failures to report.
        """
        if not requests:
            return []
        if self._model is None:
            self._model = LlamaCppModel(self.gguf, self.threads)
        model = self._model
        no_stop = np.array([], dtype=np.int64)
        bar = tqdm(total=len(requests), desc="generate (llama.cpp)", unit="req", disable=not self.progress)
        for req in sorted(requests, key=lambda r: r.key):
            prompt = self._prompt_tokens(model, req)
            rng = np.random.default_rng(int(hashlib.sha256(req.key.encode()).hexdigest()[:8], 16))
            stops = model.newline_ids if req.messages is None else no_stop
            ids, stopped = model.complete(
                prompt, req.max_tokens, stops, self.repetition_penalty, req.temperature, self.top_p, rng
            )
            text = model.decode_bytes(ids).strip()
            if req.messages is None:
                text = text.split("\n")[0].strip()
            n_out = len(ids) + stopped
            if self.ledger is not None:
                self.ledger.record_answered(len(prompt), n_out)
            on_response(req, GenResponse(req.key, text, "stop" if stopped else "length", len(prompt), n_out, self.spec))
            bar.update(1)
        bar.close()
        return []
