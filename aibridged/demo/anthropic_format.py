"""Anthropic wire formats of the demo model: Messages, count_tokens, the model list and errors.

Sans-IO, like :mod:`aibridged.demo.openai_format`. Content blocks, in order: ``thinking`` (when
the request's ``thinking.type`` is ``enabled`` or ``adaptive``), ``text``, ``tool_use`` (when a
read-only custom tool is offered, the prompt asks for it with ``#demo-tool`` and the last message
is not a tool result).

Usage: the prompt count P is over system, messages and tools; when the request uses
``cache_control`` anywhere, ``cache_read_input_tokens = P // 2``, ``cache_creation_input_tokens =
P // 4`` and ``input_tokens`` is the rest, otherwise both cache fields are 0 and
``input_tokens = P``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from .reply import (
    BadRequest,
    JsonObject,
    Reply,
    ToolCall,
    content_text,
    dump_json,
    example_arguments,
    may_call,
    prompt_tokens,
    reply_text,
    signature_for,
    sse_event,
    text_deltas,
    thinking_text,
    wants_tool,
)

MODELS = ("demo-claude", "demo-claude-haiku")
_TEXT_PARTS = frozenset({"text"})
_PROMPT_FIELDS = ("system", "messages", "tools")


_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(message: str, *, status: int = 400) -> bytes:
    """Anthropic's error shape, with the error type Anthropic uses for ``status``."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return dump_json({"type": "error", "error": {"type": kind, "message": message}})


def models_body() -> bytes:
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": name.replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z",
        }
        for name in MODELS
    ]
    return dump_json(
        {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
    )


def _require(request: Mapping[str, Any], *, max_tokens: bool) -> list[Any]:
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise BadRequest("model: Field required")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: Field required (a non-empty list)")
    if max_tokens and not isinstance(request.get("max_tokens"), int):
        raise BadRequest("max_tokens: Field required")
    return messages


def count_tokens_body(request: Mapping[str, Any]) -> bytes:
    _require(request, max_tokens=False)
    return dump_json({"input_tokens": prompt_tokens(request, _PROMPT_FIELDS)})


def _tool_results(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result"]


def messages_reply(request: Mapping[str, Any], *, seq: int, stream_chunks: int) -> Reply:
    messages = _require(request, max_tokens=True)
    last = messages[-1] if isinstance(messages[-1], Mapping) else {}
    results = _tool_results(last)
    if results:
        last_text = content_text(results[-1].get("content"), part_types=_TEXT_PARTS)
    else:
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        last_text = content_text(users[-1].get("content"), part_types=_TEXT_PARTS) if users else ""
    tool_call = None
    tools = request.get("tools")
    choice = request.get("tool_choice")
    no_tools = isinstance(choice, Mapping) and choice.get("type") == "none"
    if not results and wants_tool(last_text) and isinstance(tools, list) and not no_tools:
        for tool in tools:
            if (
                isinstance(tool, Mapping)
                and tool.get("type", "custom") == "custom"
                and may_call(tool.get("name"))
            ):
                arguments = dump_json(example_arguments(tool.get("input_schema"))).decode()
                tool_call = ToolCall(
                    id=f"toolu_demo{seq:06d}", name=tool["name"], arguments=arguments
                )
                break
    thinking = request.get("thinking")
    thinks = isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")
    return Reply(
        seq=seq,
        model=request["model"],
        created=int(time.time()),
        text_deltas=text_deltas(
            reply_text(last_text, after_tool_result=bool(results)), stream_chunks
        ),
        thinking=thinking_text(last_text) if thinks else None,
        tool_call=tool_call,
        prompt_tokens=prompt_tokens(request, _PROMPT_FIELDS),
    )


def _uses_cache_control(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "cache_control" in value or any(_uses_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_uses_cache_control(v) for v in value)
    return False


def _input_usage(reply: Reply, request: Mapping[str, Any]) -> JsonObject:
    total = reply.prompt_tokens
    cached = any(_uses_cache_control(request.get(field)) for field in _PROMPT_FIELDS)
    read, creation = (total // 2, total // 4) if cached else (0, 0)
    return {
        "input_tokens": total - read - creation,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
    }


def _usage(reply: Reply, request: Mapping[str, Any], output_tokens: int) -> JsonObject:
    usage = _input_usage(reply, request)
    return {
        **usage,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(
    reply: Reply, content: list[JsonObject], stop_reason: str | None, usage: JsonObject
) -> JsonObject:
    return {
        "id": f"msg_demo{reply.seq:06d}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_call is not None else "end_turn"


def message_object(reply: Reply, request: Mapping[str, Any]) -> JsonObject:
    text = reply.text
    content: list[JsonObject] = []
    if reply.thinking:
        content.append(
            {
                "type": "thinking",
                "thinking": reply.thinking,
                "signature": signature_for(reply.thinking),
            }
        )
    content.append({"type": "text", "text": text})
    call = reply.tool_call
    if call is not None:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json.loads(call.arguments),
            }
        )
    usage = _usage(reply, request, reply.output_tokens(text))
    return _message(reply, content, _stop_reason(reply), usage)


def messages_stream(reply: Reply, request: Mapping[str, Any]) -> Iterator[bytes]:
    def event(event_type: str, **fields: Any) -> bytes:
        return sse_event(event_type, {"type": event_type, **fields})

    yield event("message_start", message=_message(reply, [], None, _usage(reply, request, 1)))
    index = 0

    def block_start(block: JsonObject) -> bytes:
        return event("content_block_start", index=index, content_block=block)

    def block_delta(delta: JsonObject) -> bytes:
        return event("content_block_delta", index=index, delta=delta)

    if reply.thinking:
        yield block_start({"type": "thinking", "thinking": "", "signature": ""})
        yield event("ping")
        for piece in reply.thinking_deltas:
            yield block_delta({"type": "thinking_delta", "thinking": piece})
        yield block_delta({"type": "signature_delta", "signature": signature_for(reply.thinking)})
        yield event("content_block_stop", index=index)
        index += 1

    yield block_start({"type": "text", "text": ""})
    if index == 0:
        yield event("ping")
    pieces: list[str] = []
    for piece in reply.text_deltas:
        pieces.append(piece)
        yield block_delta({"type": "text_delta", "text": piece})
    yield event("content_block_stop", index=index)
    index += 1

    call = reply.tool_call
    if call is not None:
        yield block_start({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        yield block_delta({"type": "input_json_delta", "partial_json": ""})
        for piece in call.argument_deltas:
            yield block_delta({"type": "input_json_delta", "partial_json": piece})
        yield event("content_block_stop", index=index)

    output_tokens = reply.output_tokens("".join(pieces))
    yield event(
        "message_delta",
        delta={"stop_reason": _stop_reason(reply), "stop_sequence": None},
        usage={**_input_usage(reply, request), "output_tokens": output_tokens},
    )
    yield event("message_stop")
