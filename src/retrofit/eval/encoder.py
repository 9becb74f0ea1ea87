"""The encoder that every evaluation runs through: explicit E5 prompts, an in-memory embedding cache, bf16 by CPU.

Why a custom encoder rather than ``mteb.evaluate(SentenceTransformer(...))``:

- *Prompts.* multilingual-e5 needs ``"query: "`` before queries and ``"passage: "`` before passages.
  sentence-transformers 6 adds an empty ``"document"`` prompt to every model it loads, and mteb's
  ``SentenceTransformerEncoderWrapper`` looks prompts up by mteb's prompt type (``"document"``, never
  ``"passage"``), so the stock path silently encodes passages with *no* prefix. :class:`PromptCachedEncoder`
  resolves both prompts once (:func:`resolve_prompts`) and passes them explicitly to every ``encode`` call.
- *Speed.* The same texts recur across tasks and families (a German passage is in ``mono/de``, ``cross/en-de``
  and the pooled corpus). :class:`PromptCachedEncoder` keeps every embedding in memory keyed by
  ``(prompt, text)``, so each unique text is encoded once.
- *Symmetric tasks* (bitext mining, STS, classification, clustering: mteb's ``prompt_type=None``) take the query
  prompt, the e5 authors' rule, except the tasks in ``symmetric_prompts``: an evaluation compared with published
  scores runs each task under the protocol those scores had (mteb 1.18 and later put no prefix there;
  :data:`retrofit.eval.official.SYMMETRIC_PROMPTS`, :data:`retrofit.eval.beyond.SYMMETRIC_PROMPTS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ScoringFunction
from mteb.types import PromptType
from tqdm.auto import tqdm

from retrofit.config import ParamsError
from retrofit.embed.openvino import OpenVINOStack, unavailable_reason
from retrofit.embed.encoder import token_lengths
from retrofit.embed.linear import use_kernel
from retrofit.embed.trunk import TrunkCache, enable_trunk_cache
from retrofit.embed.unpad import enable_unpadding
from retrofit.io import fingerprint_model_dir
from retrofit.models.load import check_model_dir
from retrofit.runtime import fp32_linear, inference_autocast

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TextEncoder(Protocol):
    """What :class:`PromptCachedEncoder` needs from a model: a ``SentenceTransformer`` satisfies it."""

    prompts: dict[str, str]

    def encode(self, inputs: list[str], *, prompt: str, batch_size: int, show_progress_bar: bool) -> Any:
        """Embed ``prompt + text`` for each text; returns an array-like of shape ``(len(inputs), dim)``."""
        ...


def resolve_prompts(prompts: Mapping[str, str | None] | None) -> tuple[str, str]:
    """Pick the query and passage prompts from a sentence-transformers ``prompts`` dict.

    The passage prompt is the first *non-empty* one among ``"document"``, ``"passage"`` and ``"corpus"``:
    sentence-transformers 6 adds ``"document": ""`` to every model it loads, which must not hide a saved
    ``"passage": "passage: "``.

    Args:
        prompts: The model's ``prompts`` (may be ``None`` or empty).

    Returns:
        ``(query_prompt, passage_prompt)``; ``""`` where the model has none.
    """
    prompts = prompts or {}
    query = prompts.get("query") or ""
    passage = next((p for key in ("document", "passage", "corpus") if (p := prompts.get(key))), "")
    if bool(query) != bool(passage):
        log.warning("model prompts are one-sided (query=%r, passage=%r); check the model config", query, passage)
    return query, passage


class PromptCachedEncoder(AbsEncoder):
    """mteb encoder around a sentence-transformers model: explicit e5 prompts and an in-memory embedding cache.

    Every text is embedded at most once per instance: embeddings are kept keyed by ``(prompt, text)``, so the
    mono, cross and pooled subsets share them. ``prompt_type=None`` (mteb's symmetric tasks) uses the query
    prompt, as the e5 authors recommend.

    Attributes:
        model: The wrapped model.
        query_prompt: Prepended to queries.
        passage_prompt: Prepended to passages.
        trunk: The model's frozen-trunk cache, when :func:`load_encoder` enabled one.
        n_encoded: Texts actually passed to the model so far.
        n_requested: Texts requested by mteb so far (hits plus misses).
    """

    def __init__(
        self,
        model: TextEncoder,
        meta: ModelMeta,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = True,
        bf16: bool = False,
        trunk: TrunkCache | None = None,
        backend: str = "torch",
        symmetric_prompts: Mapping[str, str] | None = None,
    ) -> None:
        """Wrap ``model``.

        Args:
            model: A loaded ``SentenceTransformer`` (or anything with its ``prompts`` and ``encode``).
            meta: The mteb metadata results are filed under; its name and revision must identify the weights.
            batch_size: Texts per forward pass.
            show_progress_bar: Show a tqdm bar while encoding.
            bf16: Encode under bf16 autocast (see :func:`retrofit.runtime.inference_autocast`).
            trunk: The frozen-trunk cache :func:`~retrofit.embed.trunk.enable_trunk_cache` put on ``model``, if any (its
                hit counts go into ``timing.json``).
            backend: ``"torch"`` or ``"openvino"``: what computes the model's forward (recorded in ``timing.json``);
                torch runs under bf16 autocast when ``bf16``, OpenVINO was compiled for its precision already.
            symmetric_prompts: ``{mteb task name: prompt}`` for symmetric tasks that do not take the query prompt.
        """
        self.model = model
        self.bf16 = bf16
        self.mteb_model_meta = meta
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.query_prompt, self.passage_prompt = resolve_prompts(getattr(model, "prompts", None))
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.trunk = trunk
        self.backend = backend
        self.n_encoded = 0
        self.n_requested = 0
        self.symmetric_prompts = dict(symmetric_prompts or {})

    def prompt_for(self, prompt_type: PromptType | None, task: str | None = None) -> str:
        """The prompt prepended for ``prompt_type`` in mteb task ``task``.

        ``None`` (a symmetric task) takes the task's entry of ``symmetric_prompts``, or else the query prompt.
        """
        if prompt_type is None and task in self.symmetric_prompts:
            return self.symmetric_prompts[task]
        return self.passage_prompt if prompt_type == PromptType.document else self.query_prompt

    def precompute(self, texts: Iterable[str], prompt_type: PromptType | None, task: str | None = None) -> int:
        """Embed the texts not cached yet, longest token count first (little padding per batch), with a progress bar.

        Args:
            texts: Texts to embed.
            prompt_type: Query, document or ``None`` (a symmetric task's sentences).
            task: The mteb task the texts belong to (:meth:`prompt_for`).

        Returns:
            How many texts were newly embedded.
        """
        prompt = self.prompt_for(prompt_type, task)
        todo = sorted({t for t in texts if (prompt, t) not in self._cache})
        if not todo:
            return 0
        if hasattr(self.model, "preprocess"):  # longest token count first: 32% of XQuAD's tokens were padding by characters
            lengths = token_lengths(self.model, todo, prompt)  # (len(todo),)
            todo = [todo[i] for i in np.lexsort((np.arange(len(todo)), -lengths))]
        else:
            todo.sort(key=lambda t: -len(t))
        label = {PromptType.document: "passages", PromptType.query: "queries"}.get(prompt_type, "sentences")
        with tqdm(total=len(todo), desc=f"Encoding {label}", unit="text", disable=not self.show_progress_bar) as bar:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                autocast = self.bf16 and self.backend == "torch"
                with inference_autocast(autocast, str(getattr(self.model, "device", "cpu"))):
                    emb = self.model.encode(chunk, prompt=prompt, batch_size=len(chunk), show_progress_bar=False)
                emb = np.asarray(emb, dtype=np.float32)  # (len(chunk), dim)
                if emb.shape[0] != len(chunk):
                    raise RuntimeError(f"model returned {emb.shape[0]} embeddings for {len(chunk)} texts")
                for text, row in zip(chunk, emb, strict=True):
                    self._cache[(prompt, text)] = row
                bar.update(len(chunk))
        self.n_encoded += len(todo)
        return len(todo)

    def encode_texts(self, texts: Sequence[str], prompt_type: PromptType | None, task: str | None = None) -> np.ndarray:
        """Embeddings for ``texts`` of mteb task ``task`` (cached ones reused), shape ``(len(texts), dim)``."""
        prompt = self.prompt_for(prompt_type, task)
        self.n_requested += len(texts)
        self.precompute(texts, prompt_type, task)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[(prompt, t)] for t in texts])

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """mteb's ``EncoderProtocol.encode``: embed the ``text`` column of mteb's dataloader."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.encode_texts(texts, prompt_type, task_metadata.name)


def load_encoder(
    model_path: Path,
    model_name: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    bf16: bool = False,
    max_seq_length: int | None = None,
    trunk_layers: int = 0,
    cache_dir: str | Path | None = None,
    backend: str = "torch",
    symmetric_prompts: Mapping[str, str] | None = None,
) -> PromptCachedEncoder:
    """Load a local sentence-transformers model (no hub calls) and wrap it for mteb.

    A BERT-family model encodes with the padding-free forward (:mod:`retrofit.embed.unpad`) whatever ``trunk_layers``
    says, so the frozen-trunk cache (:mod:`retrofit.embed.trunk`) changes the time an evaluation takes, never its numbers.

    Args:
        model_path: A sentence-transformers model directory.
        model_name: The name results are filed under (letters, digits, ``.``, ``_``, ``-``); mteb sees
            ``retrofit/<model_name>`` with the weights' content hash as the revision.
        batch_size: Texts per forward pass.
        device: torch device; ``None`` lets sentence-transformers choose.
        bf16: Encode under bf16 autocast.
        max_seq_length: Tokens kept per text, overriding the length saved with the model (``evaluate.max_seq_length``):
            the train stage saves its training length (e.g. 128), and every model must be scored under one
            condition. ``None`` keeps the saved length.
        trunk_layers: Lower encoder layers served from the frozen-trunk cache (``evaluate.trunk_layers``); 0 off.
        cache_dir: The cache root (``base.cache_dir``); needed when ``trunk_layers`` is set.
        backend: ``evaluate.backend``: ``"torch"``, ``"openvino"`` (:mod:`retrofit.embed.openvino`), or ``"auto"``
            (OpenVINO where it is installed and supports the model, else torch; the choice is logged).
        symmetric_prompts: ``{mteb task name: prompt}`` where a symmetric task does not take the query prompt
            (:class:`PromptCachedEncoder`).

    Returns:
        The wrapped model.

    Raises:
        AssetError: ``model_path`` is not a sentence-transformers directory with weights.
        ValueError: ``model_name`` has characters that are not safe in a path.
        ParamsError: ``max_seq_length`` exceeds the model's position embeddings.
    """
    from sentence_transformers import SentenceTransformer

    model_path = Path(model_path)
    check_model_dir(model_path)
    if not _MODEL_NAME_RE.match(model_name):
        raise ValueError(f"model_name {model_name!r}: use letters, digits, '.', '_' and '-' only")
    model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
    if max_seq_length is not None:
        limit = _position_limit(model)
        if limit is not None and max_seq_length > limit:
            raise ParamsError(
                f"evaluate.max_seq_length {max_seq_length} exceeds what {model_path} can encode ({limit} tokens: "
                "its position embeddings); lower it"
            )
        model.max_seq_length = max_seq_length
    meta = ModelMeta.create_empty(
        overwrites={
            "name": f"retrofit/{model_name}",
            "revision": fingerprint_model_dir(model_path)[:16],
            "embed_dim": model.get_embedding_dimension(),
            "max_tokens": model.max_seq_length,
            "similarity_fn_name": ScoringFunction.COSINE,
            "framework": ["Sentence Transformers", "PyTorch"],
        }
    )
    backend = resolve_backend(backend, model, bf16)
    openvino = None
    if backend == "openvino":
        import torch

        openvino = {"bf16": bf16, "threads": torch.get_num_threads()}
    else:
        use_kernel(model, fp32_linear())
    trunk = None
    if trunk_layers:
        if cache_dir is None:
            raise ValueError("load_encoder: trunk_layers needs a cache_dir")
        trunk = enable_trunk_cache(model, cache_dir, trunk_layers, openvino)
    if trunk is None:
        if openvino is not None:
            enable_unpadding(model, hidden_states=OpenVINOStack(model[0].auto_model, 0, **openvino).hidden_states)
        else:
            enable_unpadding(model)
    encoder = PromptCachedEncoder(model, meta, batch_size=batch_size, bf16=bf16, trunk=trunk, backend=backend,
                                  symmetric_prompts=symmetric_prompts)
    log.info(
        "loaded %s as %s@%s on %s; query prompt %r, passage prompt %r; max_seq_length %d",
        model_path, meta.name, meta.revision, backend, encoder.query_prompt, encoder.passage_prompt,
        model.max_seq_length,
    )
    return encoder


def resolve_backend(setting: str, model: Any, bf16: bool = False) -> str:
    """``evaluate.backend`` for ``model``: ``"auto"`` is OpenVINO in fp32 where it is installed and supports the model.

    The rule behind ``auto`` (``reports/bench/eval_backends.md``): a faster runtime is adopted only where every
    task's main score stays within 0.01 (x100) of torch's at the same precision. OpenVINO fp32 does; OpenVINO bf16,
    although faster than torch's bf16 autocast, moves some tasks by more (the two round differently), so under
    bf16 ``auto`` keeps torch.

    Raises:
        ParamsError: ``"openvino"`` was asked for and cannot serve the model (the reason is named).
    """
    if setting == "torch":
        return "torch"
    backbone = getattr(model[0], "auto_model", None)
    reason = "the first module has no auto_model" if backbone is None else unavailable_reason(backbone)
    if reason is None and (setting == "openvino" or not bf16):
        return "openvino"
    if setting == "openvino":
        raise ParamsError(f"evaluate.backend openvino: {reason}; use torch or auto")
    reason = reason or "bf16: OpenVINO's bf16 scores differ from torch's by more than the 0.01 rule"
    log.info("evaluate.backend auto: torch (%s)", reason)
    return "torch"


def _position_limit(model: Any) -> int | None:
    """Tokens a transformer can position: ``max_position_embeddings``, less XLM-R's padding offset."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if config is None or getattr(config, "max_position_embeddings", None) is None:
        return None
    offset = config.pad_token_id + 1 if getattr(config, "model_type", "") in ("xlm-roberta", "roberta") else 0
    return int(config.max_position_embeddings) - offset
