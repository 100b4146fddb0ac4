"""OpenAI wire formats of the demo model: Chat Completions, Responses, the model list and errors.

Sans-IO: every function maps a parsed request to a :class:`Reply`, or a reply to a JSON object or
an iterator of ready-to-send SSE event bytes. Usage: ``prompt_tokens`` over messages / input /
instructions / tools; half the prompt is reported as cached (``cached_tokens = prompt // 2``);
hidden reasoning (Chat ``reasoning_effort``, Responses ``reasoning``) is counted in
``reasoning_tokens`` and included in the output tokens.
"""

from __future__ import annotations

import itertools
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
    sse_data,
    sse_event,
    text_deltas,
    thinking_text,
    wants_tool,
)

MODELS = ("demo-gpt", "demo-gpt-mini")
_FINGERPRINT = "fp_demo"
_CHAT_TEXT_PARTS = frozenset({"text"})
_RESPONSES_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_NO_REASONING = frozenset({"none", "minimal"})


# status → (error type, code), as OpenAI reports them
_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(message: str, *, status: int = 400, param: str | None = None) -> bytes:
    """OpenAI's error shape, with the type and code OpenAI uses for ``status``."""
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    error_type, code = _ERRORS.get(status, default)
    return dump_json(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def models_body() -> bytes:
    return dump_json(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "aibridged"}
                for name in MODELS
            ],
        }
    )


def _require_model(request: Mapping[str, Any]) -> str:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    return model


def _tool_call(seq: int, name: Any, schema: Any) -> ToolCall | None:
    if not isinstance(name, str) or not name:
        return None
    return ToolCall(
        id=f"call_demo{seq:06d}", name=name, arguments=dump_json(example_arguments(schema)).decode()
    )


# --- Chat Completions ---------------------------------------------------------------------------


def chat_reply(request: Mapping[str, Any], *, seq: int, stream_chunks: int) -> Reply:
    model = _require_model(request)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    last = messages[-1] if isinstance(messages[-1], Mapping) else {}
    after_tool = last.get("role") == "tool"
    if after_tool:
        last_text = content_text(last.get("content"), part_types=_CHAT_TEXT_PARTS)
    else:
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        last_text = (
            content_text(users[-1].get("content"), part_types=_CHAT_TEXT_PARTS) if users else ""
        )
    tool_call = None
    tools = request.get("tools")
    offered = tools if isinstance(tools, list) and request.get("tool_choice") != "none" else []
    if not after_tool and wants_tool(last_text):
        for tool in offered:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and may_call(function.get("name")):
                tool_call = _tool_call(seq, function.get("name"), function.get("parameters"))
                if tool_call is not None:
                    break
    effort = request.get("reasoning_effort")
    return Reply(
        seq=seq,
        model=model,
        created=int(time.time()),
        text_deltas=text_deltas(reply_text(last_text, after_tool_result=after_tool), stream_chunks),
        thinking=thinking_text(last_text)
        if isinstance(effort, str) and effort not in _NO_REASONING
        else None,
        tool_call=tool_call,
        prompt_tokens=prompt_tokens(request, ("messages", "tools")),
    )


def chat_usage(reply: Reply, text: str) -> JsonObject:
    completion = reply.output_tokens(text)
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": reply.prompt_tokens // 2, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.thinking_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_header(reply: Reply, object_type: str) -> JsonObject:
    return {
        "id": f"chatcmpl-demo{reply.seq:06d}",
        "object": object_type,
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }


def chat_completion(reply: Reply) -> JsonObject:
    text = reply.text
    message: JsonObject = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    call = reply.tool_call
    if call is not None:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        ]
    return {
        **_chat_header(reply, "chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if call is not None else "stop",
            }
        ],
        "usage": chat_usage(reply, text),
    }


def chat_stream(reply: Reply, *, include_usage: bool) -> Iterator[bytes]:
    header = _chat_header(reply, "chat.completion.chunk")
    if include_usage:
        header["usage"] = None

    def chunk(delta: JsonObject, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_data({**header, "choices": [choice]})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    text: list[str] = []
    for delta in reply.text_deltas:
        text.append(delta)
        yield chunk({"content": delta})
    call = reply.tool_call
    if call is not None:
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for piece in call.argument_deltas:
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if call is not None else "stop")
    if include_usage:
        yield sse_data({**header, "choices": [], "usage": chat_usage(reply, "".join(text))})
    yield b"data: [DONE]\n\n"


# --- Responses ----------------------------------------------------------------------------------


