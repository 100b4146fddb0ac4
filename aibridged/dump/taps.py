"""The request side of the API dumps: a tap on each upstream attempt, queuing its pieces.

The data plane asks `Dumps.taps(...)` once per request for a factory; each upstream attempt
gets a tap from it (an `ExchangeTap` of `intercept/upstream.py`) with its own time stamp, so
every attempt has its own files. The tap queues the request as sent, then the response head and
each body chunk as it is read, to the `DumpWriter`; the request path does no rendering and no
file work.

A file that lost a piece to a full queue gets nothing more (a dump with a hole in it would
mislead), and a response cut that way ends with a note saying so.
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from pathlib import Path

from aibridged.dump.paths import (
    REQUEST_ERROR_SUFFIX,
    REQUEST_SUFFIX,
    RESPONSE_SUFFIX,
    interception_stem,
    passthrough_stem,
    with_suffix,
)
from aibridged.dump.render import Headers, render_request, render_response_head
from aibridged.dump.writer import PIECE_OVERHEAD_BYTES, DumpWriter, Piece

INCOMPLETE_NOTE = (
    b"\n[aibridged: the rest of this response was not dumped: the dump queue was full]\n"
)


class Dumps:
    """Hands out the taps of one request's upstream attempts."""

    def __init__(self, writer: DumpWriter) -> None:
        self._writer = writer

    @property
    def root(self) -> Path:
        return self._writer.root

    def taps(self, provider: str, model: str | None, interception_id: uuid.UUID) -> Taps:
        """A factory of taps for one request; `model` None: a passthrough request."""
        return Taps(self._writer, provider, model, interception_id)


class Taps:
    """One request's attempts: each call gives the next attempt its tap."""

    __slots__ = ("_id", "_last_ms", "_model", "_provider", "_writer")

    def __init__(
        self, writer: DumpWriter, provider: str, model: str | None, interception_id: uuid.UUID
    ) -> None:
        self._writer = writer
        self._provider = provider
        self._model = model
        self._id = interception_id
        self._last_ms = 0

    def __call__(self) -> ExchangeDump:
        # Attempts of one request in the same millisecond still get files of their own.
        unix_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        self._last_ms = unix_ms
        return ExchangeDump(self, unix_ms)

    def stem(self, unix_ms: int, target: bytes) -> Path:
        root = self._writer.root
        if self._model is None:
            url_path = target.split(b"?", 1)[0].decode("ascii", "replace")
            return passthrough_stem(root, self._provider, url_path, unix_ms, self._id)
        return interception_stem(root, self._provider, self._model, unix_ms, self._id)

    @property
    def writer(self) -> DumpWriter:
        return self._writer


class ExchangeDump:
    """The tap of one upstream attempt (see `ExchangeTap`): quick, never raises."""

    __slots__ = ("_response", "_response_cut", "_stem", "_taps", "_unix_ms")

    def __init__(self, taps: Taps, unix_ms: int) -> None:
        self._taps = taps
        self._unix_ms = unix_ms
        self._stem: Path | None = None
        self._response: Path | None = None  # the response file, while it takes pieces
        self._response_cut = False

    def request_sent(self, method: str, target: bytes, headers: Headers, body: bytes) -> None:
        self._stem = self._taps.stem(self._unix_ms, target)
        size = len(body) + sum(len(k) + len(v) for k, v in headers) + PIECE_OVERHEAD_BYTES
        render = partial(render_request, method, target, list(headers), body)
        self._submit(REQUEST_SUFFIX, render, create=True, size=size)

    def request_failed(self, error: str) -> None:
        data = error.encode("utf-8", "replace") + b"\n"
        self._submit(REQUEST_ERROR_SUFFIX, data, create=True, size=len(data))

    def response_started(self, status: int, headers: Headers) -> None:
        size = sum(len(k) + len(v) for k, v in headers) + PIECE_OVERHEAD_BYTES
        render = partial(render_response_head, status, list(headers))
        if self._submit(RESPONSE_SUFFIX, render, create=True, size=size):
            self._response = self._path(RESPONSE_SUFFIX)

    def response_body(self, chunk: bytes) -> None:
        if self._response is None or not chunk:
            return
        piece = Piece(self._response, chunk, False, len(chunk) + PIECE_OVERHEAD_BYTES)
        if not self._taps.writer.submit(piece):
            self._response, self._response_cut = None, True

    def response_closed(self) -> None:
        if self._response_cut:
            self._response_cut = False
            path = self._path(RESPONSE_SUFFIX)
            size = len(INCOMPLETE_NOTE) + PIECE_OVERHEAD_BYTES
            self._taps.writer.submit(Piece(path, INCOMPLETE_NOTE, False, size), force=True)
        self._response = None

    def _path(self, suffix: str) -> Path:
        assert self._stem is not None  # request_sent comes first
        return with_suffix(self._stem, suffix)

    def _submit(
        self, suffix: str, data: bytes | partial[bytes], *, create: bool, size: int
    ) -> bool:
        if self._stem is None:
            return False
        return self._taps.writer.submit(Piece(self._path(suffix), data, create, size))
