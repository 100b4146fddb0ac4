"""The request body: parsed once, checked, and rewritten only where Coder's gateway rewrites.

The raw bytes go upstream as the client sent them. The only rewrites are on Chat Completions:
`n` forced to 1, and streaming requests asked for their usage (`stream_options.include_usage`).
They are made as edits of the raw bytes — the usual case, a streaming request without
`stream_options` (the SDKs' default), is a single splice before the closing brace — so numbers,
escapes and key order stay exactly as sent (`1e400` stays `1e400`, `"\\ud800"` stays escaped) and
no re-serialisation of a 75 KB body runs on the hot path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from aibridged.errors import BodyRejected
from aibridged.intercept.routes import Api

# Bodies larger than this are prepared in a worker thread (api/dataplane.py), so one client's
# 30 MiB request cannot hold the event loop while it is parsed.
PREPARE_IN_THREAD_BYTES = 1 << 20

_INCLUDE_USAGE = b'"stream_options":{"include_usage":true}'
# The start of a string or one structural character. Strings are skipped with bytes.find, not a
# regex: no single C call may hold the GIL for long, since big bodies are scanned in a thread
# while the event loop keeps serving.
_TOKEN = re.compile(rb'["{}\[\],:]')
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class PreparedBody:
    body: bytes  # what goes upstream
    parsed: dict[str, Any]
    stream: bool
    model: str


def prepare_body(api: Api, raw: bytes) -> PreparedBody:
    """Parse the client's JSON and apply only Coder's rewrites (raises BodyRejected)."""
    try:
        parsed = orjson.loads(raw)  # ~4x faster than json on the 40-75 KB bodies agents send
    except orjson.JSONDecodeError:
        parsed = _parse_slowly(raw)
    if not isinstance(parsed, dict):
        raise BodyRejected(400, "request body must be a JSON object")
    stream = parsed.get("stream") is True
    model = parsed.get("model")
    if not isinstance(model, str):
        model = ""
    if api is Api.RESPONSES and parsed.get("background") is True:
        raise BodyRejected(501, "background requests are currently not supported by AI Bridge")
    body = raw
    if api is Api.CHAT_COMPLETIONS:
        body = _rewrite_chat(raw, parsed, stream)
    return PreparedBody(body=body, parsed=parsed, stream=stream, model=model)


def _parse_slowly(raw: bytes) -> Any:
    """The standard library's verdict on what orjson refused (NaN, lone surrogates, say), with
    clearer errors. Nesting too deep for it is refused, not a crash."""
    try:
        text = raw.decode("utf-8")  # JSON on the wire is UTF-8 (RFC 8259 §8.1): no sniffing
    except UnicodeDecodeError as exc:
        raise BodyRejected(400, "request body is not valid UTF-8") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise BodyRejected(400, "request body is not valid JSON: nested too deeply") from exc
    except ValueError as exc:
        raise BodyRejected(400, f"request body is not valid JSON: {exc}") from exc


def _rewrite_chat(raw: bytes, parsed: dict[str, Any], stream: bool) -> bytes:
    """`n` forced to 1; streaming requests always ask for usage (as Coder's AI Gateway does)."""
    wrong_n = parsed.get("n", 1) != 1
    options = parsed.get("stream_options")
    asks_usage = isinstance(options, dict) and options.get("include_usage") is True
    needs_usage = stream and not asks_usage
    if not wrong_n and not needs_usage:
        return raw
    if not wrong_n and "stream_options" not in parsed:
        end = _closing_brace(raw)  # the common case: one splice, no scan
        return raw[:end] + b"," + _INCLUDE_USAGE + raw[end:]
    edits: list[tuple[int, int, bytes]] = []
    members = _members(raw, raw.index(b"{"))
    for key, start, end in members:
        if key == "n" and wrong_n:
            edits.append((start, end, b"1"))
        elif key == "stream_options" and needs_usage:
            edits.extend(_include_usage_edits(raw, start, end))
    if needs_usage and "stream_options" not in {key for key, _, _ in members}:
        end = _closing_brace(raw)
        edits.append((end, end, b"," + _INCLUDE_USAGE))
    for start, end, text in sorted(edits, reverse=True):
        raw = raw[:start] + text + raw[end:]
    return raw


def _include_usage_edits(raw: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """Edits that make the `stream_options` value at raw[start:end] ask for usage."""
    if raw[start] != ord("{"):  # null, false, a string...: replace it with the object we need
        return [(start, end, b'{"include_usage":true}')]
    inner = _members(raw, start)
    usage = [(s, e, b"true") for key, s, e in inner if key == "include_usage"]
    if usage:
        return usage
    separator = b"," if inner else b""
    return [(start + 1, start + 1, b'"include_usage":true' + separator)]


def _closing_brace(raw: bytes) -> int:
    """The offset of the top-level object's closing brace (only whitespace may follow it)."""
    end = len(raw) - 1
    while raw[end] in _WHITESPACE:
        end -= 1
    return end


def object_members(raw: bytes, start: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the JSON object opening at raw[start]."""
    return _members(raw, start)


def _members(raw: bytes, start: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the JSON object opening at raw[start].

    Iterative (no recursion, whatever the nesting); values exclude surrounding whitespace.
    """
    members: list[tuple[str, int, int]] = []
    depth = 0
    key: str | None = None
    value_start = -1
    pos = start
    while (match := _TOKEN.search(raw, pos)) is not None:
        at = match.start()
        char = raw[at]
        pos = at + 1
        if char == 0x22:  # '"': a string; at depth 1 before a ':', a key
            pos = _string_end(raw, pos)
            if depth == 1 and value_start < 0:
                key = _decode_key(raw[at + 1 : pos - 1])
        elif char in b"{[":
            depth += 1
        elif char in b"}]" and depth > 1:
            depth -= 1
        elif depth == 1 and char == 0x3A:  # ':'
            value_start = pos
        elif depth == 1 and char in b",}":
            if key is not None and value_start >= 0:
                members.append((key, *_strip(raw, value_start, at)))
            key, value_start = None, -1
            if char == 0x7D:  # '}': the object ends
                break
    return members


def _string_end(raw: bytes, pos: int) -> int:
    """The offset just past the quote that closes the string whose content starts at `pos`."""
    while True:
        quote = raw.index(b'"', pos)
        backslashes = 0
        while raw[quote - 1 - backslashes] == 0x5C:  # an escaped quote has an odd run before it
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1
        pos = quote + 1


def _decode_key(raw_key: bytes) -> str:
    if b"\\" not in raw_key:
        return raw_key.decode("utf-8", "replace")
    decoded: str = json.loads(b'"' + raw_key + b'"')  # "\u006e" is "n" too
    return decoded


def _strip(raw: bytes, start: int, end: int) -> tuple[int, int]:
    while start < end and raw[start] in _WHITESPACE:
        start += 1
    while end > start and raw[end - 1] in _WHITESPACE:
        end -= 1
    return start, end
