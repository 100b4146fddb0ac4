"""Token usage over time: sums per time bucket and group (user, model or client), and totals per
user and per model, for one time range and the interceptions a selection admits.

An interception's tokens count in the bucket of its start time (UTC hours or days, the bucket
of `date_trunc`), the time its records are partitioned by: the range prunes every recording
table to the days it spans. One statement reads them: the interceptions counted and their token
usages summed per (bucket, user, model, client) (an interception with no usage still counts),
then GROUPING SETS make the (bucket, group) sums, the per-user sums and the per-model sums from
those few rows. The groups past
the `top` largest are summed into one "other" series, so a chart keeps a readable legend.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aibridged.store.db import Connection, Runner
from aibridged.store.listing import Selection, Statement
from aibridged.store.sessions import TOKEN_KEYS, iso, where

Bucket = Literal["hour", "day"]
GroupBy = Literal["user", "model", "client"]
GROUP_BY: tuple[GroupBy, ...] = ("user", "model", "client")
HOURLY_UP_TO = timedelta(days=2)  # a longer range is bucketed by day
MAX_RANGE = timedelta(days=366)
STEP: dict[Bucket, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

_KEY_COLUMN: dict[GroupBy, str] = {
    "user": "c.initiator_id::text",
    "model": "c.model",
    "client": "c.client::text",
}

# Interceptions counted and token usages summed apart, each straight into (bucket, user, model,
# client) groups, then joined: a few thousand rows, where summing per interception first made
# half a million (and sorted them on disk) for 30 days at a million interceptions
# (bench/usage_scale.py).
_USAGE = (
    "WITH counted AS (SELECT date_trunc('{bucket}', i.started_at, 'UTC') AS bucket,"
    " i.initiator_id, i.model, i.client, count(*) AS interceptions"
    " FROM aibridge_interceptions i"
    " WHERE {where} AND i.started_at >= ${start} AND i.started_at < ${end} GROUP BY 1, 2, 3, 4),"
    " summed AS (SELECT date_trunc('{bucket}', i.started_at, 'UTC') AS bucket,"
    " i.initiator_id, i.model, i.client, sum(t.input_tokens) AS input_tokens,"
    " sum(t.output_tokens) AS output_tokens,"
    " sum(t.cache_read_input_tokens) AS cache_read_input_tokens,"
    " sum(t.cache_write_input_tokens) AS cache_write_input_tokens"
    " FROM aibridge_interceptions i JOIN aibridge_token_usages t"
    " ON t.interception_id = i.id AND t.started_at = i.started_at"
    " AND t.started_at >= ${start} AND t.started_at < ${end}"
    " WHERE {where} AND i.started_at >= ${start} AND i.started_at < ${end} GROUP BY 1, 2, 3, 4),"
    " per AS (SELECT c.bucket, c.initiator_id, c.model, {key} AS key, c.interceptions,"
    " coalesce(s.input_tokens, 0) AS input_tokens, coalesce(s.output_tokens, 0) AS output_tokens,"
    " coalesce(s.cache_read_input_tokens, 0) AS cache_read_input_tokens,"
    " coalesce(s.cache_write_input_tokens, 0) AS cache_write_input_tokens"
    " FROM counted c LEFT JOIN summed s ON (s.bucket, s.initiator_id, s.model, s.client)"
    " = (c.bucket, c.initiator_id, c.model, c.client))"
    " SELECT grouping(bucket) AS no_bucket, grouping(initiator_id) AS no_user, bucket, key,"
    " initiator_id, model, sum(interceptions) AS interceptions, sum(input_tokens) AS input_tokens,"
    " sum(output_tokens) AS output_tokens,"
    " sum(cache_read_input_tokens) AS cache_read_input_tokens,"
    " sum(cache_write_input_tokens) AS cache_write_input_tokens"
    " FROM per GROUP BY GROUPING SETS ((bucket, key), (initiator_id), (model))"
)


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts and how many interceptions they came from."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    interceptions: int = 0

    @property
    def total(self) -> int:
        """Every kind of token: what a chart shows and what ranks the groups."""
        return sum(getattr(self, key) for key in TOKEN_KEYS)

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(getattr(self, k) + getattr(other, k) for k in _FIELDS))

    def as_json(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in _FIELDS}


_FIELDS = (*TOKEN_KEYS, "interceptions")


@dataclass(frozen=True, slots=True)
class Series:
    """One group's usage in every bucket; `key` is None for the "other" groups summed."""

    key: str | None
    label: str
    usage: list[Tokens]


