# ruff: noqa: E501  (recorded-shape fixtures keep upstream's one-line JSON events)
"""The incremental SSE parser gives the same, correct events however a stream is chunked.

Fixtures are recorded-shape provider streams (Anthropic Messages, OpenAI Chat Completions, OpenAI
Responses) with multi-byte characters, plus a "kitchen sink" stream exercising every WHATWG rule.
Every stream is checked against an independent, deliberately naive reference parser (decode the
whole stream at once, split lines with a regex) and against hand-written expectations, whole and
split at every byte boundary, byte by byte and in random chunkings, with LF, CRLF, CR and mixed
line endings.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable

import httpx2
import pytest

from aibridged.intercept.sse import (
    ANTHROPIC_PING,
    SSEEvent,
    SSEParser,
    anthropic_error_event,
    anthropic_ping,
    encode_event,
    openai_error_event,
)

BOM = b"\xef\xbb\xbf"

# --------------------------------------------------------------------------------------------------
# Recorded-shape fixtures (LF line endings; variants are derived below).

ANTHROPIC_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":128,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user asks about 東京 weather 🌧️; I should call the tool."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check — "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"the weather in Tokyo 🗼."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"東"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"京\\", \\"unit\\": \\"°C\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

""".encode()

OPENAI_CHAT_STREAM = """\
data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":"こんにちは"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":"! 😀 Checking…"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Zürich\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{"prompt_tokens":81,"completion_tokens":17,"total_tokens":98,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

""".encode()

OPENAI_RESPONSES_STREAM = """\
event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"in_progress","model":"o4-mini-2025-04-16","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"in_progress","model":"o4-mini-2025-04-16","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_67ccd2bf17f0819081ff3bb2cf6508e6","type":"reasoning","summary":[]}}

event: response.reasoning_summary_part.added
data: {"type":"response.reasoning_summary_part.added","sequence_number":3,"item_id":"rs_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}

event: response.reasoning_summary_text.delta
data: {"type":"response.reasoning_summary_text.delta","sequence_number":4,"item_id":"rs_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":0,"summary_index":0,"delta":"**Greeting in French** ✨ 用法"}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":5,"output_index":0,"item":{"id":"rs_67ccd2bf17f0819081ff3bb2cf6508e6","type":"reasoning","summary":[{"type":"summary_text","text":"**Greeting in French** ✨ 用法"}]}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":6,"output_index":1,"item":{"id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","type":"message","status":"in_progress","role":"assistant","content":[]}}

event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":7,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":1,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":8,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":1,"content_index":0,"delta":"Bonjour 👋🏽"}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":9,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":1,"content_index":0,"text":"Bonjour 👋🏽"}

event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":10,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":1,"content_index":0,"part":{"type":"output_text","text":"Bonjour 👋🏽","annotations":[]}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":11,"output_index":1,"item":{"id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Bonjour 👋🏽","annotations":[]}]}}

event: response.completed
data: {"type":"response.completed","sequence_number":12,"response":{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"completed","model":"o4-mini-2025-04-16","usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":48}}}

""".encode()

# Every WHATWG rule in one stream; expected events written out by hand below.
KITCHEN_SINK = """\
: this is a comment
:no-space comment
retry: 3000
id: evt-1
event: greeting
data: first line
data:second line, no space
data:  two spaces keep one
data
data: 日本語 and 🎉

event: no data lines, not dispatched
id: evt-2

event:
data: empty event type means none

dataignored: x
unknown: field
data: after unknown fields
retry: 12x4
retry:
id: bad\x00id

id:
data: id cleared
: a comment inside an event
retry:15

data:

data: {"json": ["ok", 1, 2.5, null]}

data: incomplete at EOF
event: never""".encode()

