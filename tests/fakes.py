"""A fault-injecting fake upstream for the gateway's tests, built on :mod:`aibridged.demo`.

Unscripted requests get the demo's normal answers. A test scripts the next request(s), first in
first out; each scripted behaviour applies to exactly one request:

    fake = FakeUpstream()
    url = await nursery.start(serve_demo_upstream, fake)
    fake.fail_next(429, headers=[("retry-after", "1")])   # provider-shaped body unless given
    fake.reset_mid_stream_next(after_events=3)            # 3 body chunks, then the connection drops
    fake.reset_mid_stream_next(1, fragment_bytes=200)     # exactly 200 bytes, then it drops
    fake.stall_next(5.0)                                  # headers, 5 s of silence, then the answer
    fake.hold_stream_open(interval_s=0.01)                # events forever, until the client leaves
    fake.fragment_next(7)                                 # the body re-cut into 7-byte chunks
    fake.add_headers_next(("set-cookie", "s=1"))          # the normal answer, plus headers
    fake.send_next([b"data: x\n\n"])                      # exactly these chunks, status 200
    await fake.disconnected.wait()                        # the client went away mid-response
    fake.disconnect_times[-1]                             # trio.current_time() when it was seen
    await fake.wait_idle()                                # no response is being delivered

A reset is an exception raised from the ASGI app after some body was sent: hypercorn logs "Error in
ASGI Framework" and closes the connection without ending the chunked body, so an httpx2 client sees
``httpx2.RemoteProtocolError`` ("peer closed connection without sending complete message body").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import trio

from aibridged.demo import DemoResponse, DemoUpstream, RecordedRequest
from aibridged.demo.asgi import Delivery, Receive, Send, error_response, send_start

__all__ = ["FakeUpstream", "ScriptedAbort"]


class ScriptedAbort(Exception):
    """Raised inside the app to make hypercorn drop the connection mid-response."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    fail: tuple[int, bytes | None, list[tuple[bytes, bytes]]] | None = None
    abort_after: int | None = None  # body chunks to send before dropping the connection
    stall_s: float = 0.0  # silence after the headers
    endless: bool = False  # a streamed answer never finishes
    interval_s: float | None = None  # between chunks; None: the app's chunk_delay_s
    fragment_bytes: int | None = None  # re-cut the body into chunks of this size
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()  # added to the normal answer
    body: Iterable[bytes] | None = None  # a hand-made 200 answer, sent chunk by chunk
    content_type: bytes = b"text/event-stream"


