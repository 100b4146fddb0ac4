"""`aibridged.store.usage` on a real PostgreSQL, with records written the way the recorder writes
them: token usage summed per UTC hour or day and per group, the largest groups kept and the rest
summed as "other", totals per user and per model, and only what the selection admits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aibridged.records import InterceptionEnd, InterceptionStart, PromptUsage, TokenUsage
from aibridged.store import Store
from aibridged.store.listing import Selection
from aibridged.store.records import Stamped, create_partitions, insert_starts, write_batch
from aibridged.store.usage import Tokens, bucket_for, bucket_starts, usage_report
from aibridged.store.users import create_user

HOUR = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def record(
    store: Store,
    initiator: uuid.UUID,
    at: datetime,
    *usages: TokenUsage,
    prompt: str = "hello",
    **kw: Any,
) -> uuid.UUID:
    """One finished interception started `at`, with its token usages and a prompt; its id."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(), "initiator_id": initiator, "api_key_id": "abcdefghij",
        "provider": "openai", "provider_name": "openai", "model": "gpt-x", "client": "Unknown",
        "client_session_id": None, "user_agent": "test", "credential_kind": "centralized",
        "credential_hint": "sk-a...bcde", "thread_parent_id": None, "thread_root_id": None,
        "started_at": at,
    }  # fmt: skip
    start = InterceptionStart(**{**fields, **kw})
    await insert_starts(store, [start])
    rows = [Stamped(start.id, at, at + timedelta(seconds=n), usage)
            for n, usage in enumerate(usages)]  # fmt: skip
    rows.append(Stamped(start.id, at, at, PromptUsage(prompt)))
    await write_batch(store, rows, [InterceptionEnd(start.id, at, at, "", "completed")])
    return start.id


@pytest.fixture
async def people(store: Store) -> tuple[uuid.UUID, uuid.UUID]:
    await create_partitions(store, (HOUR - timedelta(days=3)).date(), 6)
    alice = (await create_user(store, username="alice", name="Alice", role="member")).id
    bob = (await create_user(store, username="bob", role="member")).id
    return alice, bob


async def test_hours_sum_every_kind_of_token_per_model_and_count_interceptions(
    store: Store, people: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice, bob = people
    await record(store, alice, HOUR + timedelta(minutes=5),
                 TokenUsage("r1", 100, 10, 1000, 50), TokenUsage("r2", 20, 2))  # fmt: skip
    await record(store, bob, HOUR + timedelta(minutes=59), TokenUsage("r3", 7, 3), model="gpt-y")
    await record(store, bob, HOUR + timedelta(hours=2), model="gpt-y")  # no usage recorded
    await record(store, alice, HOUR + timedelta(hours=5))  # past the range's end

    report = await usage_report(store, Selection(), start=HOUR, end=HOUR + timedelta(hours=5),
                                group_by="model", top=5)  # fmt: skip

    assert report.bucket == "hour"
    assert report.buckets == [HOUR + timedelta(hours=n) for n in range(5)]
    x, y = report.series
    assert (x.key, y.key) == ("gpt-x", "gpt-y")  # the larger first
    assert x.usage[0] == Tokens(120, 12, 1000, 50, 1) and x.usage[1:] == [Tokens()] * 4
    assert y.usage[0] == Tokens(7, 3, 0, 0, 1) and y.usage[2] == Tokens(0, 0, 0, 0, 1)
    assert report.totals == Tokens(127, 15, 1000, 50, 3)
    assert [(m, u.total) for m, u in report.by_model] == [("gpt-x", 1182), ("gpt-y", 10)]
    assert [(u.username, u.name, u.usage.interceptions) for u in report.by_user] == [
        ("alice", "Alice", 1), ("bob", "", 2)]  # fmt: skip


async def test_the_largest_groups_are_kept_and_the_rest_summed_as_other(
    store: Store, people: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice, bob = people
    for n, client in enumerate(("Claude Code", "Codex", "Cursor")):
        await record(store, alice, HOUR, TokenUsage("r", 10 ** (n + 1), 0), client=client)
    await record(store, bob, HOUR + timedelta(hours=1), TokenUsage("r", 5, 5), client="Codex")

    report = await usage_report(store, Selection(), start=HOUR, end=HOUR + timedelta(hours=2),
                                group_by="client", top=1)  # fmt: skip

    kept, other = report.series
    assert (kept.key, kept.label, [u.total for u in kept.usage]) == ("Cursor", "Cursor", [1000, 0])
    assert (other.key, other.label) == (None, "other")
    assert [u.total for u in other.usage] == [110, 10]
    assert [u.interceptions for u in other.usage] == [2, 1]

    by_user = await usage_report(store, Selection(), start=HOUR, end=HOUR + timedelta(hours=2),
                                 group_by="user", top=5)  # fmt: skip
    assert [(s.key, s.label) for s in by_user.series] == [(str(alice), "alice"), (str(bob), "bob")]


async def test_days_span_partitions_and_the_range_is_start_inclusive_end_exclusive(
    store: Store, people: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice, _ = people
    start = HOUR - timedelta(days=2)
    end = HOUR + timedelta(days=1)
    await record(store, alice, start, TokenUsage("r", 1, 0))  # the first moment counts
    await record(store, alice, start - timedelta(microseconds=1), TokenUsage("r", 50, 0))
    await record(store, alice, HOUR, TokenUsage("r", 2, 0))
    await record(store, alice, end, TokenUsage("r", 400, 0))  # the end does not

    report = await usage_report(store, Selection(), start=start, end=end, group_by="user", top=5)

    assert report.bucket == "day"
    midnight = datetime(2026, 11, 18, tzinfo=UTC)
    assert report.buckets == [midnight + timedelta(days=n) for n in range(4)]
    assert [u.input_tokens for u in report.series[0].usage] == [1, 0, 2, 0]
    assert report.totals.input_tokens == 3


async def test_only_what_the_selection_admits_is_summed(
    store: Store, people: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice, bob = people
    await record(store, alice, HOUR, TokenUsage("r", 1, 1))
    await record(store, bob, HOUR, TokenUsage("r", 100, 100))
    end = HOUR + timedelta(hours=1)

    mine = await usage_report(store, Selection(initiator_id=alice), start=HOUR, end=end,
                              group_by="model", top=5)  # fmt: skip
    assert mine.totals == Tokens(1, 1, 0, 0, 1)
    assert [u.username for u in mine.by_user] == ["alice"]

    nothing = await usage_report(store, None, start=HOUR, end=end, group_by="model", top=5)
    assert (nothing.series, nothing.totals, nothing.by_user) == ([], Tokens(), [])
    assert nothing.buckets == [HOUR]


def test_the_bucket_follows_the_range_and_buckets_start_on_utc_boundaries() -> None:
    assert bucket_for(HOUR, HOUR + timedelta(days=2)) == "hour"
    assert bucket_for(HOUR, HOUR + timedelta(days=2, seconds=1)) == "day"
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 11, 20, 7, 0, tzinfo=india)  # 01:30 UTC
    assert bucket_starts(local, HOUR, "hour")[0] == datetime(2026, 11, 20, 1, tzinfo=UTC)
    early = datetime(2026, 11, 20, 3, 0, tzinfo=india)  # still the 19th in UTC
    assert bucket_starts(early, HOUR, "day") == [datetime(2026, 11, 19, tzinfo=UTC),
                                                 datetime(2026, 11, 20, tzinfo=UTC)]  # fmt: skip
    assert len(bucket_starts(HOUR, HOUR + timedelta(minutes=1), "day")) == 1
