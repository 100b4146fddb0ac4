"""`/api/v2/aibridge/interceptions`, `/models`, `/clients`: data recorded through the gateway by
the official SDKs, read back over HTTP with filters, cursors and per-role visibility."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from aibridged.store import open_store
from aibridged.store.db import Connection
from aibridged.store.listing import COUNT_CAP
from aibridged.store.users import create_token, create_user, get_user
from tests.gateway import Gateway, recorded_interceptions, start_gateway

TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}]  # fmt: skip
CLAUDE_CODE = {"user-agent": "claude-cli/2.0.14 (external, cli)",
               "x-claude-code-session-id": "cc-session-1"}  # fmt: skip


@dataclass
class Recorded:
    gateway: Gateway
    member: str  # a member's token
    auditor: str
    member_id: str
    admin_calls: list[str]  # the models the admin's requests used, oldest first


async def _wait_ended(gateway: Gateway, count: int) -> None:
    await recorded_interceptions(gateway, count)


@pytest.fixture
async def recorded(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Recorded:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        member_user = await create_user(store, username="member1", role="member")
        await create_user(store, username="auditor1", role="auditor")
        _, member = await create_token(store, "member1")
        _, auditor = await create_token(store, "auditor1")
    base = gateway.base("openai") + "/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key=gateway.token, max_retries=0) as oai:
        await oai.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": "Read it #demo-tool"}],
            tools=TOOLS,  # type: ignore[arg-type]
        )  # fmt: skip
        await oai.responses.create(model="gpt-other", input="second question")
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0,
        default_headers=CLAUDE_CODE,
    ) as claude:  # fmt: skip
        await claude.messages.create(model="claude-demo", max_tokens=64,
                                     messages=[{"role": "user", "content": "third"}])  # fmt: skip
    async with openai.AsyncOpenAI(base_url=base, api_key=member, max_retries=0) as mine:
        await mine.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": "the member asks"}]
        )
    await _wait_ended(gateway, 4)
    return Recorded(gateway, member, auditor, str(member_user.id),
                    ["gpt-demo", "gpt-other", "claude-demo"])  # fmt: skip


@pytest.fixture
async def api(recorded: Recorded) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"authorization": f"Bearer {recorded.gateway.token}"}
    async with httpx2.AsyncClient(
        base_url=recorded.gateway.url, headers=headers, timeout=10
    ) as client:
        yield client


async def _list(api: httpx2.AsyncClient, q: str = "", token: str | None = None,
                **params: Any) -> dict[str, Any]:  # fmt: skip
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await api.get("/api/v2/aibridge/interceptions", params={"q": q, **params},
                             headers=headers)  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_each_interception_carries_its_records(api: httpx2.AsyncClient) -> None:
    body = await _list(api, "model:gpt-demo initiator:me")
    (chat,) = body["results"]
    assert (body["count"], body["count_capped"]) == (1, False)
    assert (chat["provider"], chat["provider_name"], chat["model"]) == ("openai", "openai",
                                                                        "gpt-demo")  # fmt: skip
    assert [p["prompt"] for p in chat["user_prompts"]] == ["Read it #demo-tool"]
    assert [t["tool"] for t in chat["tool_usages"]] == ["read_file"]
    assert chat["tool_usages"][0]["provider_tool_call_id"]
    (usage,) = chat["token_usages"]
    assert usage["input_tokens"] + usage["output_tokens"] > 0
    assert chat["initiator"]["username"] == "admin" and chat["ended_at"] is not None
    assert chat["credential_kind"] == "centralized"


async def test_every_filter_selects_what_it_names(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    everything = (await _list(api))["results"]
    assert len(everything) == 4
    started = sorted(r["started_at"] for r in everything)

    async def models(q: str) -> list[str]:
        return sorted(r["model"] for r in (await _list(api, q))["results"])

    assert await models("provider:anthropic") == ["claude-demo"]
    assert await models("provider_name:openai") == ["gpt-demo", "gpt-demo", "gpt-other"]
    assert await models("model:gpt-other") == ["gpt-other"]
    assert await models('client:"Claude Code"') == ["claude-demo"]
    assert await models("session_id:cc-session-1") == ["claude-demo"]
    assert await models("initiator:member1") == ["gpt-demo"]
    assert await models(f"initiator:{recorded.member_id}") == ["gpt-demo"]
    assert await models("initiator:me model:gpt-demo") == ["gpt-demo"]
    assert await models("initiator:nobody-by-this-name") == []
    assert len(await models(f"started_after:{started[1]}")) == 2
    assert len(await models(f"started_before:{started[1]}")) == 1
    assert await models(f"started_after:{started[0]} started_before:{started[2]}") == [
        r["model"] for r in everything if r["started_at"] == started[1]
    ]


async def test_sql_looking_values_match_nothing(api: httpx2.AsyncClient) -> None:
    for q in ("model:x'--", 'model:"gpt-demo\' OR \'1\'=\'1"', "provider:anthropic;DROP",
              'client:"Claude Code\\" OR 1=1"', "initiator:admin'--", "session_id:%"):  # fmt: skip
        body = await _list(api, q)
        assert (body["count"], body["results"]) == (0, []), q
    assert (await _list(api))["count"] == 4  # nothing was dropped


async def test_pages_have_no_duplicates_and_no_gaps_while_new_interceptions_arrive(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    before = [r["id"] for r in (await _list(api))["results"]]
    seen: list[str] = []
    after: str | None = None
    base = recorded.gateway.base("openai") + "/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key=recorded.gateway.token) as oai:
        while True:
            params: dict[str, Any] = {"limit": 1, **({"after_id": after} if after else {})}
            page = (await _list(api, **params))["results"]
            if not page:
                break
            seen += [r["id"] for r in page]
            after = page[-1]["id"]
            # A new one arrives between pages: newer than everything, it never enters a later page.
            await oai.chat.completions.create(
                model="gpt-demo", messages=[{"role": "user", "content": "meanwhile"}]
            )
    assert seen == before
    assert (await _list(api))["count"] == len(before) + len(before)


async def test_members_see_their_own_and_auditors_see_everyone(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    mine = await _list(api, token=recorded.member)
    assert [r["user_prompts"][0]["prompt"] for r in mine["results"]] == ["the member asks"]
    assert (await _list(api, "initiator:admin", token=recorded.member))["results"] == []
    assert (await _list(api, "initiator:me", token=recorded.member))["count"] == 1
    assert (await _list(api, token=recorded.auditor))["count"] == 4
    assert (await _list(api, "initiator:member1", token=recorded.auditor))["count"] == 1
    anonymous = await api.get("/api/v2/aibridge/interceptions", headers={"authorization": ""})
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "colour:blue"}, "q"),
        ({"q": "model"}, "q"),
        ({"q": 'model:"unclosed'}, "q"),
        ({"q": "model:a model:b"}, "model"),
        ({"q": "started_after:yesterday"}, "started_after"),
        ({"q": "started_before:2026-12-01T10:00:00"}, "started_before"),
        ({"q": "started_after:2026-12-02T00:00:00Z started_before:2026-12-01T00:00:00Z"},
         "started_before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"after_id": "not-a-uuid"}, "after_id"),
        ({"after_id": str(uuid.uuid4())}, "after_id"),
        ({"after_id": str(uuid.uuid4()), "offset": "2"}, "after_id"),
    ],
)  # fmt: skip
async def test_bad_queries_are_400_naming_the_field(
    api: httpx2.AsyncClient, params: dict[str, str], field: str
) -> None:
    for prefix in ("/api/v2/aibridge", "/api/v2/ai-gateway"):
        response = await api.get(prefix + "/interceptions", params=params)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["message"] == "invalid query"
        assert field in [v["field"] for v in body["validations"]], body


async def test_offset_pages_and_the_alias_prefix(api: httpx2.AsyncClient) -> None:
    everything = [r["id"] for r in (await _list(api))["results"]]
    page = await api.get("/api/v2/ai-gateway/interceptions", params={"limit": 2, "offset": 1})
    assert [r["id"] for r in page.json()["results"]] == everything[1:3]


async def test_models_and_clients_are_the_visible_distinct_values(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    models = (await api.get("/api/v2/aibridge/models")).json()["models"]
    assert models[0] == "gpt-demo" and sorted(models) == ["claude-demo", "gpt-demo", "gpt-other"]
    clients = (await api.get("/api/v2/aibridge/clients")).json()["clients"]
    assert "Claude Code" in clients
    headers = {"authorization": f"Bearer {recorded.member}"}
    mine = await api.get("/api/v2/ai-gateway/models", headers=headers)
    assert mine.json() == {"models": ["gpt-demo"]}
    assert (await api.get("/api/v2/aibridge/models?limit=0")).status_code == 400


async def _insert_many(conn: Connection, initiator: uuid.UUID, count: int) -> None:
    """`count` interceptions in one statement, a second apart, every tenth on model "rare"."""
    await conn.execute(
        "INSERT INTO aibridge_interceptions (id, initiator_id, provider, provider_name, model,"
        " started_at) SELECT gen_random_uuid(), $1, 'openai', 'openai',"
        " CASE WHEN n % 10 = 0 THEN 'rare' ELSE 'common' END,"
        " now() - make_interval(secs => n) FROM generate_series(1, $2) AS n",
        initiator,
        count,
    )


async def test_a_count_past_the_cap_says_at_least_the_cap_and_pages_go_on(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        admin = await get_user(store, "admin")
        await store.run(_insert_many, admin.id, COUNT_CAP + 1)
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as api:
        everything = await _list(api)
        rare = await _list(api, "model:rare")
        deep = await _list(api, offset=COUNT_CAP - 1, limit=10)
    assert (everything["count"], everything["count_capped"]) == (COUNT_CAP, True)
    assert len(everything["results"]) == 100
    assert (rare["count"], rare["count_capped"]) == ((COUNT_CAP + 1) // 10, False)
    assert len(deep["results"]) == 2  # rows past the cap are still listed
