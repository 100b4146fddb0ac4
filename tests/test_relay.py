# ruff: noqa: E501
"""The relay alone: bytes out equal bytes in (whole events only), the side parser sees every event
the fixture holds, whatever the upstream's chunking; broken, oversized and foreign streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from aibridged.errors import UpstreamProtocolError
from aibridged.intercept.client import RelayOutcome
from aibridged.intercept.relay import RelayPlan, relay_response
from aibridged.intercept.sse import SSEEvent
from aibridged.intercept.wire import WireFormat
from tests.canned import open_canned

# Each fixture is its list of events; the wire bytes are built from that list, and the expected
# events are the list itself, never what the parser under test makes of the bytes.
ANTHROPIC_EVENTS = [
    (
        "message_start",
        '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":5}}}',
    ),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think — 🤔"}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"path\\": \\"a.py\\"}"}}',
    ),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]
CHAT_EVENTS = [
    (
        None,
        '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}',
    ),
    (
        None,
        '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo 日本"}}]}',
    ),
    (
        None,
        '{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}',
    ),
    (None, "[DONE]"),
]


def wire(events: Iterable[tuple[str | None, str]], newline: str = "\n") -> bytes:
    out = ""
    for name, data in events:
        if name is not None:
            out += f"event: {name}{newline}"
        out += f"data: {data}{newline}{newline}"
    return out.encode()


def expected(events: Iterable[tuple[str | None, str]]) -> list[SSEEvent]:
    return [SSEEvent(name, data) for name, data in events]


ANTHROPIC_STREAM = wire(ANTHROPIC_EVENTS)
CHAT_STREAM = wire(CHAT_EVENTS, "\r\n")


class Collector:
    def __init__(self) -> None:
        self.events: list[SSEEvent] = []
        self.bodies: list[bytes] = []

    def on_event(self, event: SSEEvent) -> None:
        self.events.append(event)

    def on_body(self, body: bytes) -> None:
        self.bodies.append(body)


class Client:
    """The ASGI side: records what is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    @property
    def ended(self) -> bool:
        return self.sent[-1].get("more_body") is False


async def relay(
    pieces: Iterable[bytes | float],
    fmt: WireFormat = WireFormat.ANTHROPIC,
    *,
    content_type: str = "text/event-stream",
    cut_connection: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
    chunked: bool = True,
    **plan: Any,
) -> tuple[Client, Collector, RelayOutcome]:
    client, observer, outcome = Client(), Collector(), RelayOutcome()
    finished: list[int] = []

    def before_end() -> None:
        finished.append(len(client.sent))

    settings = {"intercepted": True, **plan}
    async with open_canned(
        pieces, content_type, cut=cut_connection, headers=headers, chunked=chunked
    ) as response:
        await relay_response(
            response,
            RelayPlan(fmt, **settings),
            client.send,
            outcome,
            observer=observer,
            before_end=before_end,
        )
    if outcome.complete:
        assert finished == [len(client.sent) - 1], "before_end runs once, just before the end"
    return client, observer, outcome


def cut(payload: bytes, size: int) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


@pytest.mark.parametrize(
    ("payload", "events", "fmt"),
    [
        (ANTHROPIC_STREAM, ANTHROPIC_EVENTS, WireFormat.ANTHROPIC),
        (CHAT_STREAM, CHAT_EVENTS, WireFormat.OPENAI),
    ],
)
async def test_streams_relay_byte_for_byte_at_every_chunk_size(
    payload: bytes, events: list[tuple[str | None, str]], fmt: WireFormat
) -> None:
    for size in range(1, len(payload) + 1, 1 if len(payload) < 600 else 3):
        client, observer, outcome = await relay(cut(payload, size), fmt)
        assert client.body == payload, size
        assert observer.events == expected(events), size
        assert client.sent[0]["status"] == 200 and client.ended
        assert outcome.events == len(events) and not outcome.error


