"""A tiny HTTP/1.1 client for measuring: a sans-IO response parser and a blocking keep-alive
connection that timestamps the first response byte and the first complete SSE event.

Small on purpose: a measuring client should cost little and the same on both paths (direct and
through the gateway). It handles what the fakes and the gateway send: ``Content-Length`` or
``chunked`` bodies, keep-alive, and servers closing a connection after a response (hypercorn does
after ``keep_alive_max_requests``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

MAX_RECV = 1 << 16


class ProtocolError(Exception):
    """The server sent something this parser does not understand, or closed mid-response."""


def build_request(
    method: str,
    host: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
) -> bytes:
    """A complete request with ``Host`` and ``Content-Length``; ``headers`` go in as given."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Feed it bytes; ``complete`` turns true at the end of one response.

    The decoded body accumulates in ``body``; ``headers`` maps lower-case names to values.
    """

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_chunked",
        "_length",
        "_state",
        "body",
        "complete",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "head"  # head → body | size → data → crlf → size ... → trailer → done
        self._length = 0
        self._chunked = False
        self._chunk_left = 0
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.complete = False
        self.keep_alive = True

    @property
    def head_done(self) -> bool:
        return self._state != "head"

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self._state == "head" and not self._parse_head():
            return
        if self._chunked:
            self._parse_chunks()
        else:
            take = min(self._length - len(self.body), len(self._buf))
            self.body += self._buf[:take]
            del self._buf[:take]
            self.complete = len(self.body) == self._length

    def feed_eof(self) -> None:
        if not self.complete:
            raise ProtocolError("connection closed before the response was complete")

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_RECV:
                raise ProtocolError("response head too large")
            return False
        lines = bytes(self._buf[:end]).split(b"\r\n")
        del self._buf[: end + 4]
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()
        self.keep_alive = self.headers.get(b"connection", b"").lower() != b"close"
        if self.headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            self._chunked = True
            self._state = "size"
        else:
            self._length = int(self.headers.get(b"content-length", b"0"))
            self._state = "body"
        return True

    def _parse_chunks(self) -> None:
        buf = self._buf
        pos = 0
        while True:
            if self._state == "size":
                newline = buf.find(b"\r\n", pos)
                if newline < 0:
                    break
                size = int(bytes(buf[pos:newline]).split(b";", 1)[0], 16)
                pos = newline + 2
                self._chunk_left = size
                self._state = "data" if size else "trailer"
            elif self._state == "data":
                take = min(self._chunk_left, len(buf) - pos)
                if take == 0:
                    break
                self.body += buf[pos : pos + take]
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._state = "size"
            elif self._state == "trailer":
                newline = buf.find(b"\r\n", pos)
                if newline < 0:
                    break
                empty = newline == pos
                pos = newline + 2
                if empty:
                    self._state = "done"
                    self.complete = True
                    break
            else:
                break
        del buf[:pos]


@dataclass(frozen=True, slots=True)
class Timed:
    """One timed exchange; times in seconds from just before the request was sent."""

    status: int
    total_s: float
    first_byte_s: float
    first_event_s: float | None  # when the body first held a complete SSE event (b"\n\n")
    body: bytes


class Connection:
    """A blocking keep-alive HTTP/1.1 connection with TCP_NODELAY, reconnecting when the server
    closed it (outside the timed part when the server announced it with ``Connection: close``)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.reconnects = 0
        self._sock: socket.socket | None = None
        self._connect()

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, raw: bytes, *, watch_events: bool = False) -> Timed:
        if self._sock is None:
            self._connect()
            self.reconnects += 1
        try:
            return self._exchange(raw, watch_events)
        except (ConnectionResetError, BrokenPipeError, _ClosedBeforeResponse):
            # A keep-alive connection the server closed without saying so: retry once, fresh.
            self.close()
            self._connect()
            self.reconnects += 1
            return self._exchange(raw, watch_events)

    def _exchange(self, raw: bytes, watch_events: bool) -> Timed:
        sock = self._sock
        assert sock is not None
        parser = ResponseParser()
        first_byte: float | None = None
        first_event: float | None = None
        started = time.perf_counter()
        sock.sendall(raw)
        while not parser.complete:
            data = sock.recv(MAX_RECV)
            now = time.perf_counter()
            if not data:
                if first_byte is None:
                    raise _ClosedBeforeResponse
                parser.feed_eof()
            if first_byte is None:
                first_byte = now
            parser.feed(data)
            if watch_events and first_event is None and b"\n\n" in parser.body:
                first_event = now
        ended = time.perf_counter()
        if not parser.keep_alive:
            self.close()
        assert first_byte is not None
        return Timed(
            status=parser.status,
            total_s=ended - started,
            first_byte_s=first_byte - started,
            first_event_s=None if first_event is None else first_event - started,
            body=bytes(parser.body),
        )


class _ClosedBeforeResponse(Exception):
    pass
