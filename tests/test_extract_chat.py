"""OpenAI Chat Completions extraction: request facts, streamed and blocking answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aibridged.intercept.extract import RequestFacts, request_facts
from aibridged.intercept.routes import Api
from aibridged.records import Extracted, TokenUsage, ToolUsage
from tests.test_extract_common import assert_every_cut, extract_body, extract_stream, fixture

API = Api.CHAT_COMPLETIONS
STREAM = fixture("chat_tool_calls_stream.sse")
CID = "chatcmpl-C3kf9x2TqV7bWnR1sY8uLmZp4aEo"

WEATHER = ToolUsage(
    CID, "get_weather", "call_Qm4XbT9sJ2kLpV8rW1nYc6Ha", '{"city": "東京", "unit": "°C"}'
)
TIME = ToolUsage(CID, "get_time", "call_Zr7NfE3uK5dMqA2wB9xTg4Lo", '{"zone":"Asia/Tokyo"}')
USAGE = TokenUsage(CID, input=250, output=64, cache_read=1280, extra={"prompt_cached": 1280})


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **fields: Any) -> bytes:
    """One streamed chunk as OpenAI writes it (the test builds it; nothing of the code under
    test is used)."""
    body: dict[str, Any] = {"id": "chatcmpl-x", "object": "chat.completion.chunk", **fields}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


# -- request facts ---------------------------------------------------------------------------------


def facts(messages: Any) -> RequestFacts:
    return request_facts(API, {"model": "gpt-4.1", "messages": messages})


def test_prompt_is_a_last_user_messages_string_content() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "what now?"},
    ]
    assert facts(messages) == RequestFacts(prompt="what now?", correlating_call_id=None)


def test_prompt_is_the_last_text_part_of_a_content_list() -> None:
    content = [
        {"type": "text", "text": "context"},
        {"type": "text", "text": "describe the picture"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
    ]
    assert facts([{"role": "user", "content": content}]).prompt == "describe the picture"


def test_a_tool_message_gives_its_tool_call_id_and_no_prompt() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12°C"},
    ]
    assert facts(messages) == RequestFacts(prompt=None, correlating_call_id="call_1")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "prefill"}],
        [{"role": "system", "content": "alone"}],
        [{"role": "tool", "content": "no id"}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
        None,
        [],
        [3],
        {"role": "user"},
    ],
)
def test_no_facts_without_a_last_user_or_tool_message(messages: Any) -> None:
    assert facts(messages) == RequestFacts(prompt=None, correlating_call_id=None)


def test_a_lone_surrogate_in_the_prompt_is_kept() -> None:
    content = [{"type": "text", "text": "cut \udc80 here"}]
    assert facts([{"role": "user", "content": content}]).prompt == "cut \udc80 here"


# -- streams ---------------------------------------------------------------------------------------


def test_stream_records_interleaved_tool_calls_and_usage_at_every_cut() -> None:
    """Two tool calls whose fragments interleave, recorded by index at the finish reason; the
    usage chunk with the cached input taken out of the input."""
    assert_every_cut(API, STREAM, [WEATHER, TIME, USAGE])


def test_stream_without_a_usage_chunk_records_no_usage() -> None:
    assert_every_cut(API, fixture("chat_text_no_usage.sse"), [])


def test_a_stream_cut_after_usage_records_it_at_finish() -> None:
    assert_every_cut(API, STREAM[: STREAM.index(DONE)], [WEATHER, TIME, USAGE])


def test_a_stream_cut_mid_tool_call_keeps_only_calls_with_whole_arguments() -> None:
    """Cut before the last fragment of get_weather and before the finish reason: get_time's
    arguments are whole, get_weather's are not; no usage came."""
    last_fragment = STREAM.index('{"arguments":": \\"°C\\"}"}'.encode())
    cut = STREAM.rindex(b"data: ", 0, last_fragment)
    assert_every_cut(API, STREAM[:cut], [TIME])
    assert extract_stream(API, [STREAM[: cut + 40]]) == [TIME]


def test_usage_with_no_output_tokens_is_not_recorded_from_a_stream() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10}
    stream = chunk({"content": "x"}) + chunk({}, "stop") + chunk(choices=[], usage=usage) + DONE
    assert extract_stream(API, [stream]) == []


def test_only_the_last_of_repeated_usage_chunks_is_recorded() -> None:
    """Some compatible servers send a running usage in every chunk."""
    stream = b"".join(
        chunk({"content": "ab"[:n]}, usage={"prompt_tokens": 7, "completion_tokens": n})
        for n in (1, 2, 3)
    )
    assert extract_stream(API, [stream + DONE]) == [TokenUsage("chatcmpl-x", input=7, output=3)]


