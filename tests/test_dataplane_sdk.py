"""End to end with the official SDKs: client → gateway → fake upstream speaking the real formats.

Each test makes the same call directly against the upstream and through the gateway: what the SDK
parses must be the same either way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from tests.gateway import ANTHROPIC_KEY, OPENAI_KEY, Gateway, start_gateway

MESSAGES = [{"role": "user", "content": "Write a haiku about gateways"}]
# The demo calls a tool only when asked to (and only a read-only one).
TOOL_MESSAGES = [{"role": "user", "content": "Read the config file #demo-tool"}]
TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "read_file",
        "description": "Read a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    }
]


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def openai_pair(
    gateway: Gateway,
) -> AsyncIterator[tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]]:
    """(direct to the upstream, through the gateway). Closed explicitly: an SDK client left to the
    garbage collector schedules its close on whatever asyncio loop runs then (trio-asyncio's)."""
    async with (
        openai.AsyncOpenAI(
            base_url=gateway.upstream_url + "/v1", api_key="direct", max_retries=0
        ) as direct,
        openai.AsyncOpenAI(
            base_url=gateway.base("openai") + "/v1", api_key=gateway.token, max_retries=0
        ) as via,
    ):
        yield direct, via


@pytest.fixture
async def anthropic_pair(
    gateway: Gateway,
) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]]:
    async with (
        anthropic.AsyncAnthropic(
            base_url=gateway.upstream_url, api_key="direct", max_retries=0
        ) as direct,
        anthropic.AsyncAnthropic(
            base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0
        ) as via,
    ):
        yield direct, via


def _last_upstream_headers(gw: Gateway) -> dict[str, str]:
    return dict(gw.upstream.requests[-1].headers)


def _strip_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_ids(v)
            for k, v in value.items()
            if k
            not in (
                "id",
                "created",
                "created_at",
                "call_id",
                "item_id",
                "sequence_number",
                "signature",
            )
        }
    if isinstance(value, list):
        return [_strip_ids(v) for v in value]
    return value


async def test_chat_completions_blocking_and_streaming_match_the_direct_path(
    gateway: Gateway, openai_pair: tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]
) -> None:
    direct, via = openai_pair
    for messages, kwargs in ((MESSAGES, {}), (TOOL_MESSAGES, {"tools": TOOLS_OPENAI})):
        a = await direct.chat.completions.create(model="gpt-demo", messages=messages, **kwargs)
        b = await via.chat.completions.create(model="gpt-demo", messages=messages, **kwargs)
        assert _strip_ids(b.model_dump()) == _strip_ids(a.model_dump())
        calls = b.choices[0].message.tool_calls
        assert [c.function.name for c in calls or []] == (["read_file"] if kwargs else [])
        assert _last_upstream_headers(gateway)["authorization"] == f"Bearer {OPENAI_KEY}"

    async def collect(client: openai.AsyncOpenAI) -> tuple[str, Any, int]:
        text, usage, chunks = "", None, 0
        stream = await client.chat.completions.create(
            model="gpt-demo", messages=MESSAGES, stream=True
        )
        async for chunk in stream:
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = chunk.usage.model_dump()
        return text, usage, chunks

    direct_text, _, _ = await collect(direct)
    text, usage, _chunks = await collect(via)
    assert text == direct_text and text
    # The gateway forces stream_options.include_usage on streaming chat, as Coder's does.
    assert usage is not None and usage["completion_tokens"] > 0
    sent = json.loads(gateway.upstream.requests[-1].body)
    assert sent["stream_options"] == {"include_usage": True}


