"""A lean fake upstream: a raw ASGI app replaying precomputed, real-shaped responses.

The demo upstream (``aibridged.demo``) parses every request and builds its answer from it, which
costs more CPU per request than the gateway's own hot path with 40-75 KB bodies, so at saturation it
would measure itself. This fake reads the body, looks for ``"stream":true`` and replays bytes built
once at start-up *by the demo's own wire-format code* from the bench payloads, so the shapes stay
the real ones:

    POST /v1/chat/completions   the OpenAI chat completion (JSON) or its SSE stream
    POST /v1/responses          the OpenAI response (JSON) or its SSE stream
    POST /v1/messages           the Anthropic message (JSON) or its SSE stream (~10 events)

Stream events go out one ASGI message each, as a real upstream writes them. Headers include the
request-id and rate-limit headers real providers send, so the gateway copies a realistic set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aibridged.demo import DemoUpstream, RecordedRequest
from aibridged.demo.asgi import answer_lifespan
from bench import payloads

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

STREAM_CHUNKS = 4  # text deltas: the Anthropic stream then has 10 events
_STREAM_MARKERS = (b'"stream":true', b'"stream": true')

OPENAI_RESPONSE_HEADERS: Headers = [
    (b"openai-organization", b"bench-org"),
    (b"openai-processing-ms", b"412"),
    (b"openai-version", b"2020-10-01"),
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-limit-tokens", b"30000000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-remaining-tokens", b"29990000"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-reset-tokens", b"20ms"),
    (b"x-request-id", b"req_0123456789abcdef0123456789abcdef"),
]
ANTHROPIC_RESPONSE_HEADERS: Headers = [
    (b"anthropic-ratelimit-input-tokens-limit", b"2000000"),
    (b"anthropic-ratelimit-input-tokens-remaining", b"1990000"),
    (b"anthropic-ratelimit-input-tokens-reset", b"2025-11-23T12:00:01Z"),
    (b"anthropic-ratelimit-output-tokens-limit", b"400000"),
    (b"anthropic-ratelimit-output-tokens-remaining", b"400000"),
    (b"anthropic-ratelimit-requests-limit", b"4000"),
    (b"anthropic-ratelimit-requests-remaining", b"3999"),
    (b"request-id", b"req_011CVbench0123456789abcd"),
    (b"anthropic-organization-id", b"00000000-0000-4000-8000-000000000000"),
    (b"via", b"1.1 google"),
]
_JSON = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


@dataclass(frozen=True, slots=True)
class Canned:
    """One precomputed response: a JSON body, or stream events."""

    headers: Headers
    body: bytes = b""
    events: tuple[bytes, ...] = ()

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(event) for event in self.events)


def render(
    path: str, body: bytes, headers: list[tuple[str, str]], *, chunks: int = STREAM_CHUNKS
) -> tuple[bytes, tuple[bytes, ...]]:
    demo = DemoUpstream(stream_chunks=chunks)
    request = RecordedRequest(
        method="POST", path=path, raw_path=path, query="", headers=headers, body=body
    )
    planned = demo.respond(request)
    if planned.status != 200:
        raise RuntimeError(f"the demo refused the bench payload for {path}: {planned.body!r}")
    return planned.body, tuple(planned.events or ())


ANTHROPIC_VERSION = [("anthropic-version", "2023-06-01")]


def build_responses() -> dict[tuple[str, bool], Canned]:
    """(path, stream) → the canned response, rendered by the demo from the bench payloads."""
    out: dict[tuple[str, bool], Canned] = {}
    anthropic = ANTHROPIC_VERSION
    openai = (
        ("/v1/chat/completions", payloads.openai_chat),
        ("/v1/responses", payloads.openai_responses),
    )
    for stream in (False, True):
        for path, payload in openai:
            body, events = render(path, payload(stream=stream), [])
            out[path, stream] = (
                Canned([*SSE_HEADERS, *OPENAI_RESPONSE_HEADERS], events=events)
                if stream
                else Canned([_JSON, *OPENAI_RESPONSE_HEADERS, _length(body)], body=body)
            )
        body, events = render("/v1/messages", payloads.anthropic_messages(stream=stream), anthropic)
        out["/v1/messages", stream] = (
            Canned([*SSE_HEADERS, *ANTHROPIC_RESPONSE_HEADERS], events=events)
            if stream
            else Canned([_JSON, *ANTHROPIC_RESPONSE_HEADERS, _length(body)], body=body)
        )
    return out


def _length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(body)).encode())


_NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


class FastUpstream:
    """The raw ASGI app. Counts requests; does not watch for disconnects (its answers are
    instant)."""

    def __init__(self, responses: dict[tuple[str, bool], Canned] | None = None) -> None:
        self.responses = responses if responses is not None else build_responses()
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await answer_lifespan(receive, send)
            return
        if kind != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.requests += 1
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        stream = any(marker in body for marker in _STREAM_MARKERS)
        canned = self.responses.get((scope["path"], stream))
        if canned is None:
            headers = [_JSON, _length(_NOT_FOUND)]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": _NOT_FOUND})
            return
        await send({"type": "http.response.start", "status": 200, "headers": canned.headers})
        if not canned.events:
            await send({"type": "http.response.body", "body": canned.body})
            return
        for event in canned.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