def test_tool_calls_without_an_index_are_told_apart_by_id() -> None:
    stream = (
        chunk({"tool_calls": [{"id": "call_a", "function": {"name": "a", "arguments": "{}"}}]})
        + chunk({"tool_calls": [{"id": "call_b", "function": {"name": "b", "arguments": "{"}}]})
        + chunk({"tool_calls": [{"id": "call_b", "function": {"arguments": "}"}}]})
        + chunk({}, "tool_calls")
    )
    assert extract_stream(API, [stream]) == [
        ToolUsage("chatcmpl-x", "a", "call_a", "{}"),
        ToolUsage("chatcmpl-x", "b", "call_b", "{}"),
    ]


def test_a_custom_tool_call_is_streamed_as_raw_input_and_dropped_when_cut() -> None:
    start = {"index": 0, "id": "call_c", "type": "custom", "custom": {"name": "sql", "input": ""}}
    more = {"index": 0, "custom": {"input": "SELECT 1"}}
    stream = chunk({"tool_calls": [start]}) + chunk({"tool_calls": [more]})
    assert extract_stream(API, [stream + chunk({}, "tool_calls")]) == [
        ToolUsage("chatcmpl-x", "sql", "call_c", "SELECT 1")
    ]
    assert extract_stream(API, [stream]) == []


def test_tool_calls_are_recorded_at_done_when_no_finish_reason_came() -> None:
    call = {"index": 0, "id": "call_d", "function": {"name": "f", "arguments": '{"a":'}}
    stream = chunk({"tool_calls": [call]}) + DONE
    assert extract_stream(API, [stream]) == [ToolUsage("chatcmpl-x", "f", "call_d", '{"a":')]


MALFORMED = b"".join(
    [
        b'data: {not json, "usage": {}\n\n',
        b"data: [1, 2]\n\n",
        b'data: {"choices":"none","finish_reason":"stop"}\n\n',
        b'data: {"choices":[null,7,{"index":1,"delta":{},"finish_reason":"stop"}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[null,3,{"index":0}]}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":'
        b'{"arguments":5}}]}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":"many"},"finish_reason":7}]}\n\n',
        b'data: {"usage":[1]}\n\n',
        b"data: \n\n",
    ]
)


def test_malformed_chunks_are_skipped_and_the_rest_recorded() -> None:
    """Odd chunks among the tool call fragments (a second choice finishing included) change
    nothing."""
    at = STREAM.index(b"data: ", STREAM.index(b'"name":"get_time"'))
    assert_every_cut(API, STREAM[:at] + MALFORMED + STREAM[at:], [WEATHER, TIME, USAGE])


def test_an_escaped_lone_surrogate_in_tool_arguments_is_kept() -> None:
    call = b'{"index":0,"id":"call_s","function":{"name":"echo",'
    call += b'"arguments":"{\\"t\\":\\"\\ud800\\"}"}}'
    stream = b'data: {"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[' + call + b"]}}]}\n\n"
    assert extract_stream(API, [stream + DONE]) == [
        ToolUsage("c1", "echo", "call_s", '{"t":"\ud800"}')
    ]


# -- blocking --------------------------------------------------------------------------------------


def test_blocking_body_records_usage_with_every_extra_and_each_tool_call() -> None:
    cid = "chatcmpl-C3kh2VwQ9rLm5TzN8yXb1sKa7pEd"
    expected: list[Extracted] = [
        TokenUsage(
            cid,
            input=242,
            output=530,
            cache_read=3968,
            extra={
                "prompt_audio": 12,
                "prompt_cached": 3968,
                "completion_accepted_prediction": 7,
                "completion_rejected_prediction": 3,
                "completion_reasoning": 448,
            },
        ),
        ToolUsage(
            cid,
            "read_file",
            "call_8HkT2mWq5ZrY1xLp9VnB3sDc",
            '{"path": "src/main.py", "lines": [1, 40]}',
        ),
        ToolUsage(cid, "list_dir", "call_4JcR7nXe2QsV6tMy8KbL1wFa", '{"path":"src"}'),
    ]
    assert extract_body(API, fixture("chat_blocking.json")) == expected


def test_blocking_usage_with_no_output_is_still_recorded() -> None:
    body = b'{"id":"c2","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}'
    assert extract_body(API, body) == [TokenUsage("c2", input=3, output=0)]


def test_blocking_custom_tool_call_records_its_raw_input() -> None:
    call = {"id": "call_k", "type": "custom", "custom": {"name": "sql", "input": "SELECT 2"}}
    body = {"id": "c3", "choices": [{"index": 0, "message": {"tool_calls": [call]}}]}
    assert extract_body(API, json.dumps(body).encode()) == [
        ToolUsage("c3", "sql", "call_k", "SELECT 2")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"choices":"x","usage":null}',
        b'{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f"}}]}}]}',
        b'{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}',
    ],
)
def test_malformed_bodies_record_nothing(body: bytes) -> None:
    assert extract_body(API, body) == []
