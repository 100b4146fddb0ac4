"""One upstream attempt, and what the client gets when no attempt succeeded.

`open_attempt` connects, sends and reads the status and headers. An error status has its body
read (bounded) and comes out as `UpstreamStatusError` carrying the body in the provider's error
shape, so nothing has reached the client yet: the caller may retry with another key, refuse on an
open breaker, or relay the error with `send_upstream_error`.
"""

from __future__ import annotations

from collections.abc import Callable

from aibridged.errors import UpstreamError, UpstreamStatusError
from aibridged.intercept.client import RelayOutcome, Send, send_simple
from aibridged.intercept.headers import client_response_headers
from aibridged.intercept.shapes import error_body, looks_like_provider_error
from aibridged.intercept.upstream import UpstreamClient, UpstreamRequest, UpstreamResponse
from aibridged.intercept.wire import WireFormat

MAX_ERROR_BODY_BYTES = 1 << 20
_ERROR_TEXT_CHARS = 500


async def open_attempt(
    client: UpstreamClient, request: UpstreamRequest, fmt: WireFormat
) -> UpstreamResponse:
    """A successful (< 400) upstream answer, its body unread; the caller closes it."""
    response = await client.send(request)
    if response.status < 400:
        return response
    try:
        body, cut = await response.read(MAX_ERROR_BODY_BYTES)
    finally:
        await response.aclose()
    headers = client_response_headers(response.headers)
    status = response.status
    if request.shape_error is not None:
        status, shaped = request.shape_error(status, body, headers)
        headers = [(k, v) for k, v in headers if k != b"content-type"]
        headers.append((b"content-type", b"application/json"))
    elif looks_like_provider_error(fmt, body):
        shaped = body
    else:
        text = body[:_ERROR_TEXT_CHARS].decode("utf-8", "replace").strip()
        text = text or (str(cut) if cut else f"status {response.status}")
        shaped = error_body(fmt, response.status, f"upstream error: {text}")
        headers = [(k, v) for k, v in headers if k != b"content-type"]
        headers.append((b"content-type", b"application/json"))
    reason = f"upstream status {response.status}"
    raise UpstreamStatusError(status, shaped, headers, reason)


async def send_upstream_error(
    send: Send,
    fmt: WireFormat,
    error: UpstreamError,
    outcome: RelayOutcome,
    before_end: Callable[[], None] | None = None,
) -> None:
    """Answer with `error` before any byte of an upstream answer was relayed."""
    outcome.error = str(error)
    if outcome.started:
        return  # a response is already out: a second one cannot follow (the relay ended it)
    if isinstance(error, UpstreamStatusError):
        await send_simple(send, error.status, error.body, error.headers, outcome, before_end)
        return
    body = error_body(fmt, error.status, f"upstream request failed: {error}")
    await send_simple(send, error.status, body, None, outcome, before_end)
