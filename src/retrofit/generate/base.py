"""Backend-neutral request and response types for LLM generation.

A :class:`GenRequest` is fully determined by its content; its :attr:`GenRequest.key` (a sha256 over the canonical
JSON of every field that can change the answer) keys the append-only response cache, so a rerun never sends a
finished request again. Backends implement :class:`Backend`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class GenRequest:
    """One generation request.

    Args:
        prompt: Raw completion prompt (few-shot text), used by completion-style backends such as ``local``.
        messages: Chat messages (``[{"role": ..., "content": ...}]``), used by chat backends such as ``openai``.
        max_tokens: Upper bound on generated tokens.
        temperature: Sampling temperature; 0 means greedy.
        seed: Sampling seed forwarded to the backend where supported.
        stop: Stop strings.
        meta: Bookkeeping that does not change the answer (example id, language, task type); excluded from the key.
    """

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """sha256 of everything that can change the response (not ``meta``)."""
        body = {k: v for k, v in asdict(self).items() if k != "meta"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def chat(self) -> list[dict[str, str]]:
        """The messages as the OpenAI chat format expects them."""
        if self.messages is None:
            assert self.prompt is not None, "a request needs a prompt or messages"
            return [{"role": "user", "content": self.prompt}]
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class GenResponse:
    """One raw backend answer, exactly as cached before any parsing.

    Args:
        key: The request's key.
        text: Generated text (may be empty).
        finish_reason: ``stop``, ``length`` (truncated) or the backend's own reason.
        prompt_tokens: Input tokens billed or counted.
        completion_tokens: Output tokens billed or counted.
        model: The model that answered.
    """

    key: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> GenResponse:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


class Backend(Protocol):
    """What the generate stage needs from an LLM backend."""

    #: ``local`` or ``openai``; recorded in every output row.
    name: str

    def identity(self) -> dict[str, str]:
        """Backend, model and the model file's sha256 or the API model version, for provenance."""
        ...

    def generate(self, requests: Sequence[GenRequest], on_response: Callable[[GenRequest, GenResponse], None]) -> None:
        """Answer every request, calling ``on_response`` once per finished request (in any order).

        ``on_response`` writes the raw answer to the response cache before anything parses it, so a crash loses
        at most the requests still in flight.
        """
        ...
