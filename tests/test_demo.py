"""The demo upstream speaks the real wire formats (the official SDKs parse it); faults work.

The servers run on port 0 inside the test's nursery; the openai and anthropic SDKs run on trio
through anyio and httpx2.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import anthropic
import httpx2
import openai
import pytest
import trio
import trio.testing
from anthropic.types import TextBlock, ThinkingBlock, ToolUseBlock
from openai.types.responses import ResponseFunctionToolCall

from aibridged.demo import DemoUpstream, RecordedRequest, count_tokens, serve_demo_upstream
from aibridged.demo.banner import demo_banner
from aibridged.demo.reply import TOOL_TRIGGER, may_call
from tests.fakes import FakeUpstream

WEATHER_TOOL_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
        "note": {"type": "string"},
    },
    "required": ["city", "unit", "days"],
}
WEATHER_ARGUMENTS = {"city": "demo", "unit": "celsius", "days": 1}
CHAT_TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_PARAMETERS}}
]
RESPONSES_TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER_TOOL_PARAMETERS,
        "strict": False,
    }
]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "input_schema": WEATHER_TOOL_PARAMETERS}]
# Asks for a tool with the demo's trigger word (the demo calls tools only when asked).
QUESTION = "What is the weather in Paris tomorrow? #demo-tool Should I bring an umbrella then?"
REPLY = "demo reply to: " + QUESTION[:60]
THINKING = "demo thinking about: " + QUESTION[:40]


class Served(NamedTuple):
    app: FakeUpstream
    url: str


@pytest.fixture
async def served(nursery: trio.Nursery) -> Served:
    app = FakeUpstream()
    url = await nursery.start(serve_demo_upstream, app)
    return Served(app, url)


@pytest.fixture
async def oai(served: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=served.url + "/v1", api_key="sk-test", max_retries=0
    ) as c:
        yield c


@pytest.fixture
async def claude(served: Served) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=served.url, api_key="sk-ant", max_retries=0) as c:
        yield c


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=served.url) as c:
        yield c


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for every event of an SSE body."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


# --- serving -------------------------------------------------------------------------------------


async def test_serve_reports_the_real_bound_port_once_accepting(nursery: trio.Nursery) -> None:
    url = await nursery.start(serve_demo_upstream, DemoUpstream())
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", url)
    assert match is not None and int(match[1]) > 0
    async with httpx2.AsyncClient() as client:
        response = await client.get(url + "/v1/models")
    assert response.status_code == 200


async def test_requests_are_recorded_with_lower_case_headers_and_the_exact_body(
    served: Served, http: httpx2.AsyncClient
) -> None:
    body = b'{"model": "demo-gpt",  "messages": [{"role": "user", "content": "hi"}]}'
    await http.post(
        "/v1/chat/completions?x=1",
        content=body,
        headers={"Authorization": "Bearer sk-upstream", "X-Custom": "Yes"},
    )
    recorded = served.app.requests[-1]
    assert (recorded.method, recorded.path, recorded.query) == (
        "POST",
        "/v1/chat/completions",
        "x=1",
    )
    assert recorded.body == body
    assert ("authorization", "Bearer sk-upstream") in recorded.headers
    assert recorded.header("X-CUSTOM") == "Yes"
    assert all(name == name.lower() for name, _ in recorded.headers)


async def test_request_history_keeps_the_last_hundred(
    served: Served, http: httpx2.AsyncClient
) -> None:
    for index in range(105):
        await http.get("/v1/models", params={"n": str(index)})
    assert len(served.app.requests) == 100
    assert served.app.requests[0].query == "n=5"


# --- OpenAI Chat Completions ---------------------------------------------------------------------


async def test_chat_blocking_answer_and_usage(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="demo-gpt", messages=[{"role": "user", "content": QUESTION}]
    )
    choice = completion.choices[0]
    assert choice.message.content == REPLY
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.model == "demo-gpt"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == count_tokens("user" + QUESTION)
    assert usage.completion_tokens == count_tokens(REPLY)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens // 2


async def test_chat_stream_sends_one_delta_per_chunk_then_usage_then_done(
    oai: openai.AsyncOpenAI, http: httpx2.AsyncClient
) -> None:
    request: Any = {
        "model": "demo-gpt",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = [chunk async for chunk in await oai.chat.completions.create(**request)]
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas) == REPLY
    assert len(deltas) == 8
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == count_tokens(REPLY)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens // 2

    raw = (await http.post("/v1/chat/completions", json=request)).content
    assert raw.endswith(b"data: [DONE]\n\n")
    assert all(event is None for event, _ in sse_events(raw))


async def test_chat_stream_without_include_usage_has_no_usage_chunk(
    http: httpx2.AsyncClient,
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = sse_events((await http.post("/v1/chat/completions", json=request)).content)
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all("usage" not in chunk and chunk["choices"] for chunk in chunks)


async def test_chat_calls_the_first_tool_blocking_and_streaming(oai: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    blocking = await oai.chat.completions.create(
        model="demo-gpt", messages=messages, tools=CHAT_TOOLS
    )
    async with oai.chat.completions.stream(
        model="demo-gpt", messages=messages, tools=CHAT_TOOLS
    ) as stream:
        streamed = await stream.get_final_completion()
    for completion in (blocking, streamed):
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == REPLY
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].type == "function"
        assert calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == WEATHER_ARGUMENTS
        assert calls[0].id.startswith("call_")


async def test_chat_answers_a_tool_result_with_text(oai: openai.AsyncOpenAI) -> None:
    messages: Any = [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "22C and sunny"},
    ]
    completion = await oai.chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS)
    assert completion.choices[0].message.content == "demo reply to tool result: 22C and sunny"
    assert completion.choices[0].message.tool_calls is None


async def test_chat_reasoning_effort_is_counted_as_reasoning_tokens(
    oai: openai.AsyncOpenAI,
) -> None:
    completion = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": QUESTION}], reasoning_effort="high"
    )
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning = count_tokens(THINKING)
    assert usage.completion_tokens_details.reasoning_tokens == reasoning
    assert usage.completion_tokens == count_tokens(REPLY) + reasoning


# --- OpenAI Responses ----------------------------------------------------------------------------


async def test_responses_blocking_text_reasoning_and_usage(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(
        model="demo-gpt", input=QUESTION, instructions="be brief", reasoning={"effort": "low"}
    )
    assert response.status == "completed"
    assert response.output_text == REPLY
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert [part.text for part in reasoning.summary] == [THINKING]
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == count_tokens("be brief" + QUESTION)
    assert usage.input_tokens_details.cached_tokens == usage.input_tokens // 2
    assert usage.output_tokens_details.reasoning_tokens == count_tokens(THINKING)
    assert usage.output_tokens == count_tokens(REPLY) + count_tokens(THINKING)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


async def test_responses_stream_follows_the_real_event_sequence(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="demo-gpt", input=QUESTION, stream=True)
    events = [event async for event in stream]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    types = [event.type for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 8,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == REPLY
    assert completed.response.usage is not None
    assert completed.response.usage.input_tokens_details.cached_tokens >= 0


async def test_responses_stream_with_reasoning_and_tools_matches_blocking(
    oai: openai.AsyncOpenAI,
) -> None:
    request: Any = {
        "model": "demo-gpt",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "tools": RESPONSES_TOOLS,
    }
    blocking = await oai.responses.create(**request)
    async with oai.responses.stream(**request) as stream:
        types = [event.type async for event in stream]
        streamed = await stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in types
    assert "response.function_call_arguments.delta" in types
    for response in (blocking, streamed):
        assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
        assert response.output_text == REPLY
        call = response.output[2]
        assert isinstance(call, ResponseFunctionToolCall)
        assert call.name == "get_weather"
        assert json.loads(call.arguments) == WEATHER_ARGUMENTS
        assert response.usage is not None
        assert response.usage.output_tokens_details.reasoning_tokens == count_tokens(THINKING)
    assert streamed.usage == blocking.usage


async def test_responses_answers_a_function_call_output_with_text(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(
        model="m",
        input=[
            {"role": "user", "content": QUESTION},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "rainy"},
        ],
        tools=RESPONSES_TOOLS,
    )
    assert response.output_text == "demo reply to tool result: rainy"
    assert [item.type for item in response.output] == ["message"]


# --- Anthropic Messages --------------------------------------------------------------------------


async def test_messages_blocking_text_and_usage(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="demo-claude", max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == count_tokens("user" + QUESTION)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == count_tokens(REPLY)


async def test_messages_with_cache_control_report_cache_reads_and_writes(
    claude: anthropic.AsyncAnthropic,
) -> None:
    system: Any = [{"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}}]
    message = await claude.messages.create(
        model="m", max_tokens=10, system=system, messages=[{"role": "user", "content": "hi"}]
    )
    total = count_tokens("text" + "x" * 400 + "ephemeral" + "user" + "hi")
    usage = message.usage
    assert usage.cache_read_input_tokens == total // 2
    assert usage.cache_creation_input_tokens == total // 4
    assert usage.input_tokens == total - total // 2 - total // 4


async def test_messages_thinking_and_tool_use_blocking_and_streaming_agree(
    claude: anthropic.AsyncAnthropic,
) -> None:
    request: Any = {
        "model": "demo-claude",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": ANTHROPIC_TOOLS,
    }
    blocking = await claude.messages.create(**request)
    async with claude.messages.stream(**request) as stream:
        kinds = [
            event.delta.type if event.type == "content_block_delta" else event.type
            async for event in stream
        ]
        streamed = await stream.get_final_message()
    assert "signature_delta" in kinds and "input_json_delta" in kinds and "thinking_delta" in kinds
    for message in (blocking, streamed):
        assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
        thinking, text, tool_use = message.content
        assert isinstance(thinking, ThinkingBlock)
        assert thinking.thinking == THINKING and thinking.signature
        assert isinstance(text, TextBlock) and text.text == REPLY
        assert isinstance(tool_use, ToolUseBlock)
        assert (tool_use.name, tool_use.input) == ("get_weather", WEATHER_ARGUMENTS)
        assert tool_use.id.startswith("toolu_")
        assert message.stop_reason == "tool_use"
        assert message.usage.output_tokens == (
            count_tokens(REPLY)
            + count_tokens(THINKING)
            + count_tokens(json.dumps(WEATHER_ARGUMENTS).replace(" ", ""))
        )
    assert streamed.usage.input_tokens == blocking.usage.input_tokens


async def test_messages_stream_event_order(http: httpx2.AsyncClient) -> None:
    request = {
        "model": "m",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"},
    }
    response = await http.post(
        "/v1/messages", json=request, headers={"anthropic-version": "2023-06-01"}
    )
    events = sse_events(response.content)
    names = [name for name, _ in events]
    assert all(json.loads(data)["type"] == name for name, data in events)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    final = json.loads(events[-2][1])
    assert final["delta"]["stop_reason"] == "end_turn"
    assert set(final["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


async def test_messages_answers_a_tool_result_with_text(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="m",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[
            {"role": "user", "content": QUESTION},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "snow"}],
            },
        ],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "demo reply to tool result: snow"


async def test_beta_messages_are_served_with_the_beta_query_and_header(
    served: Served, claude: anthropic.AsyncAnthropic, http: httpx2.AsyncClient
) -> None:
    message = await claude.beta.messages.create(
        model="m",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        betas=["interleaved-thinking-2025-05-14"],
    )
    assert message.content[0].type == "text" and message.content[0].text == "demo reply to: hi"
    recorded = served.app.requests[-1]
    assert recorded.header("anthropic-beta") == "interleaved-thinking-2025-05-14"
    # this anthropic SDK sends its api_key as a bearer token, not as x-api-key
    assert recorded.header("authorization") == "Bearer sk-ant"
    assert recorded.header("anthropic-version") is not None

    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post("/v1/messages?beta=true", json=request)
    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "demo reply to: hi"}]
    assert (served.app.requests[-1].path, served.app.requests[-1].query) == (
        "/v1/messages",
        "beta=true",
    )


async def test_count_tokens(claude: anthropic.AsyncAnthropic) -> None:
    result = await claude.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": QUESTION}]
    )
    assert result.input_tokens == count_tokens("user" + QUESTION)


# --- models and errors ---------------------------------------------------------------------------


async def test_models_list_in_each_providers_shape(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    assert [model.id async for model in oai.models.list()] == ["demo-gpt", "demo-gpt-mini"]
    assert [model.id async for model in claude.models.list()] == [
        "demo-claude",
        "demo-claude-haiku",
    ]


async def test_bad_json_is_a_400_in_the_openai_shape(
    http: httpx2.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    response = await http.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="model"):
        await oai.chat.completions.create(model="", messages=[{"role": "user", "content": "x"}])


async def test_bad_json_is_a_400_in_the_anthropic_shape(
    http: httpx2.AsyncClient, claude: anthropic.AsyncAnthropic
) -> None:
    response = await http.post("/v1/messages", content=b"[1, 2")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "invalid JSON" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        await claude.messages.create(model="m", max_tokens=5, messages=[])


async def test_unknown_paths_are_404_in_the_callers_style(http: httpx2.AsyncClient) -> None:
    openai_style = await http.post("/v1/embeddings", json={})
    assert openai_style.status_code == 404
    assert openai_style.json()["error"]["code"] == "unknown_url"
    anthropic_style = await http.get("/v1/files", headers={"anthropic-version": "2023-06-01"})
    assert anthropic_style.status_code == 404
    assert anthropic_style.json()["error"]["type"] == "not_found_error"
    wrong_method = await http.get("/v1/chat/completions")
    assert wrong_method.status_code == 405


# --- pacing knobs --------------------------------------------------------------------------------


async def test_stream_chunks_pads_short_answers_with_filler_deltas(nursery: trio.Nursery) -> None:
    url = await nursery.start(serve_demo_upstream, DemoUpstream(stream_chunks=40))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x") as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        deltas = [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]
    assert len(deltas) == 40
    assert "".join(deltas) == "demo reply to: hi" + " demo" * (40 - len("demo reply to: hi"))


async def test_first_byte_and_chunk_delays_pace_the_stream(nursery: trio.Nursery) -> None:
    app = DemoUpstream(first_byte_delay_s=0.1, chunk_delay_s=0.02, stream_chunks=5)
    url = await nursery.start(serve_demo_upstream, app)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx2.AsyncClient() as client:
        start = trio.current_time()
        async with client.stream("POST", url + "/v1/chat/completions", json=request) as response:
            first_byte = None
            async for _ in response.aiter_raw():
                if first_byte is None:
                    first_byte = trio.current_time() - start
        total = trio.current_time() - start
    assert first_byte is not None and first_byte >= 0.1
    # 8 events (role, 5 deltas, finish, [DONE]) → 7 gaps of 20 ms after the first byte
    assert total >= 0.1 + 7 * 0.02


class WatchedDemo(DemoUpstream):
    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.gone = trio.Event()

    def on_client_disconnect(self, request: RecordedRequest) -> None:
        super().on_client_disconnect(request)
        self.gone.set()


async def test_demo_stops_streaming_when_the_client_disconnects(nursery: trio.Nursery) -> None:
    app = WatchedDemo(chunk_delay_s=0.01, stream_chunks=10_000)
    url = await nursery.start(serve_demo_upstream, app)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        httpx2.AsyncClient() as client,
        client.stream("POST", url + "/v1/chat/completions", json=request) as response,
    ):
        async for _ in response.aiter_raw():
            break
    with trio.fail_after(1):
        await app.gone.wait()
    assert app.client_disconnects == 1


async def test_completed_responses_are_not_reported_as_disconnects(
    served: Served, http: httpx2.AsyncClient
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True, False, True):
        response = await http.post("/v1/chat/completions", json={**request, "stream": stream})
        assert response.status_code == 200
    await http.aclose()
    # hypercorn reports http.disconnect after every finished response: let it, until nothing
    # in the process has moved for a while.
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert served.app.client_disconnects == 0
    assert served.app.disconnect_times == []
    assert not served.app.disconnected.is_set()


# --- the fake's faults ---------------------------------------------------------------------------


async def test_fail_next_answers_with_the_scripted_status_then_recovers(
    served: Served, oai: openai.AsyncOpenAI, http: httpx2.AsyncClient
) -> None:
    served.app.fail_next(503, b'{"oops": true}', headers=[("retry-after", "7")])
    response = await http.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert response.status_code == 503
    assert response.content == b'{"oops": true}'
    assert response.headers["retry-after"] == "7"

    served.app.fail_next(429, times=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError, match="scripted failure 429"):
            await oai.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    completion = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].message.content == "demo reply to: x"


async def test_fail_next_renders_the_anthropic_error_shape(
    served: Served, claude: anthropic.AsyncAnthropic
) -> None:
    served.app.fail_next(529)
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 529
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "scripted failure 529"},
    }


async def test_reset_mid_stream_drops_the_connection_after_n_events(
    served: Served, http: httpx2.AsyncClient
) -> None:
    served.app.reset_mid_stream_next(after_events=3)
    request = {
        "model": "m",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    received = b""
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete"):
        async with http.stream("POST", "/v1/messages", json=request) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received += chunk
    assert [name for name, _ in sse_events(received)] == [
        "message_start",
        "content_block_start",
        "ping",
    ]
    assert served.app.aborts == 1
    # the next request, on a fresh connection, is answered normally
    assert (await http.post("/v1/messages", json=request)).status_code == 200


async def test_reset_of_a_blocking_answer_cuts_the_body(
    served: Served, http: httpx2.AsyncClient
) -> None:
    served.app.reset_mid_stream_next(after_events=1)
    with pytest.raises(httpx2.RemoteProtocolError):
        await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )


async def test_stall_sends_headers_then_silence(served: Served, http: httpx2.AsyncClient) -> None:
    served.app.stall_next(1.0)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with http.stream(
        "POST", "/v1/chat/completions", json=request, timeout=httpx2.Timeout(5.0, read=0.2)
    ) as response:
        assert response.status_code == 200
        with pytest.raises(httpx2.ReadTimeout):
            async for _ in response.aiter_raw():
                pass


async def test_stall_then_the_normal_answer(served: Served, oai: openai.AsyncOpenAI) -> None:
    served.app.stall_next(0.1)
    start = trio.current_time()
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "demo reply to: hi"
    assert trio.current_time() - start >= 0.1


async def test_held_stream_runs_until_the_client_leaves_and_the_fake_sees_it_at_once(
    served: Served, http: httpx2.AsyncClient
) -> None:
    served.app.hold_stream_open(interval_s=0.005)
    request = {"model": "m", "input": "hi", "stream": True}
    deltas = 0
    async with http.stream("POST", "/v1/responses", json=request) as response:
        async for line in response.aiter_lines():
            if line == "event: response.output_text.delta":
                deltas += 1
                if deltas == 50:  # far beyond the 8 chunks of a normal answer
                    break
        assert served.app.open_responses == 1
    closed_at = trio.current_time()
    with trio.fail_after(1):
        await served.app.disconnected.wait()
    assert served.app.disconnect_times[-1] - closed_at < 0.1
    with trio.fail_after(1):
        await served.app.wait_idle()
    assert served.app.open_responses == 0


async def test_fragmented_stream_still_parses(
    served: Served, claude: anthropic.AsyncAnthropic
) -> None:
    served.app.fragment_next(3)
    async with claude.messages.stream(
        model="m",
        max_tokens=100,
        messages=[{"role": "user", "content": QUESTION}],
        tools=ANTHROPIC_TOOLS,
    ) as stream:
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert served.app.chunks_sent > 100


PLAIN = "write a haiku about gateways"
CLAUDE_CODE_TOOLS: Any = [
    {"name": name, "input_schema": {"type": "object", "properties": {}, "required": []}}
    for name in ("Task", "Bash", "Write", "Edit", "NotebookEdit", "TodoWrite", "Read", "Glob")
]


async def test_a_plain_prompt_gets_a_plain_answer_even_when_tools_are_offered(
    claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI
) -> None:
    message = await claude.messages.create(
        model="m",
        max_tokens=64,
        messages=[{"role": "user", "content": PLAIN}],
        tools=CLAUDE_CODE_TOOLS,
    )
    assert [b.type for b in message.content] == ["text"] and message.stop_reason == "end_turn"
    completion = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PLAIN}], tools=CHAT_TOOLS
    )
    assert completion.choices[0].message.tool_calls is None


async def test_asked_for_a_tool_the_demo_calls_only_one_that_reads(
    claude: anthropic.AsyncAnthropic,
) -> None:
    message = await claude.messages.create(
        model="m",
        max_tokens=64,
        messages=[{"role": "user", "content": f"look around {TOOL_TRIGGER}"}],
        tools=CLAUDE_CODE_TOOLS,
    )
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [
        ("text", None),
        ("tool_use", "Read"),
    ]
    writers_only = [t for t in CLAUDE_CODE_TOOLS if t["name"] in ("Bash", "Write", "Edit")]
    message = await claude.messages.create(
        model="m",
        max_tokens=64,
        messages=[{"role": "user", "content": f"do it {TOOL_TRIGGER}"}],
        tools=writers_only,
    )
    assert [b.type for b in message.content] == ["text"]


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("Read", True),
        ("Glob", True),
        ("Grep", True),
        ("get_weather", True),
        ("list_files", True),
        ("Bash", False),
        ("Write", False),
        ("MultiEdit", False),
        ("run_command", False),
        ("delete_file", False),
        ("apply_patch", False),
        ("shell", False),
        ("read_and_write_file", False),
        ("frobnicate", False),
    ],
)
def test_only_tools_that_read_are_callable_by_the_demo(name: str, allowed: bool) -> None:
    assert may_call(name) is allowed


def test_the_banner_points_at_the_dashboard_and_the_demo_routes(tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    text = demo_banner("http://127.0.0.1:3456/", token_file)
    lines = [line.strip() for line in text.splitlines()]
    assert "http://127.0.0.1:3456/" in lines  # the dashboard, on a line of its own
    assert f"export AIBRIDGED_TOKEN=$(cat {token_file})" in lines
    assert "http://127.0.0.1:3456/api/v2/aibridge/demo-anthropic" in text
