"""`aibridged.store.listing` on a real PostgreSQL: each listed interception carries exactly its own
child records, in the order they were made, whichever day partitions the page spans; the count is
exact up to its cap and says when it stopped there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aibridged.records import (
    InterceptionEnd,
    InterceptionStart,
    ModelThought,
    PromptUsage,
    TokenUsage,
    ToolUsage,
)
from aibridged.store import Store
from aibridged.store.listing import Selection, list_interceptions
from aibridged.store.records import Stamped, create_partitions, insert_starts, write_batch

DAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _start(started_at: datetime, **kw: Any) -> InterceptionStart:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(), "initiator_id": uuid.uuid4(), "api_key_id": "abcdefghij",
        "provider": "openai", "provider_name": "openai", "model": "gpt-x", "client": "Unknown",
        "client_session_id": None, "user_agent": "test", "credential_kind": "centralized",
        "credential_hint": "sk-a...bcde", "thread_parent_id": None, "thread_root_id": None,
        "started_at": started_at,
    }  # fmt: skip
    return InterceptionStart(**{**fields, **kw})


async def _record(store: Store, starts: list[InterceptionStart], rows: list[Stamped]) -> None:
    await insert_starts(store, starts)
    ends = [InterceptionEnd(s.id, s.started_at, s.started_at, "", "completed") for s in starts]
    await write_batch(store, rows, ends)


async def test_each_interception_carries_its_own_records_in_creation_order_across_days(
    store: Store,
) -> None:
    await create_partitions(store, (DAY - timedelta(days=1)).date(), 3)
    # Two on one day at the same moment (their records share a partition and a start time),
    # one the day before, one the day after: a page spanning three partitions.
    same = [_start(DAY), _start(DAY)]
    before, after = _start(DAY - timedelta(days=1)), _start(DAY + timedelta(days=1))
    starts = [*same, before, after]
    rows = []
    for n, start in enumerate(starts):
        for k in (2, 0, 1):  # written out of order: the listing orders by creation
            made = start.started_at + timedelta(seconds=k)
            rows.append(Stamped(start.id, start.started_at, made,
                                TokenUsage(f"r{n}-{k}", input=100 * n + k, output=k)))  # fmt: skip
        rows.append(Stamped(start.id, start.started_at, start.started_at,
                            PromptUsage(f"prompt {n}")))  # fmt: skip
    rows.append(Stamped(same[1].id, DAY, DAY, ToolUsage("r", "read_file", "call-1", "{}")))
    rows.append(Stamped(after.id, after.started_at, after.started_at,
                        ModelThought("r", "thinking", "reasoning")))  # fmt: skip
    await _record(store, starts, rows)

    listing = await list_interceptions(store, Selection(), limit=10, offset=0, after=None)

    assert (listing.count, listing.count_capped) == (4, False)
    page = listing.results
    by_id = {row["id"]: row for row in page}
    assert (page[0]["id"], page[-1]["id"]) == (str(after.id), str(before.id))  # newest first
    for n, start in enumerate(starts):
        row = by_id[str(start.id)]
        assert [u["input_tokens"] for u in row["token_usages"]] == [100 * n, 100 * n + 1,
                                                                    100 * n + 2]  # fmt: skip
        assert {u["interception_id"] for u in row["token_usages"]} == {str(start.id)}
        assert [p["prompt"] for p in row["user_prompts"]] == [f"prompt {n}"]
    assert [t["tool"] for t in by_id[str(same[1].id)]["tool_usages"]] == ["read_file"]
    assert by_id[str(same[0].id)]["tool_usages"] == []
    assert [t["text"] for t in by_id[str(after.id)]["model_thoughts"]] == ["thinking"]
    assert all(by_id[str(s.id)]["model_thoughts"] == [] for s in (*same, before))


async def test_a_page_after_a_cursor_continues_on_older_days(store: Store) -> None:
    await create_partitions(store, (DAY - timedelta(days=2)).date(), 3)
    starts = [_start(DAY - timedelta(hours=12 * n)) for n in range(5)]  # three days
    await _record(store, starts, [Stamped(s.id, s.started_at, s.started_at, PromptUsage(str(n)))
                                  for n, s in enumerate(starts)])  # fmt: skip

    first = (await list_interceptions(store, Selection(), limit=2, offset=0, after=None)).results
    rest = await list_interceptions(store, Selection(), limit=5, offset=0, after=first[-1]["id"])

    assert [r["user_prompts"][0]["prompt"] for r in first + rest.results] == ["0", "1", "2", "3",
                                                                             "4"]  # fmt: skip
    assert (rest.count, rest.count_capped) == (5, False)  # the count ignores the cursor


async def test_the_count_is_exact_up_to_its_cap_and_says_when_it_stopped_there(
    store: Store,
) -> None:
    starts = [_start(DAY - timedelta(minutes=n), model="big" if n < 4 else "small")
              for n in range(6)]  # fmt: skip
    await _record(store, starts, [])

    async def counted(cap: int, **filters: Any) -> tuple[int, bool, int]:
        listing = await list_interceptions(store, Selection(**filters), limit=100, offset=0,
                                           after=None, count_cap=cap)  # fmt: skip
        return listing.count, listing.count_capped, len(listing.results)

    assert await counted(6) == (6, False, 6)  # exactly the cap: exact
    assert await counted(5) == (5, True, 6)  # one more: capped, and the page is whole
    assert await counted(2) == (2, True, 6)
    assert await counted(4, model="big") == (4, False, 4)
    assert await counted(3, model="big") == (3, True, 4)
    assert await counted(3, model="small") == (2, False, 2)
