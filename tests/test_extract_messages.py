"""Anthropic Messages extraction: request facts, streamed and blocking answers."""

from __future__ import annotations

from typing import Any

import pytest

from aibridged.intercept.extract import RequestFacts, request_facts
from aibridged.intercept.routes import Api
from aibridged.records import Extracted, ModelThought, TokenUsage, ToolUsage
from tests.test_extract_common import (
    assert_every_cut,
    extract_body,
    extract_stream,
    fixture,
    without_event_names,
)

API = Api.MESSAGES
STREAM = fixture("messages_thinking_tool.sse")
MSG = "msg_01HqV8tXyZk3QW9bN2mR5sLp"

START_USAGE = TokenUsage(
    MSG,
    input=1204,
    output=3,
    cache_read=15360,
    cache_write=2048,
    extra={
        "cache_creation_input": 2048,
        "cache_read_input": 15360,
        "cache_ephemeral_1h_input": 1536,
        "cache_ephemeral_5m_input": 512,
    },
)
THOUGHT = ModelThought(
    MSG,
    "The user wants the weather in 東京 🌧️ and the time there; two tools, in parallel.",
    "thinking",
)
WEATHER = ToolUsage(
    MSG, "get_weather", "toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"city": "東京", "unit": "°C"}'
)
TIME = ToolUsage(MSG, "current_time", "toolu_01Kp9ZxWq2RtYvB7nM4cLdE8", "{}")
DELTA_USAGE = TokenUsage(MSG, input=0, output=187)
STREAM_RECORDS: list[Extracted] = [START_USAGE, THOUGHT, WEATHER, TIME, DELTA_USAGE]


# -- request facts ---------------------------------------------------------------------------------


def facts(messages: Any) -> RequestFacts:
    return request_facts(API, {"model": "claude-sonnet-4-5", "messages": messages})


def test_prompt_is_a_last_user_messages_string_content() -> None:
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "the real question"},
    ]
    assert facts(messages) == RequestFacts(prompt="the real question", correlating_call_id=None)


def test_prompt_is_the_last_text_block_of_a_content_list() -> None:
    content = [
        {"type": "text", "text": "<system-reminder>context</system-reminder>"},
        {"type": "text", "text": "fix the test", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
    ]
    assert facts([{"role": "user", "content": content}]).prompt == "fix the test"


def test_no_prompt_when_the_last_message_is_the_assistants() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "prefill"}]
    assert facts(messages) == RequestFacts(prompt=None, correlating_call_id=None)


def test_a_tool_result_gives_the_last_tool_use_id_and_no_prompt() -> None:
    content = [
        {"type": "tool_result", "tool_use_id": "toolu_first", "content": "12°C"},
        {"type": "tool_result", "tool_use_id": "toolu_second", "content": [{"type": "text"}]},
    ]
    assert facts([{"role": "user", "content": content}]) == RequestFacts(
        prompt=None, correlating_call_id="toolu_second"
    )


def test_a_tool_result_with_a_text_block_gives_both() -> None:
    content = [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "done"},
        {"type": "text", "text": "now commit it"},
    ]
    assert facts([{"role": "user", "content": content}]) == RequestFacts(
        prompt="now commit it", correlating_call_id="toolu_a"
    )


def test_a_tool_result_without_an_id_is_passed_over() -> None:
    content = [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "x"},
        {"type": "tool_result", "tool_use_id": "", "content": "y"},
    ]
    assert facts([{"role": "user", "content": content}]).correlating_call_id == "toolu_a"


@pytest.mark.parametrize(
    "messages",
    [None, [], "hello", [None], [{"role": "user"}], [{"role": "user", "content": 7}]],
)
def test_odd_message_shapes_give_no_facts(messages: Any) -> None:
    assert facts(messages) == RequestFacts(prompt=None, correlating_call_id=None)


def test_a_lone_surrogate_in_the_prompt_is_kept() -> None:
    assert (
        facts([{"role": "user", "content": "broken \ud800 emoji"}]).prompt == "broken \ud800 emoji"
    )