KITCHEN_SINK_EXPECTED = [
    SSEEvent(
        "greeting",
        "first line\nsecond line, no space\n two spaces keep one\n\n日本語 and 🎉",
        "evt-1",
        3000,
    ),
    SSEEvent(None, "empty event type means none", "evt-2", None),
    SSEEvent(None, "after unknown fields", "evt-2", None),
    SSEEvent(None, "id cleared", None, 15),
    SSEEvent(None, "", None, None),
    SSEEvent(None, '{"json": ["ok", 1, 2.5, null]}', None, None),
]

ANTHROPIC_TYPES = [
    "message_start",
    "content_block_start",
    "ping",
    *["content_block_delta"] * 2,
    "content_block_stop",
    "content_block_start",
    *["content_block_delta"] * 2,
    "content_block_stop",
    "content_block_start",
    *["content_block_delta"] * 3,
    "content_block_stop",
    "message_delta",
    "message_stop",
]

RESPONSES_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]

STREAMS = {
    "anthropic": ANTHROPIC_STREAM,
    "openai_chat": OPENAI_CHAT_STREAM,
    "openai_responses": OPENAI_RESPONSES_STREAM,
    "kitchen_sink": KITCHEN_SINK,
}

# --------------------------------------------------------------------------------------------------
# Helpers


