"""What the three extraction modules share: tolerant JSON reading and field access.

Everything here returns a neutral value (None, 0, "") for input of the wrong shape instead of
raising, because an extractor must keep going on the next event whatever the last one held.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from aibridged.intercept.sse import SSEEvent

__all__ = [
    "dumps",
    "event_type",
    "extras",
    "has_value",
    "integer",
    "last_user_text",
    "loads",
    "mapping",
    "string",
]


def loads(data: str | bytes) -> Any:
    """The parsed JSON, or None when it is not JSON.

    orjson first (the fast path for every event); the standard library for what orjson refuses
    but JSON allows, such as an escaped lone surrogate (``"\\ud800"``), which then stays a Python
    string. Only a malformed document pays for two parses.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def dumps(value: Any) -> str:
    """Compact JSON text of `value`, keys in their original order."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        # What orjson cannot write but json.loads can produce: integers past 64 bits, lone
        # surrogates, nesting deeper than 254.
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            return ""


def mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def integer(container: Mapping[str, Any] | None, key: str) -> int:
    """An integer field; 0 when missing or not an integer (a bool is not one)."""
    if container is None:
        return 0
    value = container.get(key)
    return value if type(value) is int else 0


def extras(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The extra counters worth keeping: a zero tells nothing the absence does not."""
    return {name: value for name, value in pairs if value}


def has_value(data: str, key: str) -> bool:
    """Whether `data` (JSON text) may hold `key` (quoted, e.g. ``'"usage"'``) with a value other
    than null. A cheap test before parsing: false positives only cost a parse, so anything
    undecidable in the short window after the key counts as a value.

    Inside a JSON string every quote is escaped, so the quoted key followed by a colon only
    occurs as a real key.
    """
    start = data.find(key)
    if start < 0:
        return False
    after = start + len(key)
    # The usual case (compact JSON, the key once, null) without slicing: a third of the time.
    if data.startswith(":null", after) and data.find(key, after) < 0:
        return False
    while start >= 0:
        after = start + len(key)
        rest = data[after : after + 24].lstrip()
        if not rest:
            return True
        if rest[0] == ":":
            value = rest[1:].lstrip()
            if not value.startswith("null"):
                return True
        start = data.find(key, after)
    return False


def event_type(event: SSEEvent) -> tuple[str | None, Any]:
    """The event's type, and its data already parsed when finding the type needed that.

    Real providers name every event (``event:`` line); a server that only puts the type in the
    data costs a parse per event, and still gets recorded.
    """
    if event.event is not None:
        return event.event, None
    parsed = loads(event.data)
    found = mapping(parsed)
    return (string(found.get("type")) or None) if found else None, parsed


def last_user_text(content: Any, part_type: str) -> str | None:
    """A user message's prompt: its string content, or the text of its last `part_type` part
    (clients put context ahead of the prompt, so the last text is the prompt)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    for part in reversed(content):
        if isinstance(part, Mapping) and part.get("type") == part_type:
            text = part.get("text")
            if isinstance(text, str):
                return text
    return None
