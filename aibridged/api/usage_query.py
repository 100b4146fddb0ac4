"""The usage route's query string (also the dashboard's Usage page): the time range, the grouping,
how many groups to keep apart, and whose usage. Every problem is collected and raised once as
InvalidInput, each naming its parameter.

The names follow Coder's insights API (`start_time`, `end_time`, RFC 3339): without them the
range is the last 24 hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from aibridged.api.listing_query import MAX_VALUE_CHARS, parse_integer, parse_time
from aibridged.errors import InvalidInput
from aibridged.store.usage import GROUP_BY, MAX_RANGE, GroupBy

DEFAULT_RANGE = timedelta(hours=24)
DEFAULT_GROUP_BY: GroupBy = "model"
DEFAULT_TOP, MAX_TOP = 5, 20


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: GroupBy
    top: int
    user: str | None  # an id, a username or "me", as given


def parse_usage_query(args: Mapping[str, str], *, now: datetime) -> UsageQuery:
    problems: list[tuple[str, str]] = []
    end = _moment(args, "end_time", problems) or now
    start = _moment(args, "start_time", problems) or end - DEFAULT_RANGE
    if not problems:  # (a time that is not one makes no range to check)
        problems += _range_problems(start, end)
    group_by = args.get("group_by") or DEFAULT_GROUP_BY
    if group_by not in GROUP_BY:
        problems.append(("group_by", f"{group_by[:32]!r} is not one of {', '.join(GROUP_BY)}"))
    top = parse_integer(args, "top", DEFAULT_TOP, 1, MAX_TOP, problems)
    user = args.get("user") or None
    if user is not None and len(user) > MAX_VALUE_CHARS:
        problems.append(("user", f"longer than {MAX_VALUE_CHARS} characters"))
    if problems:
        raise InvalidInput("invalid query", problems)
    return UsageQuery(start, end, cast(GroupBy, group_by), top, user)


def _range_problems(start: datetime, end: datetime) -> list[tuple[str, str]]:
    if end <= start:
        return [("end_time", "must be later than start_time")]
    if end - start > MAX_RANGE:
        return [("start_time", f"at most {MAX_RANGE.days} days before end_time")]
    return []


def _moment(args: Mapping[str, str], name: str, problems: list[tuple[str, str]]) -> datetime | None:
    text = args.get(name)
    return parse_time(name, text, problems) if text else None