def reference_parse(stream: bytes) -> list[SSEEvent]:
    """Deliberately naive WHATWG parser over the whole stream: an independent oracle."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the last piece has no line ending: incomplete, discarded at EOF
    events: list[SSEEvent] = []
    data: list[str] = []
    event = ""
    last_id = ""
    retry: int | None = None
    for line in lines:
        if line == "":
            if data:
                events.append(SSEEvent(event or None, "\n".join(data), last_id or None, retry))
            data, event, retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


def parse_chunks(chunks: Iterable[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events


def with_eol(stream: bytes, eol: str) -> bytes:
    """Rewrite LF line endings as `lf`, `crlf`, `cr` or `mixed` (cycling, never forming a
    CR+LF pair that would merge two line endings into one)."""
    if eol == "lf":
        return stream
    if eol == "crlf":
        return stream.replace(b"\n", b"\r\n")
    if eol == "cr":
        return stream.replace(b"\n", b"\r")
    assert eol == "mixed"
    cycle = [b"\r\n", b"\r", b"\n"]
    parts = stream.split(b"\n")
    out = bytearray()
    prev = b""
    for i, part in enumerate(parts[:-1]):
        ending = cycle[i % 3]
        if prev == b"\r" and not part and ending == b"\n":
            ending = b"\r\n"
        out += part + ending
        prev = ending
    out += parts[-1]
    return bytes(out)


EOLS = ["lf", "crlf", "cr", "mixed"]


def variants() -> list[tuple[str, bytes]]:
    out = []
    for name, stream in STREAMS.items():
        for eol in EOLS:
            out.append((f"{name}-{eol}", with_eol(stream, eol)))
        out.append((f"{name}-bom-crlf", BOM + with_eol(stream, "crlf")))
    return out


VARIANTS = variants()
VARIANT_IDS = [name for name, _ in VARIANTS]


# --------------------------------------------------------------------------------------------------
# Expected content of the fixtures


def test_anthropic_stream_events_and_content() -> None:
    events = parse_chunks([ANTHROPIC_STREAM])
    assert [e.event for e in events] == ANTHROPIC_TYPES
    payloads = [e.json() for e in events]
    assert [p["type"] for p in payloads] == ANTHROPIC_TYPES
    assert payloads[0]["message"]["usage"]["input_tokens"] == 472
    assert payloads[2] == {"type": "ping"}
    assert payloads[3]["delta"]["thinking"].startswith("The user asks about 東京 weather 🌧️")
    text = "".join(
        p["delta"]["text"] for p in payloads if p.get("delta", {}).get("type") == "text_delta"
    )
    assert text == "Let me check — the weather in Tokyo 🗼."
    tool_json = "".join(
        p["delta"]["partial_json"]
        for p in payloads
        if p.get("delta", {}).get("type") == "input_json_delta"
    )
    assert json.loads(tool_json) == {"city": "東京", "unit": "°C"}
    assert payloads[-2]["usage"] == {"output_tokens": 89}
    assert all(e.id is None and e.retry is None for e in events)


def test_openai_chat_stream_events_and_content() -> None:
    events = parse_chunks([OPENAI_CHAT_STREAM])
    assert all(e.event is None for e in events)
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "こんにちは! 😀 Checking…"
    args = chunks[4]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"city": "Zürich"}
    assert chunks[-1]["usage"]["total_tokens"] == 98
    assert len(events) == 8


def test_openai_responses_stream_events_and_content() -> None:
    events = parse_chunks([OPENAI_RESPONSES_STREAM])
    assert [e.event for e in events] == RESPONSES_TYPES
    assert [e.json()["type"] for e in events] == RESPONSES_TYPES
    assert [e.json()["sequence_number"] for e in events] == list(range(13))
    assert events[8].json()["delta"] == "Bonjour 👋🏽"
    assert events[-1].json()["response"]["usage"]["output_tokens_details"] == {
        "reasoning_tokens": 64
    }


def test_kitchen_sink_follows_every_whatwg_rule() -> None:
    assert parse_chunks([KITCHEN_SINK]) == KITCHEN_SINK_EXPECTED


@pytest.mark.parametrize(("name", "stream"), VARIANTS, ids=VARIANT_IDS)
def test_whole_stream_matches_reference_parser(name: str, stream: bytes) -> None:
    expected = reference_parse(stream)
    assert parse_chunks([stream]) == expected
    base = name.split("-")[0]
    assert expected == reference_parse(STREAMS[base])  # line endings and BOM change nothing
    if base == "kitchen_sink":
        assert expected == KITCHEN_SINK_EXPECTED


# --------------------------------------------------------------------------------------------------
# Chunk boundaries


@pytest.mark.parametrize(("name", "stream"), VARIANTS, ids=VARIANT_IDS)
def test_split_at_every_byte_boundary_gives_the_same_events(name: str, stream: bytes) -> None:
    expected = reference_parse(stream)
    for i in range(len(stream) + 1):
        got = parse_chunks([stream[:i], stream[i:]])
        assert got == expected, f"split at byte {i}: {stream[max(0, i - 8) : i + 8]!r}"


@pytest.mark.parametrize(("name", "stream"), VARIANTS, ids=VARIANT_IDS)
def test_byte_by_byte_gives_the_same_events(name: str, stream: bytes) -> None:
    expected = reference_parse(stream)
    assert parse_chunks(stream[i : i + 1] for i in range(len(stream))) == expected


@pytest.mark.parametrize(("name", "stream"), VARIANTS, ids=VARIANT_IDS)
def test_random_chunkings_give_the_same_events(name: str, stream: bytes) -> None:
    expected = reference_parse(stream)
    rng = random.Random(name)
    for _ in range(50):
        chunks, pos = [], 0
        while pos < len(stream):
            size = rng.choice([0, 1, 2, 3, 5, 8, 13, 64, 512])
            chunks.append(stream[pos : pos + size])
            pos += size
        assert parse_chunks(chunks) == expected


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: ping\ndata: {}\n") == []
    assert parser.feed(b"\nevent: a\ndata: 1\n\ndata: 2\n\nda") == [
        SSEEvent("ping", "{}"),
        SSEEvent("a", "1"),
        SSEEvent(None, "2"),
    ]
    assert parser.feed(b"ta: 3\n") == []
    assert parser.feed(b"\n") == [SSEEvent(None, "3")]


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes "\r\n", it is not a blank line
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"\n\r") == [SSEEvent(None, "a\nb")]


def test_cr_at_chunk_end_dispatches_without_waiting_for_the_next_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [SSEEvent(None, "a")]
    assert parser.feed(b"\n") == []  # swallowed LF of a "\r\n", no extra empty line
    assert parser.feed(b"data: b\r\n\r") == [SSEEvent(None, "b")]
    assert parser.feed(b"\ndata: c\r\r") == [SSEEvent(None, "c")]


def test_cr_then_lone_cr_in_next_chunk_is_two_line_endings() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == [SSEEvent(None, "a")]


def test_empty_chunks_do_not_lose_a_pending_cr() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SSEEvent(None, "a")]


# --------------------------------------------------------------------------------------------------
# BOM, UTF-8


def test_leading_bom_is_skipped_even_when_split() -> None:
    chunkings = [
        [BOM + b"data: x\n\n"],
        [b"\xef", b"\xbb", b"\xbf", b"data: x\n\n"],
        [b"\xef\xbb", b"\xbfd", b"ata: x\n\n"],
        [b"\xef", b"", b"\xbb\xbfdata: x\n", b"\n"],
    ]
    for chunks in chunkings:
        assert parse_chunks(chunks) == [SSEEvent(None, "x")], chunks


def test_only_the_first_bom_is_skipped() -> None:
    # A BOM mid-stream, or a second one, is not stripped: the field name is then not "data".
    assert parse_chunks([BOM + BOM + b"data: x\n\n"]) == []
    assert parse_chunks([b"data: x\n\n" + BOM + b"data: y\n\n"]) == [SSEEvent(None, "x")]


def test_bom_prefix_that_is_not_a_bom_is_kept() -> None:
    # EF BB 80 (U+FEC0) shares two bytes with the BOM (EF BB BF) but is an ordinary character.
    assert parse_chunks([b"\xef\xbb", b"\x80\n", b"data: x\n\n"]) == [SSEEvent(None, "x")]
    assert parse_chunks([b"\xef", b"\n\ndata: y\n\n"]) == [SSEEvent(None, "y")]


def test_multibyte_characters_split_anywhere_decode_intact() -> None:
    text = "🎉東京😀é𝄞"
    stream = f"event: é\ndata: {text}\n\n".encode()
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            assert parse_chunks([stream[:i], stream[i:j], stream[j:]]) == [SSEEvent("é", text)]


def test_invalid_utf8_is_replaced_like_a_whole_stream_decode() -> None:
    stream = b"data: ok \xff\xfe end\ndata: cut \xe6\x9d\n\nevent: \xc3\n\n"
    expected = [SSEEvent(None, "ok \ufffd\ufffd end\ncut \ufffd")]
    assert reference_parse(stream) == expected
    for i in range(len(stream) + 1):
        assert parse_chunks([stream[:i], stream[i:]]) == expected


# --------------------------------------------------------------------------------------------------
# Fields, comments, EOF


def test_field_without_colon_is_field_with_empty_value() -> None:
    assert parse_chunks([b"data\ndata\n\n"]) == [SSEEvent(None, "\n")]
    assert parse_chunks([b"event\ndata: x\n\n"]) == [SSEEvent(None, "x")]


def test_field_names_are_case_sensitive() -> None:
    assert parse_chunks([b"Data: x\nEVENT: y\n\n"]) == []


def test_event_with_only_event_and_id_is_not_dispatched_but_id_persists() -> None:
    assert parse_chunks([b"event: lone\nid: 7\n\ndata: x\n\n"]) == [SSEEvent(None, "x", "7")]


def test_id_persists_until_changed_or_cleared() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\n"
    assert parse_chunks([stream]) == [
        SSEEvent(None, "a", "1"),
        SSEEvent(None, "b", "1"),
        SSEEvent(None, "c", "2"),
        SSEEvent(None, "d", None),
    ]


def test_retry_belongs_to_its_event_and_parser_remembers_the_last() -> None:
    parser = SSEParser()
    assert parser.retry is None
    events = parser.feed(b"retry: 250\ndata: a\n\ndata: b\n\nretry: -1\nretry: 1.5\ndata: c\n\n")
    assert events == [SSEEvent(None, "a", None, 250), SSEEvent(None, "b"), SSEEvent(None, "c")]
    assert parser.retry == 250
    parser.feed(b"retry: 9\n\n")
    assert parser.retry == 9


def test_comments_are_reported_and_never_dispatched() -> None:
    seen: list[str] = []
    parser = SSEParser(on_comment=seen.append)
    events = parser.feed(b": OPENROUTER PROCESSING\n\n:keep-alive\n")
    assert events == []
    assert seen == ["OPENROUTER PROCESSING", "keep-alive"]
    assert parser.feed(b":\ndata: x\n:  two\n\n") == [SSEEvent(None, "x")]
    assert seen == ["OPENROUTER PROCESSING", "keep-alive", "", " two"]
    assert parser.comment_count == 4


def test_comment_count_without_callback() -> None:
    parser = SSEParser()
    parser.feed(b": a\n: b\n\n")
    assert parser.comment_count == 2


def test_incomplete_event_at_eof_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: complete\n\ndata: partial\n") == [SSEEvent(None, "complete")]
    assert parser.close() == []
    assert parser.close() == []  # idempotent


def test_incomplete_line_at_eof_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: no line ending") == []
    assert parser.close() == []


def test_close_flush_incomplete_dispatches_the_pending_event() -> None:
    parser = SSEParser()
    parser.feed(b"event: e\ndata: a\ndata: b")
    assert parser.close(flush_incomplete=True) == [SSEEvent("e", "a\nb")]
    parser = SSEParser()
    parser.feed(b"event: e\ndata: a\n")
    assert parser.close(flush_incomplete=True) == [SSEEvent("e", "a")]
    parser = SSEParser()
    parser.feed(b"data: a\n\nevent: x\n")
    assert parser.close(flush_incomplete=True) == []  # no data line: nothing to dispatch


def test_feed_after_close_is_an_error() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"data: x\n\n")


@pytest.mark.parametrize(
    ("chunks", "pending"),
    [
        ([b""], 0),
        ([b"data: x"], 7),
        ([b"data: x\n"], 8),
        ([b"data: x\n", b"data: yz"], 16),
        ([b"data: x\n", b"id: 1\n", b"d"], 15),
        ([b"data: x\n\n"], 0),
        ([b"data: x\n\nevent: e\n"], 9),
        ([b"data: x\n\n", b"\n"], 0),
        ([b"data: x\n", b"\nid: 1\nda"], 8),
        ([b"event: a\n", b"\n", b"data: b\n"], 8),
        ([b"data: x\r\n\r\nda"], 2),
        ([b"\xef\xbb"], 2),
    ],
)
def test_pending_bytes_counts_bytes_since_the_last_event_boundary(
    chunks: list[bytes], pending: int
) -> None:
    parser = SSEParser()
    for chunk in chunks:
        parser.feed(chunk)
    assert parser.pending_bytes == pending
    parser.close()
    assert parser.pending_bytes == 0


def test_last_event_id_property() -> None:
    parser = SSEParser()
    parser.feed(b"id: abc\n")
    assert parser.last_event_id == "abc"


@pytest.mark.parametrize("seed", range(30))
def test_random_streams_match_reference_parser_under_random_chunking(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [
        b"data: ", b"data:", b"data", b"event: ", b"event:", b"id: ", b"id:", b"retry: ",
        b"retry:", b":", b": c", b"x", b"7", b" ", b"\n", b"\n", b"\r", b"\r\n", b"\r\n",
        b"\xe6\x9d\xb1", b"\xf0\x9f\x98\x80", b"\xff", b"\x00", BOM, b"json", b"{}",
    ]  # fmt: skip
    for _ in range(20):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 80)))
        expected = reference_parse(stream)
        chunks, pos = [], 0
        while pos < len(stream):
            size = rng.randrange(0, 6)
            chunks.append(stream[pos : pos + size])
            pos += size
        assert parse_chunks(chunks) == expected, stream


# --------------------------------------------------------------------------------------------------
# SSEEvent.json


def test_event_json_parses_data_and_raises_value_error_on_bad_json() -> None:
    assert SSEEvent("x", '{"a": [1]}').json() == {"a": [1]}
    with pytest.raises(ValueError):
        SSEEvent(None, "[DONE]").json()


# --------------------------------------------------------------------------------------------------
# Writing


def test_encode_event_exact_bytes() -> None:
    assert encode_event("ping", '{"type": "ping"}') == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert encode_event(None, "x") == b"data: x\n\n"
    assert encode_event("m", "a\nb\r\nc\rd") == b"event: m\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert encode_event(None, "") == b"data: \n\n"


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("message", "hello"),
        (None, "multi\nline\n\ndata"),
        ("x", " leading space\n  two"),
        ("y", ""),
        ("z", "\n"),
        ("ü", "東京 🎉: colon"),
        (None, ": looks like a comment"),
    ],
)
def test_encode_event_round_trips_through_the_parser(event: str | None, data: str) -> None:
    assert parse_chunks([encode_event(event, data)]) == [SSEEvent(event, data)]


def test_encode_event_rejects_line_breaks_in_event_type() -> None:
    with pytest.raises(ValueError):
        encode_event("a\nb", "x")
    with pytest.raises(ValueError):
        encode_event("a\rb", "x")


def test_anthropic_ping_is_the_exact_upstream_bytes() -> None:
    assert anthropic_ping() == ANTHROPIC_PING == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_anthropic_error_event_shape() -> None:
    raw = anthropic_error_event("overloaded_error", "Overloaded — try later")
    assert (
        raw
        == (
            'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            '"message":"Overloaded — try later"}}\n\n'
        ).encode()
    )


def test_error_events_escape_newlines_and_stay_one_data_line() -> None:
    raw = anthropic_error_event("api_error", 'line1\nline2 "quoted"')
    [event] = parse_chunks([raw])
    assert event.event == "error"
    assert event.json()["error"]["message"] == 'line1\nline2 "quoted"'
    assert raw.count(b"\n") == 3
    [event] = parse_chunks([openai_error_event("a\r\nb")])
    assert event.json()["error"]["message"] == "a\r\nb"


def test_openai_error_event_shape() -> None:
    assert openai_error_event("upstream reset") == (
        b'data: {"error":{"message":"upstream reset","type":"server_error","param":null,'
        b'"code":null}}\n\n'
    )
    [event] = parse_chunks([openai_error_event("slow", "rate_limit_error", "rate_limited")])
    assert event.event is None
    assert event.json() == {
        "error": {
            "message": "slow",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }


# --------------------------------------------------------------------------------------------------
# The official SDKs understand our own events


def _mock_client(stream: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def _first_events(stream: bytes, count: int) -> bytes:
    return b"".join(part + b"\n\n" for part in stream.split(b"\n\n")[:count])


def test_openai_sdk_raises_our_mid_stream_error_event() -> None:
    openai = pytest.importorskip("openai")
    stream = _first_events(OPENAI_CHAT_STREAM, 2) + openai_error_event("upstream went away")
    client = openai.OpenAI(api_key="k", base_url="http://gw/v1", http_client=_mock_client(stream))
    received: list[object] = []
    with pytest.raises(openai.APIError, match="upstream went away"):
        for chunk in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk)
    assert len(received) == 2


def test_anthropic_sdk_skips_our_ping_and_raises_our_error_event() -> None:
    anthropic = pytest.importorskip("anthropic")
    stream = (
        _first_events(ANTHROPIC_STREAM, 2)
        + anthropic_ping()
        + anthropic_error_event("overloaded_error", "Overloaded")
    )
    client = anthropic.Anthropic(
        api_key="k", base_url="http://gw", http_client=_mock_client(stream), max_retries=0
    )
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        for event in client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]
