"""`/api/v2/aibridge/sessions` and `/sessions/{id}`: interceptions recorded through the gateway
by the Anthropic SDK, grouped into sessions and threads and read back over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
import trio

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.gateway import Gateway, recorded_interceptions, start_gateway

TOOLS: Any = [{"name": "read_file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}}}]  # fmt: skip
ASK: Any = [{"role": "user", "content": "Read the file #demo-tool"}]
CLAUDE_CODE = {"user-agent": "claude-cli/2.0.14 (external, cli)",
               "x-claude-code-session-id": "cc-session-1"}  # fmt: skip


@dataclass
class Sessions:
    gateway: Gateway
    member: str  # the member's token
    tool_thread: str  # the session (and thread) of the tool call and its result
    tool_call_id: str


async def _interceptions(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """Every interception, oldest first, once `count` have ended."""
    return list(reversed(await recorded_interceptions(gateway, count)))


@pytest.fixture
async def sessions(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Sessions:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="member1", role="member")
        _, member = await create_token(store, "member1")
    base = gateway.base("anthropic")
    async with anthropic.AsyncAnthropic(base_url=base, api_key=gateway.token) as claude:
        first = await claude.messages.create(
            model="claude-demo", max_tokens=256, messages=ASK, tools=TOOLS
        )
        use = next(b for b in first.content if b.type == "tool_use")
        answer = {"role": "assistant", "content": [b.model_dump() for b in first.content]}
        result = {"type": "tool_result", "tool_use_id": use.id, "content": "port = 8080"}
        follow: Any = [*ASK, answer, {"role": "user", "content": [result]}]
        await claude.messages.create(model="claude-demo", max_tokens=256, messages=follow,
                                     tools=TOOLS)  # fmt: skip
    async with anthropic.AsyncAnthropic(base_url=base, api_key=gateway.token,
                                        default_headers=CLAUDE_CODE) as code:  # fmt: skip
        for text in ("first question", "second question"):
            await code.messages.create(model="claude-code-model", max_tokens=64,
                                       messages=[{"role": "user", "content": text}])  # fmt: skip
    async with anthropic.AsyncAnthropic(base_url=base, api_key=member) as mine:
        said: Any = [{"role": "user", "content": "the member's"}]
        await mine.messages.create(model="claude-demo", max_tokens=64, messages=said)
    rows = await _interceptions(gateway, 5)
    return Sessions(gateway, member, rows[0]["id"], use.id)


@pytest.fixture
async def api(sessions: Sessions) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"authorization": f"Bearer {sessions.gateway.token}"}
    async with httpx2.AsyncClient(
        base_url=sessions.gateway.url, headers=headers, timeout=10
    ) as client:
        yield client


async def _get(api: httpx2.AsyncClient, path: str, token: str | None = None,
               **params: Any) -> dict[str, Any]:  # fmt: skip
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await api.get("/api/v2/aibridge" + path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _tokens(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
    return {k: sum(u[k] for r in rows for u in r["token_usages"]) for k in keys}


async def test_sessions_group_threads_and_sum_their_usage(
    api: httpx2.AsyncClient, sessions: Sessions
) -> None:
    rows = await _interceptions(sessions.gateway, 5)
    listed = await _get(api, "/sessions")
    assert listed["count"] == 3
    by_id = {s["id"]: s for s in listed["sessions"]}
    assert list(by_id) == [rows[4]["session_id"], "cc-session-1", sessions.tool_thread]
    tool, code, member = by_id[sessions.tool_thread], by_id["cc-session-1"], by_id[rows[4]["id"]]
    assert (tool["threads"], code["threads"], member["threads"]) == (1, 2, 1)
    assert code["client"] == "Claude Code" and code["models"] == ["claude-code-model"]
    assert code["last_prompt"] == "second question"
    assert tool["last_prompt"] == "Read the file #demo-tool"
    assert tool["token_usage_summary"] == _tokens(rows[:2])
    assert code["token_usage_summary"] == _tokens(rows[2:4])
    assert member["initiator"]["username"] == "member1" and member["ended_at"] is not None
    assert tool["providers"] == ["anthropic"] and tool["started_at"] == rows[0]["started_at"]


async def test_session_filters_cursor_and_visibility(
    api: httpx2.AsyncClient, sessions: Sessions
) -> None:
    assert [s["id"] for s in (await _get(api, "/sessions", q='client:"Claude Code"'))[
        "sessions"]] == ["cc-session-1"]  # fmt: skip
    assert (await _get(api, "/sessions", q="model:nothing-like-this"))["count"] == 0
    everything = [s["id"] for s in (await _get(api, "/sessions"))["sessions"]]
    paged: list[str] = []
    while True:
        params: dict[str, Any] = {"limit": 1}
        if paged:
            params["after_session_id"] = paged[-1]
        page = (await _get(api, "/sessions", **params))["sessions"]
        if not page:
            break
        paged += [s["id"] for s in page]
    assert paged == everything
    mine = await _get(api, "/sessions", token=sessions.member)
    assert [s["last_prompt"] for s in mine["sessions"]] == ["the member's"]
    bad = await api.get("/api/v2/aibridge/sessions", params={"after_session_id": "no-such"})
    assert bad.status_code == 400
    assert [v["field"] for v in bad.json()["validations"]] == ["after_session_id"]
    both = await api.get("/api/v2/ai-gateway/sessions",
                         params={"after_session_id": "cc-session-1", "offset": 1})  # fmt: skip
    assert both.status_code == 400


async def test_a_session_shows_its_threads_with_actions_tools_and_thinking(
    api: httpx2.AsyncClient, sessions: Sessions
) -> None:
    rows = await _interceptions(sessions.gateway, 5)
    shown = await _get(api, f"/sessions/{sessions.tool_thread}")
    (thread,) = shown["threads"]
    assert thread["id"] == sessions.tool_thread and thread["prompt"] == "Read the file #demo-tool"
    first, second = thread["agentic_actions"]
    assert [a["interception_id"] for a in (first, second)] == [rows[0]["id"], rows[1]["id"]]
    assert [c["tool"] for c in first["tool_calls"]] == ["read_file"]
    assert first["tool_calls"][0]["interception_id"] == rows[0]["id"]
    for action, row in ((first, rows[0]), (second, rows[1])):
        assert (action["client"], action["started_at"], action["ended_at"]) == (
            row["client"], row["started_at"], row["ended_at"])  # fmt: skip
    assert first["prompt"] == "Read the file #demo-tool"
    answering = [p["prompt"] for p in rows[1]["user_prompts"]]  # the tool result's request
    assert second["prompt"] == (answering[0] if answering else None)
    assert thread["token_usage"] == _tokens(rows[:2]) == shown["token_usage_summary"]
    assert shown["page_started_at"] == rows[0]["started_at"] and shown["page_ended_at"]
    assert thread["ended_at"] == max(rows[0]["ended_at"], rows[1]["ended_at"])


async def test_thread_pages_and_their_errors(api: httpx2.AsyncClient, sessions: Sessions) -> None:
    rows = await _interceptions(sessions.gateway, 5)
    first = await _get(api, "/sessions/cc-session-1", limit=1)
    assert [t["id"] for t in first["threads"]] == [rows[2]["id"]]
    after = await _get(api, "/sessions/cc-session-1", limit=1, after_id=rows[2]["id"])
    assert [t["id"] for t in after["threads"]] == [rows[3]["id"]]
    before = await _get(api, "/sessions/cc-session-1", before_id=rows[3]["id"])
    assert [t["id"] for t in before["threads"]] == [rows[2]["id"]]
    assert [t["prompt"] for t in (await _get(api, "/sessions/cc-session-1"))["threads"]] == [
        "first question", "second question"]  # fmt: skip
    for params, field in (({"after_id": rows[2]["id"], "before_id": rows[3]["id"]}, "before_id"),
                          ({"after_id": "zzz"}, "after_id"), ({"limit": "201"}, "limit"),
                          ({"after_id": rows[0]["id"]}, "after_id")):  # fmt: skip
        bad = await api.get("/api/v2/aibridge/sessions/cc-session-1", params=params)
        assert bad.status_code == 400, params
        assert field in [v["field"] for v in bad.json()["validations"]]
    missing = await api.get("/api/v2/aibridge/sessions/no-such-session")
    assert missing.status_code == 404
    theirs = await api.get("/api/v2/aibridge/sessions/cc-session-1",
                           headers={"authorization": f"Bearer {sessions.member}"})  # fmt: skip
    assert theirs.status_code == 404  # a member sees none of the admin's session
