"""The demo upstream as a raw ASGI application, and ``serve_demo_upstream`` to run it on hypercorn.

Routes (HEAD answers as GET does, without the body; anything else is 404, a known path with the
wrong method 405, both in the caller's error shape — Anthropic's when the path is under
``/v1/messages`` or the request carries ``anthropic-version`` or ``x-api-key``, OpenAI's
otherwise):

    POST /v1/chat/completions        OpenAI Chat Completions, blocking or SSE
    POST /v1/responses               OpenAI Responses, blocking or SSE
    POST /v1/messages                Anthropic Messages, blocking or SSE (``?beta=true`` accepted)
    POST /v1/messages/count_tokens   Anthropic token count
    GET  /v1/models                  OpenAI's list, or Anthropic's for an Anthropic-looking request
    POST /chat/completions, /responses, GET /models
                                     the same, at the paths GitHub Copilot's API uses (no /v1)

Any key is accepted. Every request is recorded in ``DemoUpstream.requests`` (the last 100) so tests
can check what a gateway sent upstream. While a response is being delivered the app watches
``receive()`` for ``http.disconnect`` and stops at once when the client goes away.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeAlias

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from . import anthropic_format, openai_format
from .reply import FILLER_DELTA, BadRequest, JsonObject, Reply, dump_json, parse_json_object

Scope: TypeAlias = Mapping[str, Any]
Message: TypeAlias = Mapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[dict[str, Any]], Awaitable[None]]
Headers: TypeAlias = list[tuple[bytes, bytes]]

REQUEST_HISTORY = 100
KEEP_ALIVE_TIMEOUT_S = 75.0
KEEP_ALIVE_MAX_REQUESTS = 1_000_000
BACKLOG = 2048

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One request as the demo received it. Header names are lower-case."""

    method: str
    path: str
    raw_path: str  # as sent on the request line, percent-encoding kept
    query: str
    peer: str = ""  # the client's host:port (one value per connection)
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_anthropic(self) -> bool:
        return self.path.startswith("/v1/messages") or any(
            key in ("anthropic-version", "x-api-key") for key, _ in self.headers
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResponse:
    """A planned response: a complete ``body``, or ``events`` (SSE chunks, possibly endless)."""

    status: int
    headers: Headers
    body: bytes = b""
    events: Iterable[bytes] | None = None


def error_response(request: RecordedRequest, status: int, message: str) -> DemoResponse:
    """A response in the error shape of the API the request is talking to."""
    if request.is_anthropic:
        body = anthropic_format.error_body(message, status=status)
    else:
        body = openai_format.error_body(message, status=status)
    return DemoResponse(status=status, headers=[_JSON], body=body)


async def read_request(scope: Scope, receive: Receive) -> RecordedRequest | None:
    """Read the whole request body; None when the client disconnects first."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return RecordedRequest(
        method=scope["method"],
        path=scope["path"],
        raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
        query=scope["query_string"].decode("latin-1"),
        peer=":".join(map(str, scope.get("client") or ())),
        headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
        body=bytes(body),
    )


async def send_start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_events(send: Send, events: Iterable[bytes], *, delay_s: float) -> int:
    """Send each chunk as its own body message, ``delay_s`` apart; the body stays open."""
    sent = 0
    for chunk in events:
        if sent and delay_s > 0:
            await trio.sleep(delay_s)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += 1
    return sent


@dataclass(slots=True)
class Delivery:
    """One response on its way out; ``complete`` once its last body message is being sent.

    hypercorn reports ``http.disconnect`` after every finished response too; only a disconnect
    before ``complete`` is the client going away.
    """

    request: RecordedRequest
    complete: bool = False

    async def finish(self, send: Send, body: bytes = b"") -> None:
        """Send the last body message."""
        self.complete = True
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the ASGI lifespan protocol (nothing to start or stop)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class DemoUpstream:
    """A local LLM upstream speaking the OpenAI and Anthropic wire formats.

    ``stream_chunks`` text deltas per streamed answer, ``chunk_delay_s`` between stream events,
    ``first_byte_delay_s`` before the response starts.
    """

    def __init__(
        self,
        *,
        chunk_delay_s: float = 0.0,
        stream_chunks: int = 8,
        first_byte_delay_s: float = 0.0,
    ) -> None:
        if stream_chunks < 1:
            raise ValueError("stream_chunks must be at least 1")
        self.chunk_delay_s = chunk_delay_s
        self.stream_chunks = stream_chunks
        self.first_byte_delay_s = first_byte_delay_s
        self.requests: deque[RecordedRequest] = deque(maxlen=REQUEST_HISTORY)
        self.client_disconnects = 0
        self._seq = itertools.count(1)
        self._routes: dict[str, tuple[str, Callable[[RecordedRequest, bool], DemoResponse]]] = {
            "/v1/chat/completions": ("POST", self._chat_completions),
            "/v1/responses": ("POST", self._responses),
            "/v1/messages": ("POST", self._messages),
            "/v1/messages/count_tokens": ("POST", self._count_tokens),
            "/v1/models": ("GET", self._models),
            # GitHub Copilot's API has no /v1 (its Messages are at /v1/messages).
            "/chat/completions": ("POST", self._chat_completions),
            "/responses": ("POST", self._responses),
            "/models": ("GET", self._models),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        if request is None:
            return
        self.requests.append(request)
        await self.handle(request, receive, send)

    async def handle(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        """Answer one recorded request (a seam for fakes that script faults)."""
        await self.deliver(request, self.respond(request), receive, send)

    # --- planning -------------------------------------------------------------------------------

    def respond(self, request: RecordedRequest, *, endless: bool = False) -> DemoResponse:
        """Plan the response to ``request``. ``endless``: a streamed answer never finishes."""
        route = self._routes.get(request.path)
        if route is None:
            return error_response(request, 404, f"route not found: {request.method} {request.path}")
        method, handler = route
        if request.method != method and not (request.method == "HEAD" and method == "GET"):
            return error_response(
                request, 405, f"method not allowed: {request.method} {request.path}"
            )
        try:
            return handler(request, endless)
        except BadRequest as exc:
            return error_response(request, 400, str(exc))

    def _reply(
        self,
        request: RecordedRequest,
        build: Callable[..., Reply],
        endless: bool,
    ) -> tuple[JsonObject, Reply, bool]:
        payload = parse_json_object(request.body)
        reply = build(payload, seq=next(self._seq), stream_chunks=self.stream_chunks)
        stream = payload.get("stream") is True
        if stream and endless:
            reply = replace(reply, text_deltas=itertools.repeat(FILLER_DELTA), tool_call=None)
        return payload, reply, stream

    @staticmethod
    def _request_id(reply: Reply, name: bytes) -> tuple[bytes, bytes]:
        return (name, f"req_demo{reply.seq:06d}".encode())

    def _chat_completions(self, request: RecordedRequest, endless: bool) -> DemoResponse:
        payload, reply, stream = self._reply(request, openai_format.chat_reply, endless)
        request_id = self._request_id(reply, b"x-request-id")
        if not stream:
            body = dump_json(openai_format.chat_completion(reply))
            return DemoResponse(status=200, headers=[_JSON, request_id], body=body)
        options = payload.get("stream_options")
        usage = isinstance(options, Mapping) and options.get("include_usage") is True
        events = openai_format.chat_stream(reply, include_usage=usage)
        return DemoResponse(status=200, headers=[*_SSE, request_id], events=events)

    def _responses(self, request: RecordedRequest, endless: bool) -> DemoResponse:
        payload, reply, stream = self._reply(request, openai_format.responses_reply, endless)
        request_id = self._request_id(reply, b"x-request-id")
        if not stream:
            body = dump_json(openai_format.response_object(reply, payload))
            return DemoResponse(status=200, headers=[_JSON, request_id], body=body)
        events = openai_format.responses_stream(reply, payload)
        return DemoResponse(status=200, headers=[*_SSE, request_id], events=events)

    def _messages(self, request: RecordedRequest, endless: bool) -> DemoResponse:
        payload, reply, stream = self._reply(request, anthropic_format.messages_reply, endless)
        request_id = self._request_id(reply, b"request-id")
        if not stream:
            body = dump_json(anthropic_format.message_object(reply, payload))
            return DemoResponse(status=200, headers=[_JSON, request_id], body=body)
        events = anthropic_format.messages_stream(reply, payload)
        return DemoResponse(status=200, headers=[*_SSE, request_id], events=events)

    def _count_tokens(self, request: RecordedRequest, endless: bool) -> DemoResponse:
        body = anthropic_format.count_tokens_body(parse_json_object(request.body))
        return DemoResponse(status=200, headers=[_JSON], body=body)

    def _models(self, request: RecordedRequest, endless: bool) -> DemoResponse:
        if request.is_anthropic:
            return DemoResponse(status=200, headers=[_JSON], body=anthropic_format.models_body())
        return DemoResponse(status=200, headers=[_JSON], body=openai_format.models_body())

    # --- delivery -------------------------------------------------------------------------------

    @asynccontextmanager
    async def delivering(
        self, request: RecordedRequest, receive: Receive
    ) -> AsyncIterator[Delivery]:
        """Run the body as the delivery of a response to ``request``.

        The body is cancelled, and :meth:`on_client_disconnect` called, as soon as the client
        disconnects before :meth:`Delivery.finish`.
        """
        delivery = Delivery(request=request)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_disconnect, delivery, receive, nursery.cancel_scope)
            yield delivery
            nursery.cancel_scope.cancel()

    async def _watch_disconnect(
        self, delivery: Delivery, receive: Receive, cancel_scope: trio.CancelScope
    ) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not delivery.complete:
            self.on_client_disconnect(delivery.request)
            cancel_scope.cancel()

    def on_client_disconnect(self, request: RecordedRequest) -> None:
        """Called when a client goes away before its response was complete."""
        self.client_disconnects += 1

    async def deliver(
        self, request: RecordedRequest, response: DemoResponse, receive: Receive, send: Send
    ) -> None:
        """Send ``response`` with the configured pacing; stop as soon as the client disconnects."""
        async with self.delivering(request, receive) as delivery:
            if self.first_byte_delay_s > 0:
                await trio.sleep(self.first_byte_delay_s)
            if response.events is None:
                length = (b"content-length", str(len(response.body)).encode())
                await send_start(send, response.status, [*response.headers, length])
                # A HEAD answer declares the GET body's length and carries none.
                await delivery.finish(send, b"" if request.method == "HEAD" else response.body)
            else:
                await send_start(send, response.status, response.headers)
                await send_events(send, response.events, delay_s=self.chunk_delay_s)
                await delivery.finish(send)


async def serve_demo_upstream(
    app: DemoUpstream,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on hypercorn until cancelled; report ``http://host:port`` once accepting.

    hypercorn's trio ``serve`` hands its ``task_status`` the list of bound URLs (with the real port
    when asked for port 0) after its sockets listen; the first one is ours.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.backlog = BACKLOG
    config.accesslog = None
    config.errorlog = logging.getLogger("aibridged.demo.hypercorn")
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
        )
        task_status.started(binds[0])