async def test_split_points_cover_every_byte_boundary() -> None:
    """Two-piece splits at every offset: the upstream's first chunk ends at byte i."""
    for i in range(1, len(ANTHROPIC_STREAM)):
        pieces = [ANTHROPIC_STREAM[:i], ANTHROPIC_STREAM[i:]]
        client, observer, _ = await relay(pieces)
        assert client.body == ANTHROPIC_STREAM, i
        assert observer.events == expected(ANTHROPIC_EVENTS), i


async def test_only_whole_events_reach_the_client_at_every_cut() -> None:
    """Whatever the chunking, each body message the client gets ends at an event boundary."""
    for size in (1, 2, 5, 17, 64):
        client, _, _ = await relay(cut(ANTHROPIC_STREAM, size))
        for message in client.sent[1:]:
            assert message["body"] == b"" or message["body"].endswith(b"\n\n"), size


@pytest.mark.parametrize("fmt", [WireFormat.ANTHROPIC, WireFormat.OPENAI])
async def test_a_stream_broken_mid_event_ends_with_an_error_event_not_half_an_event(
    fmt: WireFormat,
) -> None:
    payload = ANTHROPIC_STREAM if fmt is WireFormat.ANTHROPIC else CHAT_STREAM
    whole = (
        wire(ANTHROPIC_EVENTS[:3]) if fmt is WireFormat.ANTHROPIC else wire(CHAT_EVENTS[:2], "\r\n")
    )
    broken_at = len(whole) + 25  # inside the next event
    client, _observer, outcome = await relay(cut(payload[:broken_at], 40), fmt, cut_connection=True)
    assert client.body.startswith(whole)
    error_event = client.body[len(whole) :]
    parsed = [line for line in error_event.split(b"\n") if line.startswith(b"data: ")]
    [data] = parsed
    payload_json = json.loads(data[6:])
    assert "upstream stream failed" in json.dumps(payload_json)
    if fmt is WireFormat.ANTHROPIC:
        assert error_event.startswith(b"event: error\n")
        assert payload_json["error"]["type"] == "api_error"
    else:
        assert set(payload_json) == {"error"}
    assert client.ended and "connection failed" in outcome.error


async def test_a_blocking_body_is_relayed_and_observed_whole() -> None:
    payload = b'{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":1}}'
    length = [(b"content-length", str(len(payload)).encode())]
    client, observer, outcome = await relay(
        cut(payload, 7), content_type="application/json", headers=length, chunked=False
    )
    assert client.body == payload and client.ended
    assert observer.bodies == [payload]
    assert (b"content-length", str(len(payload)).encode()) in client.sent[0]["headers"]
    assert outcome.bytes_out == len(payload)


async def test_a_blocking_body_cut_upstream_is_not_ended_cleanly() -> None:
    """The only way to tell the client is to leave the response unfinished (the server then
    drops the connection), not to end it with what arrived."""
    client, observer, outcome = await relay(
        [b'{"id":"x","choi'], content_type="application/json", cut_connection=True
    )
    assert outcome.error and not outcome.complete
    assert all(m.get("more_body", True) for m in client.sent[1:])
    assert observer.bodies == []


async def test_an_answer_the_relay_does_not_understand_is_refused_before_any_byte() -> None:
    client = Client()
    async with open_canned([b"\x00\x00\x10binary"], "application/vnd.amazon.eventstream") as r:
        with pytest.raises(UpstreamProtocolError, match=r"application/vnd\.amazon\.eventstream"):
            await relay_response(
                r,
                RelayPlan(WireFormat.ANTHROPIC, intercepted=True),
                client.send,
                RelayOutcome(),
                observer=None,
                before_end=lambda: None,
            )
    assert client.sent == []


async def test_passthrough_relays_any_content_type_as_it_is() -> None:
    client, _, _ = await relay([b"\x89PNG..."], content_type="image/png", intercepted=False)
    assert (
        client.body == b"\x89PNG..."
        and (b"content-type", b"image/png") in client.sent[0]["headers"]
    )


