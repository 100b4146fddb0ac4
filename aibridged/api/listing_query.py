"""The listing routes' query string: the `q` filter language, `limit`, and the page cursor.

`q` is space-separated `key:value` terms (a value may be double-quoted: `model:"gpt 4o"`). Every
problem is collected and raised once as InvalidInput, each naming its field, so a caller sees
all of them in one 400. Values are kept as text here and only ever reach SQL as bound parameters.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from aibridged.errors import InvalidInput
from aibridged.store.listing import Selection

KEYS = (
    "initiator",
    "provider",
    "provider_name",
    "model",
    "client",
    "session_id",
    "started_after",
    "started_before",
)
MAX_LIMIT = 1000
THREADS_DEFAULT_LIMIT, THREADS_MAX_LIMIT = 50, 200
MAX_VALUE_CHARS = 512


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int
    after: str | None  # the cursor: the last row's id of the previous page


def parse_filters(q: str) -> tuple[str | None, Selection]:
    """(the initiator as given: an id, a username or "me"; the other filters)."""
    problems: list[tuple[str, str]] = []
    try:
        terms = _terms(q)
    except ValueError as exc:  # an unbalanced quote
        raise InvalidInput("invalid query", [("q", f"cannot be split into terms: {exc}")]) from exc
    found: dict[str, object] = {}
    for term in terms:
        key, sep, value = term.partition(":")
        if not sep or not value:
            problems.append(("q", f"{term!r} is not key:value"))
        elif key not in KEYS:
            problems.append(("q", f"unknown key {key!r} (known: {', '.join(KEYS)})"))
        elif key in found:
            problems.append((key, "given more than once"))
        elif len(value) > MAX_VALUE_CHARS:
            problems.append((key, f"longer than {MAX_VALUE_CHARS} characters"))
        elif key.startswith("started_"):
            found[key] = parse_time(key, value, problems)
        else:
            found[key] = value
    after, before = found.get("started_after"), found.get("started_before")
    if isinstance(after, datetime) and isinstance(before, datetime) and before <= after:
        problems.append(("started_before", "must be later than started_after"))
    if problems:
        raise InvalidInput("invalid query", problems)
    initiator = found.pop("initiator", None)
    return (None if initiator is None else str(initiator)), Selection(**found)  # type: ignore[arg-type]


def _terms(q: str) -> list[str]:
    """Split on white space; double quotes group (`\\"` inside them is a quote), single quotes
    are plain characters (a value may hold an apostrophe)."""
    lexer = shlex.shlex(q, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escapedquotes = '"'
    lexer.commenters = ""
    return list(lexer)


def parse_time(key: str, value: str, problems: list[tuple[str, str]]) -> datetime | None:
    """An RFC 3339 time with a zone; else None, and a problem named `key`."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.append((key, f"{value!r} is not an RFC 3339 time (2026-12-01T09:30:00Z)"))
        return None
    if moment.tzinfo is None:
        problems.append((key, f"{value!r} has no time zone (add Z or an offset)"))
        return None
    return moment


def parse_page(
    args: Mapping[str, str],
    *,
    cursor: str,
    default_limit: int,
    cursor_is_id: bool = True,
) -> Page:
    """`limit`, `offset` and the cursor parameter `cursor` (a UUID unless `cursor_is_id` is
    false: a session id is the client's own text), validated together."""
    problems: list[tuple[str, str]] = []
    limit = parse_integer(args, "limit", default_limit, 1, MAX_LIMIT, problems)
    offset = parse_integer(args, "offset", 0, 0, None, problems)
    after = _cursor(args, cursor, problems, is_id=cursor_is_id)
    if after is not None and offset:
        problems.append((cursor, "cannot be combined with offset"))
    if problems:
        raise InvalidInput("invalid query", problems)
    return Page(limit=limit, offset=offset, after=after)


def parse_thread_page(args: Mapping[str, str]) -> tuple[int, str | None, str | None]:
    """A session's thread page: (`limit` 1-200, default 50; `after_id`; `before_id`)."""
    problems: list[tuple[str, str]] = []
    limit = parse_integer(args, "limit", THREADS_DEFAULT_LIMIT, 1, THREADS_MAX_LIMIT, problems)
    after = _cursor(args, "after_id", problems, is_id=True)
    before = _cursor(args, "before_id", problems, is_id=True)
    if after is not None and before is not None:
        problems.append(("before_id", "cannot be combined with after_id"))
    if problems:
        raise InvalidInput("invalid query", problems)
    return limit, after, before


def _cursor(
    args: Mapping[str, str], name: str, problems: list[tuple[str, str]], *, is_id: bool
) -> str | None:
    value = args.get(name) or None
    if value is None:
        return None
    if not is_id:
        if len(value) > MAX_VALUE_CHARS:
            problems.append((name, f"longer than {MAX_VALUE_CHARS} characters"))
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        problems.append((name, f"{value[:64]!r} is not an id"))
        return None


def parse_integer(
    args: Mapping[str, str],
    name: str,
    default: int,
    low: int,
    high: int | None,
    problems: list[tuple[str, str]],
) -> int:
    """`name` as a whole number from `low` to `high` (`default` when absent); else the default,
    and a problem named `name`."""
    text = args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        problems.append((name, f"{text[:32]!r} is not a whole number"))
        return default
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        problems.append((name, f"must be {bounds}"))
        return default
    return value
