"""Reading the request body: bounded in size while reading, and in time."""

from __future__ import annotations

import trio

from aibridged.errors import Rejected
from aibridged.intercept.client import Receive
from aibridged.intercept.headers import is_json_media


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


async def read_body(
    receive: Receive, headers: list[tuple[bytes, bytes]], *, limit: int, timeout_s: float
) -> bytes | None:
    """The whole body, or None when the client left while sending it.

    Raises `Rejected`: 413 past `limit` (never buffering more than that), 408 when the body has
    not arrived within `timeout_s` (a stalled upload must not hold a concurrency slot).
    """
    too_large = Rejected(
        413,
        f"Request body too large. The maximum allowed request body size is {human_size(limit)}.",
        "body_too_large",
    )
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large
    with trio.move_on_after(timeout_s):
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raise Rejected(408, f"request body not received within {timeout_s:g}s", "body_timeout")


def is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return is_json_media(value.split(b";", 1)[0].strip().lower().decode("latin-1"))
    return False