class UpperCaser:
    """A transcoder: reads `text/plain` lines, emits each as an event in capitals."""

    media_type = "text/plain"

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self.held += chunk
        *lines, self.held = self.held.split(b"\n")
        return [SSEEvent("line", line.decode().upper()) for line in lines]

    def finish(self) -> list[SSEEvent]:
        return [SSEEvent("line", self.held.decode().upper())] if self.held else []


async def test_the_event_path_parses_transforms_and_re_emits_as_sse() -> None:
    client, observer, outcome = await relay(
        cut(b"one\ntwo\nthr", 2), content_type="text/plain", transcoder=UpperCaser()
    )
    assert (
        client.body
        == b"event: line\ndata: ONE\n\nevent: line\ndata: TWO\n\nevent: line\ndata: THR\n\n"
    )
    assert (b"content-type", b"text/event-stream; charset=utf-8") in client.sent[0]["headers"]
    assert [e.data for e in observer.events] == ["ONE", "TWO", "THR"]
    assert outcome.events == 3 and client.ended


async def test_an_event_larger_than_the_limit_is_relayed_unparsed() -> None:
    big = b"event: content_block_delta\ndata: " + b"x" * 5000 + b"\n\n"
    payload = wire(ANTHROPIC_EVENTS[:1]) + big + wire(ANTHROPIC_EVENTS[-1:])
    client, observer, outcome = await relay(cut(payload, 512), max_event_bytes=1024)
    assert client.body == payload
    assert outcome.parse_abandoned
    assert observer.events == expected(ANTHROPIC_EVENTS[:1])  # nothing after it is parsed
    assert client.ended


async def test_an_oversized_blocking_body_is_relayed_but_not_observed() -> None:
    payload = b'{"a":"' + b"y" * 4000 + b'"}'
    client, observer, outcome = await relay(
        cut(payload, 100), content_type="application/json", max_event_bytes=1000
    )
    assert client.body == payload and outcome.parse_abandoned and observer.bodies == []


async def test_pings_go_between_whole_events_while_the_upstream_is_silent(
    autojump_clock: object,
) -> None:
    pieces: list[bytes | float] = [
        wire(ANTHROPIC_EVENTS[:1]),
        b"event: content_block_start\ndata: {",  # half an event, then silence
        25.0,
        b'"type":"content_block_start"}\n\n',
    ]
    client, _observer, outcome = await relay(pieces, ping_interval_s=10)
    assert outcome.pings == 2
    assert client.body == (
        wire(ANTHROPIC_EVENTS[:1])
        + b'event: ping\ndata: {"type": "ping"}\n\n' * 2
        + b'event: content_block_start\ndata: {"type":"content_block_start"}\n\n'
    )


async def test_a_silent_upstream_times_out_into_an_error_event(autojump_clock: object) -> None:
    client = Client()
    outcome = RelayOutcome()
    async with open_canned([wire(ANTHROPIC_EVENTS[:1]), 700.0], read_timeout_s=600) as r:
        await relay_response(
            r,
            RelayPlan(WireFormat.ANTHROPIC, intercepted=True, ping_interval_s=10),
            client.send,
            outcome,
            observer=None,
            before_end=lambda: None,
        )
    assert "timed out" in outcome.error and outcome.pings == 59  # every 10 s of the 600 s
    assert client.body.endswith(b"\n\n") and b"event: error" in client.body


async def test_holding_a_long_event_costs_linear_time() -> None:
    """A 4 MiB event (CRLF lines) in 16 KiB chunks: the held tail is not rescanned per chunk
    (that took 5.7 s; now a fraction of one)."""
    line = b"data: " + b"x" * 58 + b"\r\n"
    event = line * (4 * 1024 * 1024 // len(line)) + b"\r\n"
    started = time.perf_counter()
    client, _, outcome = await relay(cut(event, 16 * 1024), max_event_bytes=8 * 1024 * 1024)
    assert client.body == event and outcome.events == 1
    assert time.perf_counter() - started < 2.0
