# ruff: noqa: E501
"""The relay alone: bytes out equal bytes in, and the side parser sees every event, whatever the
upstream's chunking (each recorded stream is re-cut at every byte boundary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import trio

from aibridged.intercept.relay import Exchange, relay_exchange
from aibridged.intercept.sse import SSEEvent, SSEParser
from aibridged.intercept.wire import WireFormat

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":5}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think \xe2\x80\x94 \xf0\x9f\xa4\x94"}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"path\\": \\"a.py\\"}"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
CHAT_STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo \xe6\x97\xa5\xe6\x9c\xac"}}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)


class _Collector:
    def __init__(self) -> None:
        self.events: list[SSEEvent] = []
        self.bodies: list[bytes] = []

    def on_event(self, event: SSEEvent) -> None:
        self.events.append(event)

    def on_body(self, body: bytes) -> None:
        self.bodies.append(body)


class _Client:
    """The ASGI side of one exchange: records what is sent; never disconnects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def _transport(payload: bytes, cut: int, content_type: str) -> httpx2.MockTransport:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), cut):
            yield payload[i : i + cut]

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=pieces())

    return httpx2.MockTransport(handler)


async def _relay(
    payload: bytes, cut: int, fmt: WireFormat, stream: bool
) -> tuple[bytes, _Collector, dict[str, Any]]:
    asgi = _Client()
    observer = _Collector()
    content_type = "text/event-stream" if stream else "application/json"
    async with httpx2.AsyncClient(transport=_transport(payload, cut, content_type)) as client:
        exchange = Exchange(fmt, "POST", "http://upstream/v1/x", [], b"{}", stream=stream)
        await relay_exchange(client, exchange, asgi.receive, asgi.send, observer)
    assert asgi.sent[-1]["more_body"] is False
    return asgi.body, observer, asgi.sent[0]


@pytest.mark.parametrize(
    ("payload", "fmt"), [(ANTHROPIC_STREAM, WireFormat.ANTHROPIC), (CHAT_STREAM, WireFormat.OPENAI)]
)
async def test_streams_relay_byte_for_byte_at_every_chunk_size(
    payload: bytes, fmt: WireFormat
) -> None:
    expected_events = SSEParser().feed(payload)
    for cut in range(1, len(payload) + 1, 1 if len(payload) < 600 else 3):
        body, observer, start = await _relay(payload, cut, fmt, stream=True)
        assert body == payload, cut
        assert observer.events == expected_events, cut
        assert start["status"] == 200


async def test_split_points_cover_every_byte_boundary() -> None:
    """Two-piece splits at every offset: the upstream's first chunk ends at byte i."""
    expected = SSEParser().feed(ANTHROPIC_STREAM)
    for i in range(1, len(ANTHROPIC_STREAM)):
        payload_pieces = [ANTHROPIC_STREAM[:i], ANTHROPIC_STREAM[i:]]

        async def pieces(p: list[bytes] = payload_pieces) -> AsyncIterator[bytes]:
            for piece in p:
                yield piece

        def handler(request: httpx2.Request, p: Any = pieces) -> httpx2.Response:
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=p())

        asgi = _Client()
        observer = _Collector()

        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            exchange = Exchange(
                WireFormat.ANTHROPIC, "POST", "http://u/v1/messages", [], b"{}", stream=True
            )
            await relay_exchange(client, exchange, asgi.receive, asgi.send, observer)
        assert asgi.body == ANTHROPIC_STREAM
        assert observer.events == expected


async def test_blocking_body_is_relayed_and_observed_whole() -> None:
    payload = b'{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":1}}'
    body, observer, start = await _relay(payload, 7, WireFormat.ANTHROPIC, stream=False)
    assert body == payload
    assert observer.bodies == [payload]
    assert (b"content-type", b"application/json") in start["headers"]


async def test_a_blocking_body_cut_upstream_is_not_ended_cleanly() -> None:
    """Without Content-Length the only way to tell the client is to leave the response
    unfinished (the server then drops the connection), not to end it with what arrived."""

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"id":"x","choi'
        raise httpx2.ReadError("connection reset")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=pieces())

    asgi = _Client()
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        exchange = Exchange(
            WireFormat.OPENAI, "POST", "http://u/v1/chat/completions", [], b"{}", stream=False
        )
        outcome = await relay_exchange(client, exchange, asgi.receive, asgi.send, _Collector())
    assert outcome.error
    assert all(m.get("more_body", True) for m in asgi.sent[1:])


async def test_an_unusable_upstream_url_is_a_400_not_a_crash() -> None:
    asgi = _Client()
    async with httpx2.AsyncClient(transport=_transport(b"", 1, "application/json")) as client:
        exchange = Exchange(
            WireFormat.ANTHROPIC, "POST", "http://u/v1/\x00", [], b"{}", stream=False
        )
        outcome = await relay_exchange(client, exchange, asgi.receive, asgi.send, _Collector())
    assert outcome.status == 400 and asgi.sent[0]["status"] == 400
    assert b"invalid upstream URL" in asgi.body
