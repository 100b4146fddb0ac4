"""Incremental Server-Sent-Events parsing and the gateway's own SSE events.

The parser follows the WHATWG event-stream interpretation rules
(html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation) and gives the
same events however the stream is cut into chunks:

- lines end in ``\\r\\n``, ``\\n`` or ``\\r``; a ``\\r`` ending one chunk and a ``\\n``
  starting the next are one line ending, not two;
- one leading UTF-8 byte-order mark is skipped (even when it is itself split across chunks);
- ``:`` starts a comment; ``field:value`` loses one space after the colon; a line without a colon
  is a field with an empty value; unknown fields are ignored;
- ``data`` lines are joined with ``\\n``; ``event`` sets the type (empty means none); ``id`` sets
  the last event id, which persists across events as the spec says (a value holding NUL is
  ignored, an empty value clears it); ``retry`` takes ASCII digits only, and at most
  ``MAX_RETRY_DIGITS`` of them (a longer value is ignored: converting thousands of digits is a
  denial of service, and no client needs a reconnection time beyond 317 years);
- a blank line dispatches the event, unless it had no ``data`` line;
- at end of stream an incomplete event is discarded.

Performance: this runs on every chunk of every relayed stream. Work is done per *line* with
``bytes.rfind``/``split``, never per byte; line endings are only rewritten when a chunk contains
``\\r`` (rare in practice). Bytes are split into lines *before* decoding: every byte of a
multi-byte UTF-8 sequence is >= 0x80, so no character can straddle a line ending, and decoding each
complete line (or the joined data of one event) with ``errors="replace"`` gives exactly what an
incremental decoder over the whole stream gives, with no decoder state to carry between chunks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANTHROPIC_PING",
    "MAX_RETRY_DIGITS",
    "SSEEvent",
    "SSEParser",
    "anthropic_error_event",
    "anthropic_ping",
    "encode_event",
    "last_event_end",
    "openai_error_event",
]

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D
_COLON = 0x3A
MAX_RETRY_DIGITS = 13
# Two line endings in a row (each CRLF, LF or CR) end an event. Atomic groups: a CRLF is one
# line ending, never a CR and a LF.
_EVENT_END = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is None when the stream gave no (or an empty) type."""

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``json.loads(self.data)``; raises ValueError (``json.JSONDecodeError``) on bad JSON."""
        return json.loads(self.data)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class SSEParser:
    """Incremental SSE parser: ``feed`` chunks as they arrive, ``close`` at end of stream.

    ``on_comment``, if given, is called with the text of every comment line (after the ``:`` and one
    optional space) as soon as the line is complete; ``comment_count`` counts them either way.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_closed",
        "_comment_count",
        "_data",
        "_event",
        "_event_retry",
        "_last_id",
        "_on_comment",
        "_pending_len",
        "_retry",
        "_skip_lf",
    )

    def __init__(self, *, on_comment: Callable[[str], None] | None = None) -> None:
        self._on_comment = on_comment
        # Bytes of the current, incomplete line (line endings already normalised to \n).
        self._buf = bytearray()
        # True until the first bytes decide whether the stream starts with a BOM.
        self._at_start = True
        # The previous chunk ended in \r: a \n starting the next chunk belongs to that line ending.
        self._skip_lf = False
        self._closed = False
        # State of the event being assembled from complete lines.
        self._data: list[bytes] = []
        self._event: bytes | None = None
        self._event_retry: int | None = None
        # Bytes of complete lines consumed since the last blank line (for pending_bytes).
        self._pending_len = 0
        # Persistent across events, per the spec.
        self._last_id: str | None = None
        self._retry: int | None = None
        self._comment_count = 0

    # -- diagnostics -------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes received since the last event boundary (blank line) and not part of any dispatched
        event: the incomplete line plus complete lines of the incomplete event. Counted after line
        endings are normalised (a ``\\r\\n`` counts as one byte)."""
        return len(self._buf) + self._pending_len

    @property
    def last_event_id(self) -> str | None:
        """The spec's "last event ID" (what a client would send as ``Last-Event-ID``)."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The last valid ``retry`` value seen (reconnection time in ms), if any."""
        return self._retry

    @property
    def comment_count(self) -> int:
        """Number of comment lines seen so far."""
        return self._comment_count

    # -- parsing -----------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume one chunk; return the events it completed (possibly none)."""
        if self._closed:
            raise RuntimeError("SSEParser.feed() after close()")
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # A trailing \r ends its line now; swallow a \n that may open the next chunk.
            self._skip_lf = chunk[-1] == _CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_start:
            buf = self._buf
            buf += chunk
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                return []  # could still be a BOM: wait for more bytes
            self._at_start = False
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
            chunk = bytes(buf)
            buf.clear()

        end = chunk.rfind(b"\n")
        if end < 0:
            self._buf += chunk
            return []
        if self._buf:
            self._buf += chunk[:end]
            block = bytes(self._buf)
            self._buf[:] = chunk[end + 1 :]
        else:
            block = chunk[:end]
            if end + 1 < len(chunk):
                self._buf += chunk[end + 1 :]
        return self._process(block)

    def close(self, *, flush_incomplete: bool = False) -> list[SSEEvent]:
        """End of stream.

        Per the spec an incomplete event (no closing blank line) is discarded and ``[]`` returned.
        With ``flush_incomplete=True`` the unterminated last line counts as complete and the
        pending event, if it has data, is returned (a lenient mode for recording streams from
        servers that omit the final blank line). Idempotent; ``feed`` after ``close`` raises.
        """
        if self._closed:
            return []
        self._closed = True
        events: list[SSEEvent] = []
        if flush_incomplete:
            # The unterminated line (possibly empty) is completed, then a blank line dispatches.
            events = self._process(bytes(self._buf) + b"\n")
        self._buf.clear()
        self._data = []
        self._event = None
        self._event_retry = None
        self._pending_len = 0
        return events

    def _process(self, block: bytes) -> list[SSEEvent]:
        """Interpret ``block``: complete lines joined by ``\\n``, the last line's ending excluded
        (so a trailing blank line shows up as ``block`` ending in ``\\n``, or being empty)."""
        events: list[SSEEvent] = []
        data = self._data
        event = self._event
        event_retry = self._event_retry
        for line in block.split(b"\n"):
            if not line:
                if data:
                    events.append(
                        SSEEvent(
                            _decode(event) if event else None,
                            _decode(data[0]) if len(data) == 1 else _decode(b"\n".join(data)),
                            self._last_id,
                            event_retry,
                        )
                    )
                    data = []
                event = None
                event_retry = None
                continue
            # Fast paths: the overwhelmingly common `data: ...` and `event: ...` lines.
            if line.startswith(b"data: "):
                data.append(line[6:])
                continue
            if line.startswith(b"event: "):
                event = line[7:]
                continue
            if line[0] == _COLON:
                self._comment_count += 1
                if self._on_comment is not None:
                    text = line[2:] if line[1:2] == b" " else line[1:]
                    self._on_comment(_decode(text))
                continue
            colon = line.find(b":")
            if colon < 0:
                name = line
                value = b""
            else:
                name = line[:colon]
                start = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
                value = line[start:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id" and b"\x00" not in value:
                self._last_id = _decode(value) if value else None
            elif name == b"retry" and value.isdigit() and len(value) <= MAX_RETRY_DIGITS:
                event_retry = self._retry = int(value)
            # any other field is ignored
        self._data = data
        self._event = event
        self._event_retry = event_retry
        self._pending_len = self._bytes_after_last_blank(block)
        return events

    def _bytes_after_last_blank(self, block: bytes) -> int:
        # `block` + "\n" is the run of complete lines just processed. Count the bytes after the
        # last blank line in it (or add all of it when it has none).
        size = len(block) + 1
        if not block or block[-1] == _LF:
            return 0
        last = block.rfind(b"\n\n")
        if last >= 0:
            return size - last - 2
        if block[0] == _LF:
            return size - 1
        return self._pending_len + size


def last_event_end(data: bytes | bytearray, start: int = 0) -> int:
    """The offset just past the last event boundary (a blank line) in `data` that ends after
    `start`, 0 if there is none.

    `data` must start at an event boundary. What lies before the offset is whole events (or
    comments), which can go to a client without ever leaving it inside a half-received event.
    A trailing CR counts as a line ending: a LF that follows in the next chunk is part of it, and
    every SSE parser (ours included) skips it as such. With `start`, only the bytes from there on
    are searched (a boundary is at most 4 bytes long: a caller that appends chunks passes the old
    length minus 3), so holding a long event costs linear time, not quadratic.
    """
    if data.find(b"\r", start) < 0:
        end = data.rfind(b"\n\n", start)
        return end + 2 if end >= 0 else 0
    last = 0
    for match in _EVENT_END.finditer(data, start):
        last = match.end()
    return last


# -- writing --------------------------------------------------------------------------------------


def encode_event(event: str | None, data: str) -> bytes:
    """Encode one event as ``event: <type>\\ndata: <line>\\n...\\n\\n``.

    ``data`` is split on ``\\r\\n``, ``\\r`` and ``\\n`` into several ``data:`` lines, so the parser
    gives back ``data`` with line endings normalised to ``\\n``. ``event`` None omits the line.
    """
    if event is not None and ("\n" in event or "\r" in event):
        raise ValueError(f"SSE event type must not contain a line break: {event!r}")
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    body = "data: " + data.replace("\n", "\ndata: ") + "\n\n"
    if event is not None:
        body = f"event: {event}\n{body}"
    return body.encode("utf-8")


ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def anthropic_ping() -> bytes:
    """The keep-alive Anthropic sends (and the gateway sends during long upstream silences)."""
    return ANTHROPIC_PING


def _compact_json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def anthropic_error_event(error_type: str, message: str) -> bytes:
    """A mid-stream Anthropic error: ``event: error`` with
    ``{"type":"error","error":{"type":<error_type>,"message":<message>}}``."""
    payload = {"type": "error", "error": {"type": error_type, "message": message}}
    return encode_event("error", _compact_json(payload))


def openai_error_event(
    message: str, error_type: str = "server_error", code: str | None = None
) -> bytes:
    """A mid-stream OpenAI error chunk: ``data: {"error": {...}}`` (no event type), which the
    official SDK turns into an ``APIError``."""
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return encode_event(None, _compact_json(payload))