async def test_responses_blocking_and_streaming_match_the_direct_path(
    openai_pair: tuple[openai.AsyncOpenAI, openai.AsyncOpenAI],
) -> None:
    direct, via = openai_pair
    kwargs: dict[str, Any] = {
        "model": "gpt-demo",
        "input": "Explain SSE",
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    a = await direct.responses.create(**kwargs)
    b = await via.responses.create(**kwargs)
    assert b.output_text == a.output_text and b.output_text
    assert _strip_ids(b.usage.model_dump()) == _strip_ids(a.usage.model_dump())  # type: ignore[union-attr]

    async def collect(client: openai.AsyncOpenAI) -> tuple[list[str], Any]:
        types: list[str] = []
        final = None
        async with client.responses.stream(**kwargs) as stream:
            async for event in stream:
                types.append(event.type)
            final = await stream.get_final_response()
        return types, final

    direct_types, direct_final = await collect(direct)
    types, final = await collect(via)
    assert types == direct_types
    assert final.output_text == direct_final.output_text


async def test_messages_with_thinking_and_tool_use_match_the_direct_path(
    gateway: Gateway, anthropic_pair: tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]
) -> None:
    direct, via = anthropic_pair
    kwargs: dict[str, Any] = {
        "model": "claude-demo",
        "max_tokens": 2048,
        "messages": TOOL_MESSAGES,
        "tools": TOOLS_ANTHROPIC,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    a = await direct.messages.create(**kwargs)
    b = await via.messages.create(**kwargs)
    assert _strip_ids(b.model_dump()) == _strip_ids(a.model_dump())
    assert [block.type for block in b.content] == ["thinking", "text", "tool_use"]
    headers = _last_upstream_headers(gateway)
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in headers

    async def collect(client: anthropic.AsyncAnthropic) -> Any:
        async with client.messages.stream(**kwargs) as stream:
            async for _ in stream:
                pass
            return await stream.get_final_message()

    direct_final = await collect(direct)
    final = await collect(via)
    assert _strip_ids(final.model_dump()) == _strip_ids(direct_final.model_dump())
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    assert final.usage.output_tokens > 0


async def test_request_body_goes_upstream_byte_for_byte(
    gateway: Gateway, anthropic_pair: tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]
) -> None:
    _, via = anthropic_pair
    await via.messages.create(
        model="claude-demo", max_tokens=64, messages=MESSAGES, metadata={"user_id": "u"}
    )
    recorded = gateway.upstream.requests[-1]
    body = json.loads(recorded.body)
    assert body["metadata"] == {"user_id": "u"}
    # The gateway never re-serialises a messages body: odd spacing and escapes arrive as sent.
    raw = (
        b'{"model":"claude-demo","max_tokens":8,  '
        b'"messages":[{"role":"user","content":"hi \\u00e9"}]}'
    )
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            gateway.base("anthropic") + "/v1/messages",
            content=raw,
            headers={
                "x-api-key": gateway.token,
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
            },
        )
    assert response.status_code == 200
    assert gateway.upstream.requests[-1].body == raw
    upstream_headers = dict(gateway.upstream.requests[-1].headers)
    assert upstream_headers["anthropic-version"] == "2023-06-01"
    assert gateway.token not in json.dumps(gateway.upstream.requests[-1].headers)


async def _first_event_end(gateway: Gateway, path: str, body: dict[str, Any]) -> int:
    """Where the upstream's first SSE event ends (the demo is deterministic)."""
    async with httpx2.AsyncClient() as client:
        r = await client.post(gateway.upstream_url + path, json=body)
    return r.content.index(b"\n\n") + 2


async def test_a_stream_reset_mid_event_is_an_api_error_in_the_openai_sdk(
    gateway: Gateway, openai_pair: tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]
) -> None:
    """Cut 10 bytes into the second event: the SDK must raise its own APIError, not choke on
    half a JSON document (it did: JSONDecodeError)."""
    _, via = openai_pair
    body = {
        "model": "gpt-demo",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},  # as the gateway sends it
    }
    cut = await _first_event_end(gateway, "/v1/chat/completions", body) + 10
    gateway.upstream.reset_mid_stream_next(1, fragment_bytes=cut)
    stream = await via.chat.completions.create(model="gpt-demo", messages=MESSAGES, stream=True)
    chunks = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert len(chunks) == 1  # the whole first event, nothing of the second
    assert not isinstance(info.value, openai.APIConnectionError)
    assert "upstream stream failed" in str(info.value)


async def test_a_stream_reset_mid_event_is_an_api_error_in_the_anthropic_sdk(
    gateway: Gateway, anthropic_pair: tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]
) -> None:
    _, via = anthropic_pair
    body = {"model": "claude-demo", "max_tokens": 64, "messages": MESSAGES, "stream": True}
    cut = await _first_event_end(gateway, "/v1/messages", body) + 10
    gateway.upstream.reset_mid_stream_next(1, fragment_bytes=cut)
    events = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with via.messages.stream(
            model="claude-demo", max_tokens=64, messages=MESSAGES
        ) as stream:
            async for event in stream:
                events.append(event.type)
    assert events == ["message_start"]
    assert "upstream stream failed" in str(info.value)
