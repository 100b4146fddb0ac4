"""Anthropic Messages: the prompt and tool result of a request, the records of an answer.

Streams (docs.anthropic.com/en/docs/build-with-claude/streaming): ``message_start`` carries the
message id and the input usage, recorded at once; each ``message_delta`` carries the output
tokens so far, recorded as its own usage with input 0 (as Coder records them). ``thinking`` and
``tool_use`` content blocks are accumulated from their deltas and recorded at their
``content_block_stop``: a block the stream never closed is dropped, never recorded half.
``redacted_thinking`` holds nothing readable and is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aibridged.intercept.extract.base import NO_FACTS, Emit, RequestFacts
from aibridged.intercept.extract.common import (
    dumps,
    event_type,
    extras,
    integer,
    last_user_text,
    loads,
    mapping,
    string,
)
from aibridged.intercept.sse import SSEEvent
from aibridged.records import Extracted, ModelThought, TokenUsage, ToolUsage

THINKING = "thinking"


def request_facts(parsed: Mapping[str, Any]) -> RequestFacts:
    messages = parsed.get("messages")
    last = mapping(messages[-1]) if isinstance(messages, list) and messages else None
    if last is None or last.get("role") != "user":
        return NO_FACTS
    content = last.get("content")
    return RequestFacts(
        prompt=last_user_text(content, "text"), correlating_call_id=_tool_use_id(content)
    )


def _tool_use_id(content: Any) -> str | None:
    """The last ``tool_result`` block's ``tool_use_id`` (one without an id is passed over)."""
    if not isinstance(content, list):
        return None
    for block in reversed(content):
        if isinstance(block, Mapping) and block.get("type") == "tool_result":
            call_id = string(block.get("tool_use_id"))
            if call_id:
                return call_id
    return None


def message_usage(message_id: str, usage: Mapping[str, Any]) -> TokenUsage:
    """A blocking body's usage, or a stream's from ``message_start``: cache reads and writes are
    reported apart from ``input_tokens`` already."""
    cache_read = integer(usage, "cache_read_input_tokens")
    cache_write = integer(usage, "cache_creation_input_tokens")
    creation = mapping(usage.get("cache_creation"))
    server_tools = mapping(usage.get("server_tool_use"))
    return TokenUsage(
        response_id=message_id,
        input=integer(usage, "input_tokens"),
        output=integer(usage, "output_tokens"),
        cache_read=cache_read,
        cache_write=cache_write,
        extra=extras(
            (
                ("web_search_requests", integer(server_tools, "web_search_requests")),
                ("cache_creation_input", cache_write),
                ("cache_read_input", cache_read),
                ("cache_ephemeral_1h_input", integer(creation, "ephemeral_1h_input_tokens")),
                ("cache_ephemeral_5m_input", integer(creation, "ephemeral_5m_input_tokens")),
            )
        ),
    )


def _body_records(body: Mapping[str, Any]) -> list[Extracted]:
    message_id = string(body.get("id"))
    records: list[Extracted] = []
    usage = mapping(body.get("usage"))
    if usage is not None:
        records.append(message_usage(message_id, usage))
    content = body.get("content")
    for block in content if isinstance(content, list) else ():
        record = _block_record(message_id, block)
        if record is not None:
            records.append(record)
    return records


def _block_record(message_id: str, block: Any) -> Extracted | None:
    block = mapping(block)
    if block is None:
        return None
    kind = block.get("type")
    if kind == THINKING:
        text = string(block.get("thinking"))
        return ModelThought(message_id, text, THINKING) if text else None
    if kind == "tool_use":
        name, call_id = string(block.get("name")), string(block.get("id"))
        tool_input = block.get("input")
        if not name or not call_id:
            return None
        return ToolUsage(message_id, name, call_id, dumps(tool_input) if tool_input else "{}")
    return None


@dataclass(slots=True)
class _Block:
    """A content block being streamed: `tool_use` keeps its id and name for the record."""

    kind: str
    name: str = ""
    call_id: str = ""
    start_input: Any = None
    parts: list[str] = field(default_factory=list)


