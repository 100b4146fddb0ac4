"""Stricter HTTP/1.1 request framing than h11's: no request smuggling through this gateway.

h11 accepts, as RFC 9112 allows a recipient to, requests a front proxy may frame differently:
both `Transfer-Encoding` and `Content-Length` (h11 uses the former; a load balancer that frames
by the latter then sees the chunked body's tail as a second request), header lines folded onto
the next line (obs-fold: `Transfer-Encoding:\\r\\n chunked`), and a bare LF as a line ending (the
text after it becomes a header of its own). RFC 9112 §6.1 says such a request may be refused and
the connection must then be closed; that is what happens here: h11's reader of request heads is
wrapped with checks that raise `LocalProtocolError`, which h11 turns into a remote protocol
error, and hypercorn answers it with 400 and `Connection: close`.

The checks look at one request head (a few hundred bytes) with `bytes.count` and `in`: no
measurable cost per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import h11
from h11 import _readers

_BLANK_LINE = re.compile(rb"\n\r?\n")  # how h11 finds the end of a head
_FOLDED = re.compile(rb"\n[ \t]")
_KEY = (h11.CLIENT, h11.IDLE)

Reader = Callable[[Any], Any]


def _check_head(head: bytes | bytearray) -> None:
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
        raise h11.LocalProtocolError("bare CR or LF in the request head", error_status_hint=400)
    if _FOLDED.search(head):
        raise h11.LocalProtocolError("obsolete line folding in the request head")


def _check_framing(headers: Any) -> None:
    names = {name for name, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        raise h11.LocalProtocolError(
            "both Transfer-Encoding and Content-Length in one request", error_status_hint=400
        )


def _strict(original: Reader) -> Reader:
    def read_request_head(buf: Any) -> Any:
        data = getattr(buf, "_data", None)  # h11's ReceiveBuffer keeps unparsed bytes here
        if data is not None:
            end = _BLANK_LINE.search(data)
            if end is not None:
                _check_head(data[: end.end()])
        request = original(buf)
        if request is not None:
            _check_framing(request.headers)
        return request

    read_request_head.strict = True  # type: ignore[attr-defined]
    return read_request_head


def install() -> None:
    """Make every h11 server connection in this process refuse ambiguous request framing."""
    current = _readers.READERS[_KEY]
    if not getattr(current, "strict", False):
        _readers.READERS[_KEY] = _strict(current)  # type: ignore[arg-type]