def _fragment(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


class FakeUpstream(DemoUpstream):
    """The demo upstream plus scripted faults and observations of what the client did."""

    def __init__(
        self,
        *,
        chunk_delay_s: float = 0.0,
        stream_chunks: int = 8,
        first_byte_delay_s: float = 0.0,
    ) -> None:
        super().__init__(
            chunk_delay_s=chunk_delay_s,
            stream_chunks=stream_chunks,
            first_byte_delay_s=first_byte_delay_s,
        )
        self._plans: deque[_Plan] = deque()
        self.disconnected = trio.Event()
        self.disconnect_times: list[float] = []
        self.response_started = trio.Event()  # set when any response's headers went out
        self.open_responses = 0  # responses being delivered right now
        self.chunks_sent = 0  # body chunks sent, all responses together
        self.aborts = 0
        self._idle = trio.Event()  # set (then replaced) whenever open_responses drops to 0

    # --- scripting ------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (("content-type", "application/json"),),
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` before any other byte.

        ``body=None`` renders the provider-shaped error for the request's API.
        """
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        for _ in range(times):
            self._plans.append(_Plan(fail=(status, body, encoded)))

    def reset_mid_stream_next(
        self, after_events: int, *, fragment_bytes: int | None = None
    ) -> None:
        """Send ``after_events`` body chunks (SSE events), then drop the connection.

        With ``fragment_bytes`` the body is first re-cut into chunks of that size, so
        ``after_events=1, fragment_bytes=n`` sends exactly the first n bytes. A blocking answer is
        cut after half of its body.
        """
        self._plans.append(_Plan(abort_after=after_events, fragment_bytes=fragment_bytes))

    def stall_next(self, seconds: float) -> None:
        """Send the headers, stay silent ``seconds``, then send the normal answer."""
        self._plans.append(_Plan(stall_s=seconds))

    def hold_stream_open(self, interval_s: float = 0.01) -> None:
        """The next streamed answer sends a delta every ``interval_s`` until the client leaves."""
        self._plans.append(_Plan(endless=True, interval_s=interval_s))

    def send_next(self, chunks: Iterable[bytes], content_type: str = "text/event-stream") -> None:
        """Answer the next request with 200 and exactly these body chunks (a hostile upstream:
        huge lines, odd fields); `chunks` may be a generator, consumed as it is sent."""
        self._plans.append(_Plan(body=chunks, content_type=content_type.encode()))

    def add_headers_next(self, *headers: tuple[str, str]) -> None:
        """The next answer is the normal one, with these response headers added."""
        encoded = tuple((k.lower().encode(), v.encode()) for k, v in headers)
        self._plans.append(_Plan(extra_headers=encoded))

    def fragment_next(self, size: int) -> None:
        """Re-cut the next body into ``size``-byte chunks, ignoring event boundaries."""
        if size < 1:
            raise ValueError("size must be at least 1")
        self._plans.append(_Plan(fragment_bytes=size))

    @property
    def scripted(self) -> int:
        """How many scripted behaviours are still waiting for a request."""
        return len(self._plans)

    # --- observation ----------------------------------------------------------------------------

    def on_client_disconnect(self, request: RecordedRequest) -> None:
        super().on_client_disconnect(request)
        self.disconnect_times.append(trio.current_time())
        self.disconnected.set()

    async def wait_idle(self) -> None:
        """Return once no response is being delivered."""
        if self.open_responses:
            await self._idle.wait()

    # --- delivery -------------------------------------------------------------------------------

    async def handle(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        plan = self._plans.popleft() if self._plans else _Plan()
        if plan.fail is not None:
            status, body, headers = plan.fail
            if body is None:
                body = error_response(request, status, f"scripted failure {status}").body
            response = DemoResponse(status=status, headers=headers, body=body)
        elif plan.body is not None:
            response = DemoResponse(
                status=200, headers=[(b"content-type", plan.content_type)], events=plan.body
            )
        else:
            response = self.respond(request, endless=plan.endless)
        aborted = False  # stays False when a disconnect cancels the delivery
        self.open_responses += 1
        try:
            async with self.delivering(request, receive) as delivery:
                aborted = await self._send(response, plan, send, delivery)
        finally:
            self.open_responses -= 1
            if self.open_responses == 0:
                self._idle.set()
                self._idle = trio.Event()
        if aborted:
            self.aborts += 1
            raise ScriptedAbort(f"scripted reset of {request.method} {request.path}")

    async def _send(
        self, response: DemoResponse, plan: _Plan, send: Send, delivery: Delivery
    ) -> bool:
        """Deliver ``response`` as ``plan`` says; True when the connection must now be dropped."""
        if self.first_byte_delay_s > 0:
            await trio.sleep(self.first_byte_delay_s)
        headers = [*response.headers, *plan.extra_headers]
        chunks: Iterable[bytes]
        if response.events is None:
            headers = [*headers, (b"content-length", str(len(response.body)).encode())]
            body = response.body
            chunks = [body[: len(body) // 2]] if plan.abort_after is not None else [body]
        else:
            chunks = response.events
        if plan.fragment_bytes is not None:
            chunks = _fragment(chunks, plan.fragment_bytes)
        await send_start(send, response.status, headers)
        self.response_started.set()
        if plan.stall_s > 0:
            await trio.sleep(plan.stall_s)
        delay_s = self.chunk_delay_s if plan.interval_s is None else plan.interval_s
        for sent, chunk in enumerate(chunks):
            if plan.abort_after is not None and sent >= plan.abort_after:
                break
            if sent and delay_s > 0:
                await trio.sleep(delay_s)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.chunks_sent += 1
        if plan.abort_after is not None:
            return True
        await delivery.finish(send)
        return False