def responses_reply(request: Mapping[str, Any], *, seq: int, stream_chunks: int) -> Reply:
    model = _require_model(request)
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    elif items is None:
        items = []
    elif not isinstance(items, list):
        raise BadRequest("'input' must be a string or an array")
    items = [item for item in items if isinstance(item, Mapping)]
    last_type = str(items[-1].get("type", "")) if items else ""
    after_tool = last_type.endswith("_call_output")
    if after_tool:
        output = items[-1].get("output")
        last_text = content_text(output, part_types=_RESPONSES_TEXT_PARTS)
    else:
        users = [item for item in items if item.get("role") == "user"]
        last_text = (
            content_text(users[-1].get("content"), part_types=_RESPONSES_TEXT_PARTS)
            if users
            else ""
        )
    tool_call = None
    tools = request.get("tools")
    offered = tools if isinstance(tools, list) and request.get("tool_choice") != "none" else []
    if not after_tool and wants_tool(last_text):
        for tool in offered:
            if (
                isinstance(tool, Mapping)
                and tool.get("type") == "function"
                and may_call(tool.get("name"))
            ):
                tool_call = _tool_call(seq, tool.get("name"), tool.get("parameters"))
                if tool_call is not None:
                    break
    return Reply(
        seq=seq,
        model=model,
        created=int(time.time()),
        text_deltas=text_deltas(reply_text(last_text, after_tool_result=after_tool), stream_chunks),
        thinking=thinking_text(last_text)
        if isinstance(request.get("reasoning"), Mapping)
        else None,
        tool_call=tool_call,
        prompt_tokens=prompt_tokens(request, ("instructions", "input", "tools")),
    )


def responses_usage(reply: Reply, text: str) -> JsonObject:
    output = reply.output_tokens(text)
    return {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": reply.prompt_tokens // 2},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reply.thinking_tokens},
        "total_tokens": reply.prompt_tokens + output,
    }


def _response(
    reply: Reply,
    request: Mapping[str, Any],
    *,
    status: str,
    output: list[JsonObject],
    usage: JsonObject | None,
) -> JsonObject:
    reasoning = request.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, Mapping) else {}
    return {
        "id": f"resp_demo{reply.seq:06d}",
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default",
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": request.get("metadata") or {},
    }


def _reasoning_item(reply: Reply, summary: str | None) -> JsonObject:
    parts = [] if summary is None else [{"type": "summary_text", "text": summary}]
    return {"id": f"rs_demo{reply.seq:06d}", "type": "reasoning", "summary": parts}


def _message_item(reply: Reply, text: str | None) -> JsonObject:
    return {
        "id": f"msg_demo{reply.seq:06d}",
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_text_part(text)],
    }


def _text_part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_item(reply: Reply, call: ToolCall, *, done: bool) -> JsonObject:
    return {
        "id": f"fc_demo{reply.seq:06d}",
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if done else "",
    }


def response_object(reply: Reply, request: Mapping[str, Any]) -> JsonObject:
    text = reply.text
    output: list[JsonObject] = []
    if reply.thinking:
        output.append(_reasoning_item(reply, reply.thinking))
    output.append(_message_item(reply, text))
    if reply.tool_call is not None:
        output.append(_function_item(reply, reply.tool_call, done=True))
    return _response(
        reply, request, status="completed", output=output, usage=responses_usage(reply, text)
    )


def responses_stream(reply: Reply, request: Mapping[str, Any]) -> Iterator[bytes]:
    sequence = itertools.count()

    def event(event_type: str, **fields: Any) -> bytes:
        return sse_event(
            event_type, {"type": event_type, "sequence_number": next(sequence), **fields}
        )

    pending = _response(reply, request, status="in_progress", output=[], usage=None)
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    output: list[JsonObject] = []

    if reply.thinking:
        item = _reasoning_item(reply, None)
        at: JsonObject = {"item_id": item["id"], "output_index": len(output)}
        yield event("response.output_item.added", output_index=len(output), item=item)
        yield event(
            "response.reasoning_summary_part.added",
            **at,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )
        for delta in reply.thinking_deltas:
            yield event("response.reasoning_summary_text.delta", **at, summary_index=0, delta=delta)
        yield event(
            "response.reasoning_summary_text.done", **at, summary_index=0, text=reply.thinking
        )
        yield event(
            "response.reasoning_summary_part.done",
            **at,
            summary_index=0,
            part={"type": "summary_text", "text": reply.thinking},
        )
        output.append(_reasoning_item(reply, reply.thinking))
        yield event("response.output_item.done", output_index=len(output) - 1, item=output[-1])

    item = _message_item(reply, None)
    at = {"item_id": item["id"], "output_index": len(output)}
    yield event("response.output_item.added", output_index=len(output), item=item)
    yield event("response.content_part.added", **at, content_index=0, part=_text_part(""))
    pieces: list[str] = []
    for delta in reply.text_deltas:
        pieces.append(delta)
        yield event("response.output_text.delta", **at, content_index=0, delta=delta, logprobs=[])
    text = "".join(pieces)
    yield event("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
    yield event("response.content_part.done", **at, content_index=0, part=_text_part(text))
    output.append(_message_item(reply, text))
    yield event("response.output_item.done", output_index=len(output) - 1, item=output[-1])

    call = reply.tool_call
    if call is not None:
        item = _function_item(reply, call, done=False)
        at = {"item_id": item["id"], "output_index": len(output)}
        yield event("response.output_item.added", output_index=len(output), item=item)
        for delta in call.argument_deltas:
            yield event("response.function_call_arguments.delta", **at, delta=delta)
        yield event(
            "response.function_call_arguments.done", **at, name=call.name, arguments=call.arguments
        )
        output.append(_function_item(reply, call, done=True))
        yield event("response.output_item.done", output_index=len(output) - 1, item=output[-1])

    done = _response(
        reply, request, status="completed", output=output, usage=responses_usage(reply, text)
    )
    yield event("response.completed", response=done)
