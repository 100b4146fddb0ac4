"""What the upstream span learns from the answer: the model that answered and the token usage.

The usage comes from the same extractors recording uses (their `TokenUsage` records are the
per-format rules of docs/recording.md, already applied): through the recorder's tap when the
interception is recorded, else from an extractor of the watch's own. The model is read from the
first event (or the body) that names it. Nothing else of the answer is kept: no content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aibridged.intercept.extract import Extractor, extractor_for
from aibridged.intercept.relay import Observer
from aibridged.intercept.routes import Api
from aibridged.intercept.sse import SSEEvent
from aibridged.records import Extracted, TokenUsage
from aibridged.safe import bounded_text
from aibridged.tracing import names

MAX_MODEL_CHARS = 256


@dataclass(slots=True)
class Usage:
    """The answer's usage so far: the sum of its `TokenUsage` records (each one adds)."""

    input: int = 0  # without cached input, as recorded
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    response_id: str = ""
    seen: bool = False

    def add(self, record: TokenUsage) -> None:
        self.input += record.input
        self.output += record.output
        self.cache_read += record.cache_read
        self.cache_write += record.cache_write
        self.response_id = self.response_id or record.response_id
        self.seen = True

    def attributes(self) -> dict[str, int | str]:
        if not self.seen:
            return {}
        found: dict[str, int | str] = {
            # The convention's input count includes cache reads and writes.
            names.GEN_AI_INPUT_TOKENS: self.input + self.cache_read + self.cache_write,
            names.GEN_AI_OUTPUT_TOKENS: self.output,
            names.GEN_AI_CACHE_READ: self.cache_read,
            names.GEN_AI_CACHE_CREATION: self.cache_write,
        }
        if self.response_id:
            found[names.GEN_AI_RESPONSE_ID] = bounded_text(self.response_id, MAX_MODEL_CHARS)
        return found


class ResponseWatch:
    """The relay's observer while tracing: hands everything to `inner` (recording) first."""

    __slots__ = ("_extractor", "_inner", "model", "usage")

    def __init__(self, inner: Observer | None, api: Api, *, stream: bool, usage: Usage) -> None:
        self._inner = inner
        self.usage = usage
        self.model = ""
        # Recorded interceptions report their usage through the recorder's tap; the others
        # need an extractor here to learn it.
        self._extractor: Extractor | None = None
        if inner is None:
            self._extractor = extractor_for(api, stream=stream, emit=self._emitted)

    def _emitted(self, record: Extracted) -> None:
        if isinstance(record, TokenUsage):
            self.usage.add(record)

    def on_event(self, event: SSEEvent) -> None:
        if self._inner is not None:
            self._inner.on_event(event)
        try:
            if self._extractor is not None:
                self._extractor.on_event(event)
            if not self.model and '"model"' in event.data:
                self.model = _model_of(json.loads(event.data))
        except (ValueError, RecursionError):
            pass  # not JSON: nothing to learn (recording counts malformed events itself)

    def on_body(self, body: bytes) -> None:
        if self._inner is not None:
            self._inner.on_body(body)
        try:
            if self._extractor is not None:
                self._extractor.on_body(body)
            if not self.model and b'"model"' in body:
                self.model = _model_of(json.loads(body))
        except (ValueError, RecursionError):
            pass

    def finish(self) -> None:
        """The answer ended: what the extractor still held (usage included) comes out."""
        if self._extractor is not None:
            self._extractor.finish()
            self._extractor = None


def _model_of(data: Any) -> str:
    """The answering model: top level (Chat Completions, a whole Messages or Responses body),
    in `message` (Messages `message_start`) or in `response` (Responses events)."""
    if not isinstance(data, dict):
        return ""
    for holder in (data, data.get("message"), data.get("response")):
        if isinstance(holder, dict):
            model = holder.get("model")
            if isinstance(model, str) and model:
                return bounded_text(model, MAX_MODEL_CHARS)
    return ""
