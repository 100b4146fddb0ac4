"""OpenAI Responses: the prompt and tool result of a request, the records of an answer.

Streams (platform.openai.com/docs/api-reference/responses-streaming) name every event, so only
the few events that carry whole things are parsed: ``response.created`` (the response id),
``response.output_item.done`` (a finished output item: tool call, reasoning, message) and the
terminal ``response.completed`` / ``response.incomplete`` / ``response.failed`` (the usage, and
the output again: items already recorded from their ``done`` event are not recorded twice).
Deltas are never read: the ``done`` item holds the same text whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from aibridged.intercept.extract.base import NO_FACTS, Emit, RequestFacts
from aibridged.intercept.extract.common import (
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

_TOOL_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
_STARTS = frozenset({"response.created", "response.in_progress"})
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ITEM_DONE = "response.output_item.done"


def request_facts(parsed: Mapping[str, Any]) -> RequestFacts:
    items = parsed.get("input")
    if isinstance(items, str):
        return RequestFacts(prompt=items, correlating_call_id=None)
    last = mapping(items[-1]) if isinstance(items, list) and items else None
    if last is None:
        return NO_FACTS
    if last.get("type") in _TOOL_OUTPUTS:
        return RequestFacts(prompt=None, correlating_call_id=string(last.get("call_id")) or None)
    if last.get("role") == "user":
        return RequestFacts(
            prompt=last_user_text(last.get("content"), "input_text"), correlating_call_id=None
        )
    return NO_FACTS


def response_usage(response_id: str, usage: Mapping[str, Any]) -> TokenUsage:
    """`input_tokens` includes the cached tokens: they are recorded as cache reads instead."""
    cached = integer(mapping(usage.get("input_tokens_details")), "cached_tokens")
    reasoning = integer(mapping(usage.get("output_tokens_details")), "reasoning_tokens")
    return TokenUsage(
        response_id=response_id,
        input=integer(usage, "input_tokens") - cached,
        output=integer(usage, "output_tokens"),
        cache_read=cached,
        extra=extras(
            (
                ("input_cached", cached),
                ("output_reasoning", reasoning),
                ("total_tokens", integer(usage, "total_tokens")),
            )
        ),
    )


def item_records(response_id: str, item: Mapping[str, Any]) -> Iterator[Extracted]:
    """The records of one output item: a tool call, reasoning summaries, commentary."""
    kind = item.get("type")
    if kind == "function_call" or kind == "custom_tool_call":
        name, call_id = string(item.get("name")), string(item.get("call_id"))
        tool_input = item.get("arguments" if kind == "function_call" else "input")
        if name and call_id and isinstance(tool_input, str):
            yield ToolUsage(response_id, name, call_id, tool_input, item_id=string(item.get("id")))
    elif kind == "reasoning":
        summary = item.get("summary")
        for part in summary if isinstance(summary, list) else ():
            text = string(part.get("text")) if isinstance(part, Mapping) else ""
            if text:
                yield ModelThought(response_id, text, "reasoning_summary")
    elif (
        kind == "message" and item.get("phase") == "commentary" and item.get("role") == "assistant"
    ):
        # Some models answer with commentary messages where others give reasoning summaries.
        text = "".join(_output_texts(item.get("content")))
        if text:
            yield ModelThought(response_id, text, "commentary")


def _output_texts(content: Any) -> Iterator[str]:
    for part in content if isinstance(content, list) else ():
        if isinstance(part, Mapping) and part.get("type") == "output_text":
            yield string(part.get("text"))


class ResponsesExtractor:
    __slots__ = ("_emit", "_recorded", "_response_id")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._response_id = ""
        # Output items recorded from their done event, by id (by position when they have none).
        self._recorded: set[str | int] = set()

    def on_event(self, event: SSEEvent) -> None:
        name, parsed = event_type(event)
        if name == _ITEM_DONE:
            self._item_done(mapping(parsed if parsed is not None else loads(event.data)))
        elif name in _ENDS:
            self._end(mapping(parsed if parsed is not None else loads(event.data)))
        elif name in _STARTS and not self._response_id:
            found = mapping(parsed if parsed is not None else loads(event.data))
            response = mapping(found.get("response")) if found else None
            self._response_id = string(response.get("id")) if response else ""

    def on_body(self, body: bytes) -> None:
        response = mapping(loads(body))
        if response is not None:
            self._response(response)

    def finish(self) -> None:
        # Every record went out with its done or terminal event; an unfinished item was cut.
        pass

    def _item_done(self, data: Mapping[str, Any] | None) -> None:
        item = mapping(data.get("item")) if data is not None else None
        if data is None or item is None:
            return
        self._recorded.add(_item_key(item, data.get("output_index")))
        for record in item_records(self._response_id, item):
            self._emit(record)

    def _end(self, data: Mapping[str, Any] | None) -> None:
        response = mapping(data.get("response")) if data else None
        if response is not None:
            self._response(response)

    def _response(self, response: Mapping[str, Any]) -> None:
        """A whole response (a blocking body, or a stream's last event): its usage, and the
        output items not already recorded."""
        self._response_id = string(response.get("id")) or self._response_id
        usage = mapping(response.get("usage"))
        if usage is not None:
            self._emit(response_usage(self._response_id, usage))
        output = response.get("output")
        for index, item in enumerate(output if isinstance(output, list) else ()):
            found = mapping(item)
            if found is None or _item_key(found, index) in self._recorded:
                continue
            for record in item_records(self._response_id, found):
                self._emit(record)


def _item_key(item: Mapping[str, Any], index: Any) -> str | int:
    item_id = string(item.get("id"))
    if item_id:
        return item_id
    return index if type(index) is int else -1