# -- streams ---------------------------------------------------------------------------------------


def test_stream_records_at_every_cut() -> None:
    """Usage at message_start (cache read and write apart, the extras), the thinking, both tool
    calls (an empty input is "{}"), the output of message_delta; the redacted thinking, the
    signature and the text are not recorded."""
    assert_every_cut(API, STREAM, STREAM_RECORDS)


def test_stream_without_event_names_records_the_same() -> None:
    assert extract_stream(API, [without_event_names(STREAM)]) == STREAM_RECORDS


def test_a_cut_stream_keeps_usage_seen_and_drops_the_half_tool_call() -> None:
    """Cut after the get_weather deltas, before its content_block_stop (mid-event, too)."""
    stop = STREAM.index(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":3}')
    for end in (stop, stop + 30):
        assert_every_cut(API, STREAM[:end], [START_USAGE, THOUGHT])


def test_a_cut_thinking_block_is_dropped() -> None:
    signature = STREAM.index(b'"signature_delta"')
    assert extract_stream(API, [STREAM[:signature]]) == [START_USAGE]


MALFORMED = b"""\
event: message_delta
data: {not json

event: content_block_start
data: {"type":"content_block_start","index":"3","content_block":[]}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":17}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":"input_json_delta"}

event: content_block_delta
data: ["input_json_delta"]

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"thinking_delta","thinking":"no"}}

event: content_block_stop
data: {"type":"content_block_stop","index":99}

event: content_block_stop
data: null

event: message_start
data: {"type":"message_start","message":"msg"}

event: message_delta
data: {"type":"message_delta","usage":[187]}

event: content_block_start
data: {"type":"content_block_start","index":5,"content_block":{"type":"tool_use","name":7}}

event: content_block_stop
data: {"type":"content_block_stop","index":5}

"""


def test_malformed_events_are_skipped_and_the_rest_recorded() -> None:
    """Every odd event lands while the get_weather block is open; none changes a record."""
    at = STREAM.index(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3')
    assert_every_cut(API, STREAM[:at] + MALFORMED + STREAM[at:], STREAM_RECORDS)


def test_an_escaped_lone_surrogate_in_a_stream_is_kept() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_s","usage":'
        b'{"input_tokens":1,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"thinking","thinking":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"thinking_delta","thinking":"half \\ud83d emoji"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    )
    assert extract_stream(API, [stream]) == [
        TokenUsage("msg_s", input=1, output=1),
        ModelThought("msg_s", "half \ud83d emoji", "thinking"),
    ]


# -- blocking --------------------------------------------------------------------------------------


def test_blocking_body_records_usage_thinking_and_tool_use() -> None:
    """Input as compact JSON in the model's key order; server_tool_use, the search result and
    the redacted thinking are not recorded; web searches count as an extra."""
    msg = "msg_01Aq9Wd3Ub7Xz5Rk2Lm8Nv4T"
    assert extract_body(API, fixture("messages_blocking.json")) == [
        TokenUsage(
            msg,
            input=2679,
            output=305,
            cache_read=4096,
            cache_write=0,
            extra={"web_search_requests": 1, "cache_read_input": 4096},
        ),
        ModelThought(msg, "I should search for the release date, then write the note.", "thinking"),
        ToolUsage(
            msg,
            "write_note",
            "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
            '{"title":"Python 3.14","tags":["release","python"],'
            '"body":{"date":"2025-10-07","source":"PEP 745"},"pinned":false}',
        ),
    ]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'"message"', b'{"content":"text","usage":7}', b'{"content":[1,null]}'],
)
def test_malformed_bodies_record_nothing(body: bytes) -> None:
    assert extract_body(API, body) == []


def test_a_tool_use_without_input_records_an_empty_object() -> None:
    body = b'{"id":"msg_1","content":[{"type":"tool_use","id":"toolu_1","name":"now"}]}'
    assert extract_body(API, body) == [ToolUsage("msg_1", "now", "toolu_1", "{}")]
