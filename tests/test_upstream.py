"""The upstream HTTP/1.1 client against scripted peers on real sockets: reuse, stale and expired
connections, partial reads, interim answers, timeouts and broken peers."""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing

from aibridged.errors import UpstreamConnectError, UpstreamTimeout
from aibridged.intercept.h1 import H1Connection
from aibridged.intercept.upstream import (
    Origin,
    UpstreamClient,
    UpstreamRequest,
    UpstreamSettings,
)

TLS = ssl.create_default_context()
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _request_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            return data
        data += chunk
    return data


async def _serve(nursery: trio.Nursery, handler: Handler) -> tuple[Origin, list[int]]:
    """A scripted HTTP peer; returns its origin and a list that counts its connections."""
    connections: list[int] = []

    async def accept(stream: trio.SocketStream) -> None:
        connections.append(1)
        async with stream:
            await handler(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, accept, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return Origin.from_url(f"http://127.0.0.1:{port}"), connections


async def _answer_forever(stream: trio.SocketStream, answer: bytes = OK) -> None:
    while await _request_head(stream):
        await stream.send_all(answer)


def _client(**settings: float) -> UpstreamClient:
    return UpstreamClient(UpstreamSettings(**settings), TLS)  # type: ignore[arg-type]


async def _get(client: UpstreamClient, origin: Origin, method: str = "GET") -> bytes:
    response = await client.send(UpstreamRequest(method, origin, "/x", [], b""))
    try:
        body, error = await response.read(1 << 20)
        assert error is None
        return body
    finally:
        await response.aclose()


async def test_a_connection_is_reused_once_its_answer_was_read(nursery: trio.Nursery) -> None:
    origin, connections = await _serve(nursery, _answer_forever)
    client = _client()
    for _ in range(5):
        assert await _get(client, origin) == b"{}"
    assert len(connections) == 1 and client.statistics().idle == 1


async def test_an_answer_closed_before_its_end_closes_its_connection(
    nursery: trio.Nursery,
) -> None:
    origin, connections = await _serve(nursery, _answer_forever)
    client = _client()
    response = await client.send(UpstreamRequest("GET", origin, "/x", [], b""))
    await response.aclose()  # the body was never read
    assert client.statistics().idle == 0
    assert await _get(client, origin) == b"{}"
    assert len(connections) == 2


async def test_an_idle_connection_the_peer_closed_is_not_reused(nursery: trio.Nursery) -> None:
    async def once(stream: trio.SocketStream) -> None:
        await _request_head(stream)
        await stream.send_all(OK)  # keep-alive promised, then the peer goes away

    origin, connections = await _serve(nursery, once)
    client = _client()
    assert await _get(client, origin) == b"{}"
    await trio.sleep(0.05)  # the peer's FIN arrives
    assert await _get(client, origin) == b"{}"  # a new connection, not an error
    assert len(connections) == 2


async def test_idle_connections_expire_and_are_bounded(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    origin, connections = await _serve(nursery, _answer_forever)
    client = _client(keepalive_expiry_s=10.0, max_keepalive=2)
    assert await _get(client, origin) == b"{}"
    await trio.sleep(11)
    assert await _get(client, origin) == b"{}"
    assert len(connections) == 2  # the expired one was dropped, not reused

    responses = [await client.send(UpstreamRequest("GET", origin, "/x", [], b"")) for _ in range(4)]
    for response in responses:  # four in flight at once, then all back
        await response.read(100)
        await response.aclose()
    assert client.statistics().idle == 2


async def test_head_answers_and_interim_answers_keep_the_connection(
    nursery: trio.Nursery,
) -> None:
    async def interim_then_ok(stream: trio.SocketStream) -> None:
        while head := await _request_head(stream):
            if head.startswith(b"HEAD"):
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 5000\r\n\r\n"
                )
            else:
                await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    origin, connections = await _serve(nursery, interim_then_ok)
    client = _client()
    assert await _get(client, origin, "HEAD") == b""
    assert await _get(client, origin) == b"{}"
    assert len(connections) == 1


async def test_a_peer_that_closes_without_answering_is_a_connect_error(
    nursery: trio.Nursery,
) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await _request_head(stream)

    origin, _ = await _serve(nursery, hang_up)
    with pytest.raises(UpstreamConnectError, match="without sending a response"):
        await _get(_client(), origin)


async def test_a_body_cut_short_is_a_connect_error(nursery: trio.Nursery) -> None:
    async def cut(stream: trio.SocketStream) -> None:
        await _request_head(stream)
        await stream.send_all(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')

    origin, _ = await _serve(nursery, cut)
    response = await _client().send(UpstreamRequest("GET", origin, "/x", [], b""))
    body, error = await response.read(1000)
    assert body == b'{"partial' and isinstance(error, UpstreamConnectError)


async def test_a_silent_peer_times_out_waiting_for_the_answer(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await _request_head(stream)
        await trio.sleep_forever()

    origin, _ = await _serve(nursery, silent)
    with pytest.raises(UpstreamTimeout, match="waiting for the response"):
        await _get(_client(read_timeout_s=30.0), origin)
    assert trio.current_time() == pytest.approx(30, abs=0.01)


async def test_a_tls_handshake_that_never_ends_times_out_as_a_connect_timeout(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    origin, _ = await _serve(nursery, mute)
    tls_origin = Origin(b"https", origin.host, origin.port, origin.host_header, "")
    with pytest.raises(UpstreamTimeout, match="connecting"):
        await _get(_client(connect_timeout_s=5.0), tls_origin)


async def test_a_refused_connection_is_a_connect_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamConnectError):
        await _get(_client(), Origin.from_url(f"http://127.0.0.1:{port}"))


async def test_chunks_already_received_come_out_in_one_piece(nursery: trio.Nursery) -> None:
    """Several chunks of a chunked body that arrived in one read are one piece (one write to
    the client). A lockstep stream hands over exactly what one send wrote: the whole answer."""
    events = [b"data: %d\n\n" % i for i in range(10)]
    ours, theirs = trio.testing.lockstep_stream_pair()

    async def burst() -> None:
        await theirs.receive_some()
        framed = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        await theirs.send_all(head + b"transfer-encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n")

    nursery.start_soon(burst)
    conn = H1Connection(ours)
    await conn.send_request(b"GET", b"/x", [(b"host", b"h")], b"", timeout_s=5)
    await conn.receive_head(timeout_s=5)
    assert await conn.receive_body(math.inf) == b"".join(events)
    assert await conn.receive_body(math.inf) == b""


async def test_bytes_past_the_end_of_an_answer_never_become_the_next_answer(
    nursery: trio.Nursery,
) -> None:
    """An upstream that sends more than its Content-Length (or a body on a HEAD answer): the
    connection is not reused, so the extra bytes cannot pose as another request's answer."""
    smuggled = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\nSMUGGLED!"
    )

    async def overflow(stream: trio.SocketStream) -> None:
        while head := await _request_head(stream):
            if head.startswith(b"HEAD"):
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}" + smuggled)
            else:
                await stream.send_all(OK + smuggled)

    origin, connections = await _serve(nursery, overflow)
    client = _client()
    assert await _get(client, origin) == b"{}"
    assert await _get(client, origin) == b"{}"  # not b"SMUGGLED!"
    assert await _get(client, origin, "HEAD") == b""
    assert await _get(client, origin) == b"{}"
    assert len(connections) == 4 and client.statistics().idle == 0


async def test_a_malformed_chunk_after_good_data_is_a_connect_error_after_the_data(
    nursery: trio.Nursery,
) -> None:
    async def bad_chunk(stream: trio.SocketStream) -> None:
        await _request_head(stream)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        await stream.send_all(head + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        await trio.sleep_forever()

    origin, _ = await _serve(nursery, bad_chunk)
    response = await _client().send(UpstreamRequest("GET", origin, "/x", [], b""))
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # all of it has arrived
    assert await response.receive_some() == b"hello"
    with pytest.raises(UpstreamConnectError):
        await response.receive_some()


async def test_a_pooled_connection_closed_as_the_request_went_out_is_retried_once(
    nursery: trio.Nursery,
) -> None:
    """The provider keeps the connection after the first answer, then closes it without
    answering the next request (its idle timeout): the request goes again, on a new one."""

    async def answer_once_then_hang_up(stream: trio.SocketStream) -> None:
        await _request_head(stream)
        await stream.send_all(OK)
        await _request_head(stream)  # the next request arrives, and the peer closes

    origin, connections = await _serve(nursery, answer_once_then_hang_up)
    client = _client()
    assert await _get(client, origin) == b"{}"
    assert await _get(client, origin) == b"{}"
    assert len(connections) == 2


async def test_a_header_h11_refuses_is_never_quoted_in_the_error(nursery: trio.Nursery) -> None:
    origin, connections = await _serve(nursery, _answer_forever)
    secret = b"Bearer sk-first-0123456789\nsk-second-0123456789"
    with pytest.raises(UpstreamConnectError, match="not valid HTTP") as info:
        await _client().send(
            UpstreamRequest("GET", origin, "/x", [(b"authorization", secret)], b"")
        )
    await trio.testing.wait_all_tasks_blocked()
    assert "sk-" not in str(info.value) and len(connections) == 1  # it did connect


def test_a_non_ascii_base_path_is_percent_encoded() -> None:
    assert Origin.from_url("http://h/ünï/v1").base_path == "/%C3%BCn%C3%AF/v1"


class _Gate:
    """A `before_send` that records what the peer had seen when it was awaited."""

    def __init__(self, seen: list[bytes], *, refuse: bool = False) -> None:
        self.seen, self.refuse = seen, refuse
        self.seen_then: list[int] = []
        self.opened = trio.Event()

    async def __call__(self) -> None:
        self.seen_then.append(len(self.seen))
        await self.opened.wait()
        if self.refuse:
            raise RuntimeError("start not recorded")


async def _recording_peer(seen: list[bytes], stream: trio.SocketStream) -> None:
    while head := await _request_head(stream):
        seen.append(head)
        await stream.send_all(OK)


@pytest.mark.parametrize("pooled", [False, True])
async def test_nothing_goes_out_before_the_gate_opens(nursery: trio.Nursery, pooled: bool) -> None:
    seen: list[bytes] = []
    origin, connections = await _serve(nursery, partial(_recording_peer, seen))
    client = _client()
    if pooled:
        assert await _get(client, origin) == b"{}"
    gate = _Gate(seen)
    request = UpstreamRequest("POST", origin, "/x", [], b"{}", before_send=gate)
    answers: list[int] = []
    answered = trio.Event()

    async def send() -> None:
        response = await client.send(request)
        answers.append(response.status)
        await response.aclose()
        answered.set()

    nursery.start_soon(send)
    await trio.testing.wait_all_tasks_blocked()
    assert gate.seen_then == [int(pooled)] and len(seen) == int(pooled)
    assert len(connections) == 1 if pooled else not connections  # not even a connect
    gate.opened.set()
    with trio.fail_after(5):
        await answered.wait()
    assert answers == [200] and len(seen) == 1 + pooled


@pytest.mark.parametrize("pooled", [False, True])
async def test_a_gate_that_refuses_sends_nothing(nursery: trio.Nursery, pooled: bool) -> None:
    seen: list[bytes] = []
    origin, connections = await _serve(nursery, partial(_recording_peer, seen))
    client = _client()
    if pooled:
        assert await _get(client, origin) == b"{}"
    gate = _Gate(seen, refuse=True)
    gate.opened.set()
    with pytest.raises(RuntimeError, match="start not recorded"):
        await client.send(UpstreamRequest("POST", origin, "/x", [], b"{}", before_send=gate))
    await trio.testing.wait_all_tasks_blocked()
    assert len(seen) == int(pooled) and len(connections) == int(pooled)
    assert await _get(client, origin) == b"{}"  # the client goes on: a new connection
