"""OpenAI Chat Completions: the prompt and tool result of a request, the records of an answer.

Streams (platform.openai.com/docs/api-reference/chat-streaming) are data-only chunks. Most carry
a content delta and nothing recorded, so a chunk is parsed only when a cheap look at its text
finds tool calls, a finish reason or usage that is not null. Tool calls arrive in pieces keyed
by their `index` (id and name first, arguments in fragments, possibly interleaved); they are
recorded when the first choice finishes, or at ``[DONE]``. The usage chunk (which the gateway
asks for with ``include_usage``) is held and recorded at ``[DONE]`` or at the end, when the
output count is not zero: some servers repeat a running usage in every chunk, and only the last
one counts. Only the first choice is read, as in a blocking body (the gateway forces ``n`` = 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aibridged.intercept.extract.base import NO_FACTS, Emit, RequestFacts
from aibridged.intercept.extract.common import (
    extras,
    has_value,
    integer,
    last_user_text,
    loads,
    mapping,
    string,
)
from aibridged.intercept.sse import SSEEvent
from aibridged.records import TokenUsage, ToolUsage

_DONE = "[DONE]"


def request_facts(parsed: Mapping[str, Any]) -> RequestFacts:
    messages = parsed.get("messages")
    last = mapping(messages[-1]) if isinstance(messages, list) and messages else None
    if last is None:
        return NO_FACTS
    role = last.get("role")
    if role == "user":
        return RequestFacts(
            prompt=last_user_text(last.get("content"), "text"), correlating_call_id=None
        )
    if role == "tool":
        return RequestFacts(
            prompt=None, correlating_call_id=string(last.get("tool_call_id")) or None
        )
    return NO_FACTS


def completion_usage(completion_id: str, usage: Mapping[str, Any]) -> TokenUsage:
    """`prompt_tokens` includes the cached tokens: they are recorded as cache reads instead."""
    prompt = mapping(usage.get("prompt_tokens_details"))
    completion = mapping(usage.get("completion_tokens_details"))
    cached = integer(prompt, "cached_tokens")
    return TokenUsage(
        response_id=completion_id,
        input=integer(usage, "prompt_tokens") - cached,
        output=integer(usage, "completion_tokens"),
        cache_read=cached,
        extra=extras(
            (
                ("prompt_audio", integer(prompt, "audio_tokens")),
                ("prompt_cached", cached),
                (
                    "completion_accepted_prediction",
                    integer(completion, "accepted_prediction_tokens"),
                ),
                (
                    "completion_rejected_prediction",
                    integer(completion, "rejected_prediction_tokens"),
                ),
                ("completion_audio", integer(completion, "audio_tokens")),
                ("completion_reasoning", integer(completion, "reasoning_tokens")),
            )
        ),
    )


def _first_choice(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        found = mapping(choice)
        if found is not None and found.get("index", 0) == 0:
            return found
    return None


def _called(call: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(name, id, input) of a whole tool call: a function's arguments, a custom tool's input."""
    function = mapping(call.get("function"))
    custom = mapping(call.get("custom"))
    if function is not None:
        name, tool_input = string(function.get("name")), function.get("arguments")
    elif custom is not None:
        name, tool_input = string(custom.get("name")), custom.get("input")
    else:
        return None
    call_id = string(call.get("id"))
    if not name or not call_id or not isinstance(tool_input, str):
        return None
    return name, call_id, tool_input


@dataclass(slots=True)
class _Call:
    """A streamed tool call; only a function call's arguments can be checked for completeness."""

    call_id: str = ""
    name: str = ""
    custom: bool = False
    parts: list[str] = field(default_factory=list)

    def add(self, delta: Mapping[str, Any]) -> None:
        # The first id and name win: some servers repeat them in every fragment.
        self.call_id = self.call_id or string(delta.get("id"))
        function = mapping(delta.get("function"))
        custom = mapping(delta.get("custom"))
        body, key = (function, "arguments") if custom is None else (custom, "input")
        self.custom = self.custom or custom is not None
        if body is None:
            return
        self.name = self.name or string(body.get("name"))
        piece = body.get(key)
        if isinstance(piece, str):
            self.parts.append(piece)

    def arguments_complete(self) -> bool:
        """Whether a call cut off by the stream's end had all of its arguments anyway: tool
        arguments are a JSON object, and no fragment before its closing brace parses as one."""
        return not self.custom and isinstance(loads("".join(self.parts)), dict)


class ChatExtractor:
    __slots__ = ("_calls", "_completion_id", "_emit", "_usage")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._completion_id = ""
        self._calls: dict[int, _Call] = {}
        self._usage: Mapping[str, Any] | None = None  # the latest usage, recorded at the end

    def on_event(self, event: SSEEvent) -> None:
        data = event.data
        if data == _DONE:
            self._flush_calls()
            self._flush_usage()
            return
        if not (
            has_value(data, '"tool_calls"')
            or has_value(data, '"finish_reason"')
            or has_value(data, '"usage"')
        ):
            return
        chunk = mapping(loads(data))
        if chunk is not None:
            self._chunk(chunk)

    def on_body(self, body: bytes) -> None:
        completion = mapping(loads(body))
        if completion is None:
            return
        completion_id = string(completion.get("id"))
        usage = mapping(completion.get("usage"))
        if usage is not None:
            self._emit(completion_usage(completion_id, usage))
        choice = _first_choice(completion)
        message = mapping(choice.get("message")) if choice else None
        calls = message.get("tool_calls") if message else None
        for call in calls if isinstance(calls, list) else ():
            found = mapping(call)
            called = _called(found) if found is not None else None
            if called is not None:
                self._emit(ToolUsage(completion_id, *called))

    def finish(self) -> None:
        # Cut before the choice finished: a call is kept only if its arguments are whole.
        self._calls = {i: c for i, c in self._calls.items() if c.arguments_complete()}
        self._flush_calls()
        self._flush_usage()

    def _chunk(self, chunk: Mapping[str, Any]) -> None:
        self._completion_id = string(chunk.get("id")) or self._completion_id
        usage = mapping(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        choice = _first_choice(chunk)
        if choice is None:
            return
        delta = mapping(choice.get("delta"))
        calls = delta.get("tool_calls") if delta else None
        if isinstance(calls, list):
            for call in calls:
                found = mapping(call)
                if found is not None:
                    self._call_for(found).add(found)
        if isinstance(choice.get("finish_reason"), str):
            self._flush_calls()

    def _call_for(self, delta: Mapping[str, Any]) -> _Call:
        index = delta.get("index")
        if type(index) is not int:
            # No index (some OpenAI-compatible servers): a new id starts a call, else the
            # fragment continues the last one.
            call_id = string(delta.get("id"))
            last = max(self._calls, default=-1)
            known = last >= 0 and (not call_id or self._calls[last].call_id == call_id)
            index = last if known else last + 1
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call()
        return call

    def _flush_calls(self) -> None:
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.name and call.call_id:
                self._emit(
                    ToolUsage(self._completion_id, call.name, call.call_id, "".join(call.parts))
                )
        self._calls.clear()

    def _flush_usage(self) -> None:
        usage, self._usage = self._usage, None
        if usage is not None and integer(usage, "completion_tokens") > 0:
            self._emit(completion_usage(self._completion_id, usage))