# The deltas of the blocks kept; every other delta (text, signature, citations) is not parsed.
_DELTA_MARKS = ('"thinking_delta"', '"input_json_delta"')


class MessagesExtractor:
    __slots__ = ("_blocks", "_emit", "_message_id")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._message_id = ""
        self._blocks: dict[int, _Block] = {}  # open thinking / tool_use blocks by index

    def on_event(self, event: SSEEvent) -> None:
        name, parsed = event_type(event)
        if name == "content_block_delta":
            # The most frequent event by far: parsed only when it can add to a block we keep.
            if self._blocks and any(mark in event.data for mark in _DELTA_MARKS):
                self._delta(parsed if parsed is not None else loads(event.data))
        elif name == "content_block_stop":
            if self._blocks:
                self._stop(parsed if parsed is not None else loads(event.data))
        elif name == "content_block_start":
            self._start(parsed if parsed is not None else loads(event.data))
        elif name == "message_start":
            self._message_start(parsed if parsed is not None else loads(event.data))
        elif name == "message_delta":
            self._message_delta(parsed if parsed is not None else loads(event.data))

    def on_body(self, body: bytes) -> None:
        parsed = mapping(loads(body))
        if parsed is not None:
            for record in _body_records(parsed):
                self._emit(record)

    def finish(self) -> None:
        # Usage went out as it came; a block still open was cut and is dropped.
        self._blocks.clear()

    def _message_start(self, data: Any) -> None:
        found = mapping(data)
        message = mapping(found.get("message")) if found else None
        if message is None:
            return
        self._message_id = string(message.get("id"))
        usage = mapping(message.get("usage"))
        if usage is not None:
            self._emit(message_usage(self._message_id, usage))

    def _message_delta(self, data: Any) -> None:
        found = mapping(data)
        usage = mapping(found.get("usage")) if found else None
        if usage is not None:
            # Only the output count changes after message_start.
            self._emit(TokenUsage(self._message_id, 0, integer(usage, "output_tokens")))

    def _start(self, data: Any) -> None:
        found = mapping(data)
        block = mapping(found.get("content_block")) if found else None
        index = found.get("index") if found else None
        if block is None or type(index) is not int:
            return
        kind = block.get("type")
        if kind == THINKING:
            opened = _Block(THINKING)
            if text := string(block.get("thinking")):
                opened.parts.append(text)
            self._blocks[index] = opened
        elif kind == "tool_use":
            self._blocks[index] = _Block(
                "tool_use",
                name=string(block.get("name")),
                call_id=string(block.get("id")),
                start_input=block.get("input"),
            )

    def _delta(self, data: Any) -> None:
        found = mapping(data)
        if found is None:
            return
        index = found.get("index")
        block = self._blocks.get(index) if type(index) is int else None
        delta = mapping(found.get("delta"))
        if block is None or delta is None:
            return
        kind = delta.get("type")
        if kind == "thinking_delta" and block.kind == THINKING:
            piece = delta.get("thinking")
        elif kind == "input_json_delta" and block.kind == "tool_use":
            piece = delta.get("partial_json")
        else:
            return
        if isinstance(piece, str):
            block.parts.append(piece)

    def _stop(self, data: Any) -> None:
        found = mapping(data)
        index = found.get("index") if found else None
        block = self._blocks.pop(index, None) if type(index) is int else None
        if block is None:
            return
        if block.kind == THINKING:
            text = "".join(block.parts)
            if text:
                self._emit(ModelThought(self._message_id, text, THINKING))
        elif block.name and block.call_id:
            self._emit(ToolUsage(self._message_id, block.name, block.call_id, _tool_input(block)))


def _tool_input(block: _Block) -> str:
    """The streamed JSON as the model wrote it; a block without deltas has its start's input."""
    if block.parts:
        joined = "".join(block.parts)
        if joined:
            return joined
    return dumps(block.start_input) if block.start_input else "{}"
