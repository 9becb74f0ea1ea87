"""Frozen-trunk cache: train and evaluate many retrofits of one base model without recomputing the layers they share.

The embedded default trains only the top ``train.trainable_layers`` layers (4 of 12) and freezes the embeddings,
so every retrofitted model and the base itself compute the same hidden states up to the frozen depth for the same
tokens. An evaluation stage with a :class:`TrunkCache` stores those states the first time a batch is encoded and
later stages (other models with the same trunk) load them and run only the layers above. At depth 8 of 12 that
skips about two thirds of every evaluation's encoding.

Correctness does not rest on the params: an entry's key is a hash of

- the trunk's own parameters and buffers (embeddings and the first ``depth`` layers) and the depth, so a model
  whose lower layers moved (another ``trainable_layers``, another base) has its own entries and never reads
  another model's;
- the batch's token ids, attention mask and segment ids, so a hit holds exactly the tokens being encoded;
- what changes the floating-point result: the runtime that computes the trunk (torch's version and the autocast
  dtype and, in fp32, the linear kernel of :mod:`retrofit.embed.linear`; or OpenVINO's version and precision:
  :mod:`retrofit.embed.openvino`).

The thread count is *not* in the key: the trunk forward gives the same bits at 1 and 2 threads, in torch and in
OpenVINO, at both precisions (measured on every evaluation batch by ``bench/eval_backends.py``, and tested in
``tests/embed/test_trunk.py``), so a retrofit evaluated at another thread count than the base still hits the base's
entries.

A hit is therefore the very tensor the forward would have computed: the embeddings and results are
bit-identical with and without the cache (``tests/embed/test_trunk.py``), and a cold cache only costs time. Entries are
written atomically (temporary file, then rename), so concurrent stages (``dvc exp run --jobs``) share the cache
safely. Entries hold float32 packed states, about 1.5 KiB per token at hidden size 384, under
``<base.cache_dir>/trunk/<trunk fingerprint>/``; delete the directory to reclaim the space.

Training uses the same store per text (:class:`FrozenTrunk`): each text's frozen states are computed once, for the
text alone and without dropout, and every step and every later training of the same base reuses them.

The cache wraps the padding-free forward of :mod:`retrofit.embed.unpad`, so it needs a BERT-family encoder; for any
other model :func:`enable_trunk_cache` returns ``None`` and the model keeps its own forward.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from retrofit.embed.linear import kernel_identity
from retrofit.embed.openvino import OpenVINOStack, check_segments
from retrofit.embed.unpad import (
    Packing,
    embed_packed,
    enable_unpadding,
    run_layers,
    unsupported_reason,
)
from retrofit.embed.work import WORK
from retrofit.io import atomic_file
from retrofit.runtime import fp32_linear

log = logging.getLogger(__name__)

#: Bumped whenever the stored layout or the computation behind an entry changes (2: the key names the runtime, not
#: the thread count).
TRUNK_FORMAT = 2


def trunk_fingerprint(backbone: Any, depth: int) -> str:
    """sha256 of the embeddings' and the first ``depth`` encoder layers' parameters and buffers, in order."""
    import torch

    h = hashlib.sha256(f"trunk-v{TRUNK_FORMAT}:depth={depth}".encode())
    modules = [("embeddings", backbone.embeddings)] + [
        (f"layer.{i}", layer) for i, layer in enumerate(backbone.encoder.layer[:depth])
    ]
    for prefix, module in modules:
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            t = tensor.detach().contiguous().cpu()
            h.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TrunkCache:
    """On-disk store of the packed hidden states after the first ``depth`` layers of one trunk.

    Attributes:
        depth: Encoder layers served from the cache.
        directory: Where this trunk's entries live (``None``: nowhere, keys only).
        hits: Batches whose trunk states were loaded.
        misses: Batches whose trunk states were computed (and stored).
    """

    def __init__(self, root: str | Path | None, backbone: Any, depth: int,
                 runtime: OpenVINOStack | None = None) -> None:
        """A cache for ``backbone``'s first ``depth`` layers under ``root/trunk/``.

        Args:
            root: The cache root (``base.cache_dir``); ``None``: keys only, nothing is stored or loaded.
            backbone: The BERT-family backbone.
            depth: Encoder layers served from the cache.
            runtime: An OpenVINO compilation of ``backbone`` split at ``depth`` that computes both parts; ``None``:
                torch's padding-free forward.

        Raises:
            ValueError: ``depth`` is not between 1 and the backbone's layer count.
        """
        n_layers = len(backbone.encoder.layer)
        if not 1 <= depth <= n_layers:
            raise ValueError(f"trunk depth {depth} is not between 1 and the model's {n_layers} layers")
        if runtime is not None and runtime.depth != depth:
            raise ValueError(f"the OpenVINO graphs split at layer {runtime.depth}, not at the trunk depth {depth}")
        self.depth = depth
        self.runtime = runtime
        self.directory = None if root is None else Path(root) / "trunk" / trunk_fingerprint(backbone, depth)[:24]
        self.hits = 0
        self.misses = 0

    def key(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> str:
        """The entry key of one batch under the runtime that computes it (never the thread count: see the module)."""
        import torch

        device = input_ids.device.type
        if self.runtime is not None:
            computed_by = f"{self.runtime.identity}|{device}"
        else:
            autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
            computed_by = f"torch-{torch.__version__}|{device}|{autocast}"
            kernel = kernel_identity(fp32_linear(), autocast is not None) if device == "cpu" else None
            computed_by += f"|{kernel}" if kernel else ""
        h = hashlib.sha256(computed_by.encode())
        for t in (input_ids, attention_mask, token_type_ids):
            if t is None:
                h.update(b"none")
                continue
            t = t.detach().to("cpu", dtype=torch.int64).contiguous()
            h.update(f"{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.pt"

    def load(self, key: str) -> Any | None:
        """The stored ``[tokens, hidden]`` states of ``key``, or ``None`` (also for an unreadable entry)."""
        import torch

        if self.directory is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a torn or foreign file: recompute, never fail the stage on a cache
            log.warning("trunk cache: ignoring unreadable %s (%s)", path, err)
            return None

    def store(self, key: str, states: Any) -> None:
        """Write ``states`` under ``key`` atomically."""
        import torch

        if self.directory is None:
            return
        path = self._path(key)
        with atomic_file(path) as tmp:
            torch.save(states.detach().cpu().clone(), tmp)

    def lower(self, backbone: Any, input_ids: Any, attention_mask: Any, packing: Packing,
              token_type_ids: Any = None) -> Any:
        """The packed ``[tokens, hidden]`` states after the first ``depth`` layers, computed (by the runtime)."""
        if self.runtime is not None:
            check_segments(token_type_ids)
            return self.runtime.lower_packed(input_ids, attention_mask, packing)
        h = embed_packed(backbone, packing, input_ids, token_type_ids)
        return run_layers(backbone.encoder.layer[: self.depth], h, packing)

    def hidden_states(self, backbone: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """:func:`retrofit.embed.unpad.unpadded_hidden_states`, with the first ``depth`` layers from the cache."""
        packing = Packing.of(attention_mask)
        key = self.key(input_ids, attention_mask, token_type_ids)
        h = self.load(key)
        if h is not None and h.shape[0] == packing.idx.shape[0]:
            self.hits += 1
            WORK.skip(attention_mask.sum(1).tolist(), self.depth)
            h = h.to(input_ids.device)
        else:
            self.misses += 1
            h = self.lower(backbone, input_ids, attention_mask, packing, token_type_ids)
            self.store(key, h)
        if self.runtime is not None:
            return self.runtime.upper_packed(h, attention_mask, packing)
        return packing.pad(run_layers(backbone.encoder.layer[self.depth :], h, packing))


def enable_trunk_cache(
    model: Any, root: str | Path, depth: int, openvino: dict[str, Any] | None = None
) -> TrunkCache | None:
    """Serve a SentenceTransformer's first ``depth`` layers from a :class:`TrunkCache` under ``root``, in place.

    Args:
        model: A ``SentenceTransformer`` whose first module is a BERT-family ``Transformer``.
        root: The cache root (``base.cache_dir``).
        depth: Frozen encoder layers shared with the other models (``evaluate.trunk_layers``), at least 1.
        openvino: ``{"bf16": bool, "threads": int}`` to compute both parts with OpenVINO
            (:class:`~retrofit.embed.openvino.OpenVINOStack`); ``None``: torch.

    Returns:
        The cache (its ``hits``/``misses`` count batches), or ``None`` when ``depth`` exceeds the model's layers or
        the model cannot use the padding-free forward (the reason is logged; the model is left unchanged).
    """
    backbone = getattr(model[0], "auto_model", None)
    reason = "the first module has no auto_model" if backbone is None else unsupported_reason(backbone)
    if reason:
        log.info("trunk cache: off: %s", reason)
        return None
    n_layers = len(backbone.encoder.layer)
    if depth > n_layers:
        log.info("trunk cache: off: depth %d exceeds the model's %d layers", depth, n_layers)
        return None
    runtime = OpenVINOStack(backbone, depth, **openvino) if openvino is not None else None
    cache = TrunkCache(root, backbone, depth, runtime)
    enable_unpadding(model, hidden_states=cache.hidden_states)
    log.info("trunk cache: layers 1-%d of %d from %s", depth, n_layers, cache.directory)
    return cache


class FrozenTrunk:
    """Training's frozen lower layers, computed once per text and reused by every step and every training.

    With ``train.trainable_layers`` leaving the embeddings and the first ``depth`` layers frozen, their output for a
    text never changes while a model trains, and every training of one base model computes the same states for the
    same text. This forward computes them once per text, for the text *alone* (so the bits never depend on which
    texts share its batch, which step it came in or whether the entry was already there), in inference mode (the
    frozen layers run without dropout: a frozen trunk is a fixed feature extractor, so only the trained layers
    drop), and without gradients; the trained layers above run on the batch as before. Entries live in memory for the
    run and, with a ``root``, in the :class:`TrunkCache` under it, keyed by the text's tokens, the trunk's weights
    and the runtime, so the next training of the same base reads them.

    Attributes:
        depth: Frozen encoder layers served per text.
        hits: Texts whose trunk states were reused (from memory or disk).
        misses: Texts whose trunk states were computed.
    """

    def __init__(self, backbone: Any, depth: int, root: str | Path | None = None, memo_texts: int = 8192) -> None:
        """``memo_texts``: the most texts kept in memory (the oldest go first; the store under ``root`` keeps them
        all): a training that sees millions of texts must not hold them all."""
        self.depth = depth
        self.store = TrunkCache(root, backbone, depth)
        self.memo: dict[str, Any] = {}
        self.memo_texts = memo_texts
        self.hits = 0
        self.misses = 0

    def _row_states(self, backbone: Any, ids: Any, segments: Any) -> tuple[Any, bool]:
        """The frozen layers' ``[tokens, hidden]`` states of one text's real tokens, and whether they were reused
        (remembered or loaded) rather than computed."""
        import torch

        ones = torch.ones_like(ids)
        key = self.store.key(ids, ones, segments)
        if key in self.memo:
            return self.memo[key], True
        h = self.store.load(key)
        reused = h is not None and h.shape[0] == ids.shape[1]
        if not reused:
            modules = [backbone.embeddings, *backbone.encoder.layer[: self.depth]]
            modes = [m.training for m in modules]
            try:
                for m in modules:
                    m.eval()
                with torch.no_grad():
                    h = self.store.lower(backbone, ids, ones, Packing.of(ones), segments).detach().cpu()
            finally:
                for m, mode in zip(modules, modes, strict=True):
                    m.train(mode)
            self.store.store(key, h)
        self.memo[key] = h
        if len(self.memo) > self.memo_texts:
            del self.memo[next(iter(self.memo))]  # dicts keep insertion order: the oldest entry
        return h, reused

    def hidden_states(self, backbone: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """:func:`retrofit.embed.unpad.unpadded_hidden_states` with the first ``depth`` layers served per text."""
        import torch

        packing = Packing.of(attention_mask)
        real = attention_mask.bool()
        states, reused = [], []
        for row in range(input_ids.shape[0]):
            ids = input_ids[row][real[row]][None]
            segments = None if token_type_ids is None else token_type_ids[row][real[row]][None]
            h, hit = self._row_states(backbone, ids, segments)
            states.append(h)
            if hit:
                reused.append(ids.shape[1])
        self.hits += len(reused)
        self.misses += len(states) - len(reused)
        WORK.skip(reused, self.depth)
        h = torch.cat(states).to(input_ids.device)  # row-major real tokens: the packing's order
        return packing.pad(run_layers(backbone.encoder.layer[self.depth :], h, packing))


def frozen_depth(model: Any) -> int:
    """The encoder layers, from the bottom, that a SentenceTransformer trains none of, with its embeddings frozen too:
    the part whose states for a text never change while it trains (0 when any embedding parameter trains)."""
    backbone = getattr(model[0], "auto_model", None)
    if backbone is None or any(p.requires_grad for p in backbone.embeddings.parameters()):
        return 0
    depth = 0
    for layer in backbone.encoder.layer:
        if any(p.requires_grad for p in layer.parameters()):
            break
        depth += 1
    return depth


def enable_frozen_trunk(model: Any, depth: int, root: str | Path | None = None) -> FrozenTrunk | None:
    """Train a SentenceTransformer with its first ``depth`` layers served by a :class:`FrozenTrunk`, in place.

    Call it after freezing: the embeddings and the first ``depth`` layers must have no trainable parameter.

    Returns:
        The trunk (its ``hits``/``misses`` count texts), or ``None`` when ``depth`` is 0 or not below the model's
        layer count, or the model cannot use the padding-free forward (the reason is logged; the model is unchanged).

    Raises:
        ValueError: A parameter of the frozen part is trainable.
    """
    backbone = getattr(model[0], "auto_model", None)
    reason = "the first module has no auto_model" if backbone is None else unsupported_reason(backbone)
    if reason or not 0 < depth < len(backbone.encoder.layer):
        log.info("frozen trunk: off: %s", reason or f"depth {depth}")
        return None
    frozen = [backbone.embeddings, *backbone.encoder.layer[:depth]]
    if any(p.requires_grad for m in frozen for p in m.parameters()):
        raise ValueError(f"frozen trunk: the embeddings and layers 1-{depth} must be frozen before it is enabled")
    trunk = FrozenTrunk(backbone, depth, root)
    enable_unpadding(model, hidden_states=trunk.hidden_states)
    log.info("frozen trunk: layers 1-%d of %d once per text%s", depth, len(backbone.encoder.layer),
             f", shared under {trunk.store.directory}" if root is not None else "")
    return trunk
