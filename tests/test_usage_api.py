"""`/api/v2/aibridge/usage`: requests made through the gateway by the official SDKs, read back as
token usage per hour and group, with the sessions API's visibility and its error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.gateway import Gateway, recorded_interceptions, start_gateway

KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


@dataclass
class Recorded:
    gateway: Gateway
    member: str  # the member's token
    rows: list[dict[str, Any]]  # every interception, newest first


@pytest.fixture
async def recorded(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Recorded:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="member1", role="member")
        _, member = await create_token(store, "member1")
    async with openai.AsyncOpenAI(base_url=gateway.base("openai") + "/v1",
                                  api_key=gateway.token) as oai:  # fmt: skip
        for _ in range(2):
            await oai.chat.completions.create(
                model="gpt-demo", messages=[{"role": "user", "content": "hello"}])  # fmt: skip
    async with anthropic.AsyncAnthropic(base_url=gateway.base("anthropic"), api_key=member,
                                        default_headers={"user-agent": "claude-cli/2.0.14"}
                                        ) as claude:  # fmt: skip
        await claude.messages.create(model="claude-demo", max_tokens=64,
                                     messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    return Recorded(gateway, member, await recorded_interceptions(gateway, 3))


@pytest.fixture
async def api(recorded: Recorded) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"authorization": f"Bearer {recorded.gateway.token}"}
    async with httpx2.AsyncClient(base_url=recorded.gateway.url, headers=headers,
                                  timeout=10) as client:  # fmt: skip
        yield client


async def _usage(api: httpx2.AsyncClient, token: str | None = None, **params: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = await api.get("/api/v2/aibridge/usage", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _sum(rows: list[dict[str, Any]]) -> dict[str, int]:
    sums = {k: sum(u[k] for r in rows for u in r["token_usages"]) for k in KEYS}
    return {**sums, "interceptions": len(rows)}


async def test_the_last_day_by_model_sums_what_was_recorded(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    found = await _usage(api)
    assert found["interval"] == "hour" and found["group_by"] == "model"
    start, end = (datetime.fromisoformat(found[k]) for k in ("start_time", "end_time"))
    assert end - start == timedelta(hours=24)  # the last day, from a partial first hour:
    on_the_hour = start == start.replace(minute=0, second=0, microsecond=0)
    assert len(found["buckets"]) == (24 if on_the_hour else 25)
    assert found["buckets"][0] == start.replace(minute=0, second=0, microsecond=0).isoformat(
        ).replace("+00:00", "Z")  # fmt: skip
    gpt = [r for r in recorded.rows if r["model"] == "gpt-demo"]
    claude = [r for r in recorded.rows if r["model"] == "claude-demo"]
    assert _sum(gpt)["output_tokens"] > 0 and _sum(claude)["output_tokens"] > 0
    by_key = {s["key"]: s for s in found["series"]}
    for model, rows in (("gpt-demo", gpt), ("claude-demo", claude)):
        assert sum(u["interceptions"] for u in by_key[model]["usage"]) == len(rows)
        assert {m["model"]: m for m in found["by_model"]}[model] == {"model": model, **_sum(rows)}
    assert found["totals"] == _sum(recorded.rows)
    clients = await _usage(api, group_by="client")
    assert {s["key"] for s in clients["series"]} == {"Unknown", "Claude Code"}


async def test_members_see_their_own_usage_and_admins_anyones(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    theirs = [r for r in recorded.rows if r["initiator"]["username"] == "member1"]
    mine = await _usage(api, recorded.member, group_by="user")
    assert [u["initiator"]["username"] for u in mine["by_user"]] == ["member1"]
    assert mine["totals"] == _sum(theirs)
    assert [s["label"] for s in mine["series"]] == ["member1"]
    asked = await _usage(api, recorded.member, user="admin")  # someone else's: nothing
    assert asked["totals"]["interceptions"] == 0 and asked["series"] == []
    admin = await _usage(api, user="member1")
    assert admin["totals"] == _sum(theirs)
    everyone = await _usage(api, group_by="user")
    assert {u["initiator"]["username"] for u in everyone["by_user"]} == {"admin", "member1"}
    alias = await api.get("/api/v2/ai-gateway/usage", params={"user": "me"})
    assert alias.json()["totals"] == _sum([r for r in recorded.rows if r not in theirs])


async def test_a_range_of_days_is_bucketed_by_day_and_excludes_what_is_outside(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(days=7), now + timedelta(hours=1)
    week = await _usage(api, start_time=start.isoformat(), end_time=end.isoformat())
    midnight = end == end.replace(hour=0, minute=0, second=0, microsecond=0)
    days = (end.date() - start.date()).days + (0 if midnight else 1)
    assert week["interval"] == "day" and len(week["buckets"]) == days
    assert week["buckets"][0] == f"{start.date().isoformat()}T00:00:00Z"
    assert week["totals"]["interceptions"] == 3
    before = await _usage(api, start_time="2026-01-01T00:00:00Z", end_time="2026-01-02T00:00:00Z")
    assert before["totals"]["interceptions"] == 0 and len(before["buckets"]) == 24


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"start_time": "yesterday"}, ["start_time"]),
        ({"end_time": "2026-12-01T00:00:00"}, ["end_time"]),  # no zone
        ({"start_time": "2026-12-02T00:00:00Z", "end_time": "2026-12-01T00:00:00Z"}, ["end_time"]),
        ({"start_time": "2024-01-01T00:00:00Z", "end_time": "2025-12-31T00:00Z"}, ["start_time"]),
        ({"group_by": "colour", "top": "0"}, ["group_by", "top"]),
        ({"top": "many"}, ["top"]),
        ({"user": "u" * 600}, ["user"]),
    ],
)
async def test_bad_parameters_are_a_400_naming_each(
    api: httpx2.AsyncClient, params: dict[str, str], fields: list[str]
) -> None:
    answer = await api.get("/api/v2/aibridge/usage", params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["message"] == "invalid query"
    assert [v["field"] for v in body["validations"]] == fields


async def test_without_a_token_it_is_a_401(api: httpx2.AsyncClient) -> None:
    answer = await api.get("/api/v2/aibridge/usage", headers={"authorization": ""})
    assert answer.status_code == 401