@dataclass(frozen=True, slots=True)
class UserTotal:
    id: uuid.UUID
    username: str
    name: str
    usage: Tokens

    def as_json(self) -> dict[str, Any]:
        person = {"id": str(self.id), "username": self.username, "name": self.name}
        return {"initiator": person, **self.usage.as_json()}


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: datetime
    end: datetime
    bucket: Bucket
    group_by: GroupBy
    buckets: list[datetime]
    series: list[Series]
    totals: Tokens
    by_user: list[UserTotal] = field(default_factory=list)
    by_model: list[tuple[str, Tokens]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "start_time": iso(self.start),
            "end_time": iso(self.end),
            "interval": self.bucket,
            "group_by": self.group_by,
            "buckets": [iso(b) for b in self.buckets],
            "series": [
                {"key": s.key, "label": s.label, "usage": [u.as_json() for u in s.usage]}
                for s in self.series
            ],
            "totals": self.totals.as_json(),
            "by_user": [u.as_json() for u in self.by_user],
            "by_model": [{"model": model, **usage.as_json()} for model, usage in self.by_model],
        }


def bucket_for(start: datetime, end: datetime) -> Bucket:
    """Hours for a range of up to two days, else days."""
    return "hour" if end - start <= HOURLY_UP_TO else "day"


def bucket_starts(start: datetime, end: datetime, bucket: Bucket) -> list[datetime]:
    """The start of every bucket the range [start, end) touches, in UTC."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        first = first.replace(hour=0)
    starts = []
    while first < end:
        starts.append(first)
        first += STEP[bucket]
    return starts


async def usage_report(
    runner: Runner,
    selection: Selection | None,
    *,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    top: int,
) -> UsageReport:
    """Usage in [start, end) of the interceptions `selection` admits (None: nothing is visible,
    an empty report), bucketed by `bucket_for` the range, the `top` largest groups kept apart."""
    bucket = bucket_for(start, end)
    rows: list[Any] = []
    names: dict[uuid.UUID, tuple[str, str]] = {}
    if selection is not None:
        rows, names = await runner.run(_read, selection, start, end, bucket, group_by)
    return _report(rows, names, start, end, bucket, group_by, top)


def usage_statement(
    selection: Selection, start: datetime, end: datetime, bucket: Bucket, group_by: GroupBy
) -> Statement:
    """The one statement of a report (the bench EXPLAINs exactly this)."""
    params: list[Any] = []
    condition = where(selection, params)
    params += [start, end]
    sql = _USAGE.format(key=_KEY_COLUMN[group_by], bucket=bucket, where=condition,
                        start=len(params) - 1, end=len(params))  # fmt: skip
    return Statement(sql, tuple(params))


async def _read(
    conn: Connection,
    selection: Selection,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    group_by: GroupBy,
) -> tuple[list[Any], dict[uuid.UUID, tuple[str, str]]]:
    reading = usage_statement(selection, start, end, bucket, group_by)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(reading.sql, *reading.params)
        ids = [row["initiator_id"] for row in rows if not row["no_user"]]
        users = await conn.fetch("SELECT id, username, name FROM users WHERE id = ANY($1)", ids)
    return list(rows), {u["id"]: (u["username"], u["name"]) for u in users}


def _report(
    rows: list[Any],
    names: dict[uuid.UUID, tuple[str, str]],
    start: datetime,
    end: datetime,
    bucket: Bucket,
    group_by: GroupBy,
    top: int,
) -> UsageReport:
    buckets = bucket_starts(start, end, bucket)
    cells: dict[str, dict[datetime, Tokens]] = {}
    by_user, by_model = [], []
    for row in rows:
        usage = Tokens(*(int(row[k]) for k in _FIELDS))
        if not row["no_bucket"]:
            cells.setdefault(row["key"], {})[row["bucket"]] = usage
        elif not row["no_user"]:
            username, name = names.get(row["initiator_id"], ("", ""))
            by_user.append(UserTotal(row["initiator_id"], username, name, usage))
        else:
            by_model.append((row["model"], usage))
    labels = {str(k): v[0] for k, v in names.items()} if group_by == "user" else {}
    series = _series(cells, buckets, labels, top)
    totals = sum((u.usage for u in by_user), Tokens())
    by_user.sort(key=lambda u: (-u.usage.total, u.username))
    by_model.sort(key=lambda m: (-m[1].total, m[0]))
    return UsageReport(start, end, bucket, group_by, buckets, series, totals, by_user, by_model)


def _series(
    cells: dict[str, dict[datetime, Tokens]],
    buckets: list[datetime],
    labels: dict[str, str],
    top: int,
) -> list[Series]:
    """The `top` groups by total tokens (then by key), and the rest summed as "other"."""
    ranked = sorted(cells, key=lambda k: (-sum(u.total for u in cells[k].values()), k))
    kept = [Series(k, labels.get(k) or k or "(none)", [cells[k].get(b, Tokens()) for b in buckets])
            for k in ranked[:top]]  # fmt: skip
    if len(ranked) > top:
        other = [sum((cells[k].get(b, Tokens()) for k in ranked[top:]), Tokens()) for b in buckets]
        kept.append(Series(None, "other", other))
    return kept
