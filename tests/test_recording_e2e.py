"""Recording end to end: the official SDKs through a whole gateway, then the database is read.

Expected token counts come from what the SDK parsed of the upstream's answer (the fake upstream
reports them), never from the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import trio

from aibridged.store import Store, open_store
from tests.fakes import FakeUpstream
from tests.gateway import Gateway, ended_interceptions, start_gateway

TOOLS_OPENAI = [{"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}]  # fmt: skip
TOOLS_RESPONSES = [{"type": "function", "name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}]  # fmt: skip
TOOLS_ANTHROPIC = [{"name": "read_file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}}}]  # fmt: skip
MSG = {"model": "claude-demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        yield store


async def _wait_for(db: Store, sql: str) -> None:
    """Until `sql` (a count) finds a row: the server's view changes on its own schedule."""
    with trio.fail_after(10):
        while not await db.run(lambda conn: conn.fetchval(sql)):  # noqa: ASYNC110
            await trio.sleep(0.01)  # another session's state: nothing here to wait on


async def _children(db: Store, table: str, interception_id: Any) -> list[dict[str, Any]]:
    rows = await db.run(
        lambda conn: conn.fetch(
            f"SELECT * FROM {table} WHERE interception_id = $1 ORDER BY created_at",
            interception_id,
        )
    )
    return [dict(r) for r in rows]


def _usage_sum(rows: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    return (
        sum(r["input_tokens"] for r in rows),
        sum(r["output_tokens"] for r in rows),
        sum(r["cache_read_input_tokens"] for r in rows),
        sum(r["cache_write_input_tokens"] for r in rows),
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_completions_usage_prompt_and_tool_calls_are_recorded(
    oai: openai.AsyncOpenAI, db: Store, gateway: Gateway, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": "Read the config #demo-tool"}]
    if stream:
        chunks = [c async for c in await oai.chat.completions.create(
            model="gpt-demo", messages=messages, tools=TOOLS_OPENAI, stream=True,
            stream_options={"include_usage": True})]  # fmt: skip
        usage = next(c.usage for c in chunks if c.usage)
        call_id = next(c.choices[0].delta.tool_calls[0].id for c in chunks
                       if c.choices and c.choices[0].delta.tool_calls)  # fmt: skip
    else:
        done = await oai.chat.completions.create(
            model="gpt-demo", messages=messages, tools=TOOLS_OPENAI
        )
        usage, call_id = done.usage, done.choices[0].message.tool_calls[0].id  # type: ignore[index]
    assert usage is not None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    (row,) = await ended_interceptions(db, 1)
    assert (row["provider"], row["provider_name"], row["model"]) == ("openai", "openai", "gpt-demo")
    assert row["credential_kind"] == "centralized" and row["credential_hint"]
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert _usage_sum(tokens) == (usage.prompt_tokens - (cached or 0), usage.completion_tokens,
                                  cached or 0, 0)  # fmt: skip
    (prompt,) = await _children(db, "aibridge_user_prompts", row["id"])
    assert prompt["prompt"] == "Read the config #demo-tool"
    (tool,) = await _children(db, "aibridge_tool_usages", row["id"])
    assert (tool["tool"], tool["provider_tool_call_id"], tool["injected"]) == (
        "read_file", call_id, False)  # fmt: skip
    sample = gateway.registry.get_sample_value
    labels = {"provider": "openai", "model": "gpt-demo"}
    assert sample("coder_aibridged_tokens_total", {**labels, "type": "output"}) == (
        usage.completion_tokens)  # fmt: skip
    assert sample("coder_aibridged_prompts_total", labels) == 1
    assert sample("coder_aibridged_non_injected_tool_selections_total", labels) == 1
    assert sample("coder_aibridged_overhead_seconds_count", {"route": "chat_completions"}) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_usage_reasoning_and_function_calls_are_recorded(
    oai: openai.AsyncOpenAI, db: Store, stream: bool
) -> None:
    kw: Any = {"model": "gpt-demo", "input": "Read it #demo-tool", "tools": TOOLS_RESPONSES,
               "reasoning": {"effort": "low", "summary": "auto"}}  # fmt: skip
    if stream:
        events = [e async for e in await oai.responses.create(stream=True, **kw)]
        response = next(e.response for e in events if e.type == "response.completed")
    else:
        response = await oai.responses.create(**kw)
    usage = response.usage
    assert usage is not None
    cached = usage.input_tokens_details.cached_tokens
    (row,) = await ended_interceptions(db, 1)
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert _usage_sum(tokens) == (usage.input_tokens - cached, usage.output_tokens, cached, 0)
    calls = [item for item in response.output if item.type == "function_call"]
    tools = await _children(db, "aibridge_tool_usages", row["id"])
    assert [(t["tool"], t["provider_tool_call_id"]) for t in tools] == [
        (c.name, c.call_id)
        for c in calls  # type: ignore[union-attr]
    ]
    summaries = [s.text for item in response.output if item.type == "reasoning"
                 for s in item.summary]  # fmt: skip
    thoughts = await _children(db, "aibridge_model_thoughts", row["id"])
    assert [t["content"] for t in thoughts] == summaries


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_usage_with_cache_thinking_and_tool_use_are_recorded(
    claude: anthropic.AsyncAnthropic, db: Store, stream: bool
) -> None:
    kw: Any = {
        "model": "claude-demo",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Read the file #demo-tool"}],
        "tools": TOOLS_ANTHROPIC,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    if stream:
        async with claude.messages.stream(**kw) as s:
            message = await s.get_final_message()
    else:
        message = await claude.messages.create(**kw)
    usage = message.usage
    (row,) = await ended_interceptions(db, 1)
    assert row["provider"] == "anthropic"
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert _usage_sum(tokens) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens or 0,
        usage.cache_creation_input_tokens or 0,
    )
    assert (usage.cache_read_input_tokens or 0) > 0 and (usage.cache_creation_input_tokens or 0) > 0
    thinking = [b.thinking for b in message.content if b.type == "thinking"]
    thoughts = await _children(db, "aibridge_model_thoughts", row["id"])
    assert [t["content"] for t in thoughts] == thinking and thinking
    uses = [(b.name, b.id) for b in message.content if b.type == "tool_use"]
    tools = await _children(db, "aibridge_tool_usages", row["id"])
    assert [(t["tool"], t["provider_tool_call_id"]) for t in tools] == uses and uses


async def test_a_tool_result_joins_the_thread_and_session_of_the_call(
    claude: anthropic.AsyncAnthropic, db: Store
) -> None:
    ask = [{"role": "user", "content": "Read the file #demo-tool"}]
    first = await claude.messages.create(
        model="claude-demo",
        max_tokens=256,
        messages=ask,
        tools=TOOLS_ANTHROPIC,  # type: ignore[arg-type]
    )
    use = next(b for b in first.content if b.type == "tool_use")
    follow: Any = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "port = 8080"}],
        },
    ]
    await claude.messages.create(
        model="claude-demo",
        max_tokens=256,
        messages=follow,
        tools=TOOLS_ANTHROPIC,  # type: ignore[arg-type]
    )
    await claude.messages.create(model="claude-demo", max_tokens=64, messages=ask)  # unrelated
    parent, child, other = await ended_interceptions(db, 3)
    assert (child["thread_parent_id"], child["thread_root_id"]) == (parent["id"], parent["id"])
    assert child["session_id"] == parent["session_id"] == str(parent["id"])
    assert other["thread_root_id"] is None and other["session_id"] == str(other["id"])
    assert await _children(db, "aibridge_user_prompts", child["id"]) == []  # a tool result


async def test_a_claude_code_session_id_groups_its_requests(gateway: Gateway, db: Store) -> None:
    headers = {"x-api-key": gateway.token, "user-agent": "claude-cli/2.0.14 (external, cli)",
               "x-claude-code-session-id": "5f0c1a2b-session"}  # fmt: skip
    async with httpx2.AsyncClient(timeout=10) as http:
        for _ in range(2):
            r = await http.post(gateway.base("anthropic") + "/v1/messages", json=MSG,
                                headers=headers)  # fmt: skip
            assert r.status_code == 200
    rows = await ended_interceptions(db, 2)
    assert {(r["client"], r["client_session_id"], r["session_id"]) for r in rows} == {
        ("Claude Code", "5f0c1a2b-session", "5f0c1a2b-session")
    }


async def test_an_upstream_reset_mid_stream_ends_the_interception_with_the_usage_seen(
    gateway: Gateway, db: Store
) -> None:
    gateway.upstream.reset_mid_stream_next(3)  # message_start, a block start, a delta: then cut
    async with httpx2.AsyncClient(timeout=10) as http:
        r = await http.post(
            gateway.base("anthropic") + "/v1/messages",
            json={**MSG, "stream": True},
            headers={"x-api-key": gateway.token},
        )
    assert '"type":"error"' in r.text.replace(" ", "")
    (row,) = await ended_interceptions(db, 1)
    assert json.loads(row["metadata"])["status"] == "failed"
    tokens = await _children(db, "aibridge_token_usages", row["id"])
    assert tokens and tokens[0]["input_tokens"] > 0  # from message_start, before the cut


async def test_a_client_leaving_mid_stream_ends_the_interception(
    gateway: Gateway, db: Store
) -> None:
    gateway.upstream.hold_stream_open(interval_s=0.02)
    url = gateway.base("anthropic") + "/v1/messages"
    headers = {"x-api-key": gateway.token}
    async with (
        httpx2.AsyncClient(timeout=10) as http,
        http.stream("POST", url, json={**MSG, "stream": True}, headers=headers) as r,
    ):
        async for chunk in r.aiter_raw():
            if b"content_block_delta" in chunk:
                break
    (row,) = await ended_interceptions(db, 1)
    assert json.loads(row["metadata"])["status"] == "cancelled"
    assert await _children(db, "aibridge_token_usages", row["id"])


async def test_a_stream_open_at_sigterm_is_ended_before_the_store_closes(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, db: Store
) -> None:
    upstream = FakeUpstream()
    upstream.hold_stream_open(interval_s=0.05)
    gw = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path,
                             upstream=upstream, handle_signals=True,
                             flags={"server.shutdown_grace": "1s"})  # fmt: skip

    async def read_until_cut(task_status: trio.TaskStatus[None]) -> None:
        async with httpx2.AsyncClient(timeout=10) as http, http.stream(
            "POST", gw.base("anthropic") + "/v1/messages", json={**MSG, "stream": True},
            headers={"x-api-key": gw.token},
        ) as r:  # fmt: skip
            task_status.started()
            with contextlib.suppress(httpx2.TransportError):
                async for _ in r.aiter_raw():
                    pass

    await nursery.start(read_until_cut)
    os.kill(os.getpid(), signal.SIGTERM)
    with trio.fail_after(10):
        await gw.stopped.wait()
    rows = [
        dict(r) for r in await db.run(lambda c: c.fetch("SELECT * FROM aibridge_interceptions"))
    ]
    assert len(rows) == 1 and rows[0]["ended_at"] is not None  # written before the store closed
    assert "cut by the gateway" in json.loads(rows[0]["metadata"])["error"]
    assert await _children(db, "aibridge_token_usages", rows[0]["id"])


async def test_a_start_the_database_refuses_fails_the_request_before_the_upstream(
    gateway: Gateway, db: Store
) -> None:
    await db.run(lambda conn: conn.execute("ALTER TABLE aibridge_interceptions RENAME TO gone"))
    before = len(gateway.upstream.requests)
    async with httpx2.AsyncClient(timeout=10) as http:
        r = await http.post(gateway.base("anthropic") + "/v1/messages", json=MSG,
                            headers={"x-api-key": gateway.token})  # fmt: skip
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "failed to record interception"
    assert len(gateway.upstream.requests) == before  # nothing went upstream


async def test_a_client_leaving_before_its_start_is_committed_still_ends_it(
    gateway: Gateway, db: Store
) -> None:
    """The request prepares its upstream call while its start commits; a client that leaves
    meanwhile sends nothing upstream, and the start, once committed, is ended."""
    release = {"now": False}

    async def hold_the_table(conn: Any) -> None:  # runs on asyncio: polls a plain flag
        async with conn.transaction():
            await conn.execute("LOCK TABLE aibridge_interceptions IN EXCLUSIVE MODE")
            while not release["now"]:  # noqa: ASYNC110 (set from trio: no event crosses loops)
                await asyncio.sleep(0.01)

    waiting = (
        "SELECT count(*) FROM pg_locks"
        " WHERE relation = 'aibridge_interceptions'::regclass AND NOT granted"
    )
    before = len(gateway.upstream.requests)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, hold_the_table)
        async with httpx2.AsyncClient(timeout=10) as http, trio.open_nursery() as client:
            client.start_soon(partial(http.post, gateway.base("anthropic") + "/v1/messages",
                                      json=MSG, headers={"x-api-key": gateway.token}))  # fmt: skip
            await _wait_for(db, waiting)  # the start's insert waits for the lock
            client.cancel_scope.cancel()  # the client leaves
        release["now"] = True
    (row,) = await ended_interceptions(db, 1)
    assert json.loads(row["metadata"])["status"] == "cancelled"
    assert await _children(db, "aibridge_user_prompts", row["id"])  # handed over before
    assert len(gateway.upstream.requests) == before  # nothing went upstream


async def test_a_huge_prompt_is_recorded_cut_to_its_first_64_kib(
    claude: anthropic.AsyncAnthropic, db: Store
) -> None:
    prompt = "x" * 200_000
    await claude.messages.create(
        model="claude-demo", max_tokens=16, messages=[{"role": "user", "content": prompt}]
    )
    (row,) = await ended_interceptions(db, 1)
    (stored,) = await _children(db, "aibridge_user_prompts", row["id"])
    assert stored["prompt"] == "x" * 65536


async def test_starts_are_committed_on_the_recorders_own_native_connection(
    claude: anthropic.AsyncAnthropic, db: Store
) -> None:
    await claude.messages.create(**MSG)
    await ended_interceptions(db, 1)
    # Each backend shows its last statement: the start's insert was the native connection's
    # (named by open_recorder), and no other session's last one.
    rows = await db.run(
        lambda conn: conn.fetch(
            "SELECT application_name, state FROM pg_stat_activity"
            " WHERE datname = current_database()"
            " AND query LIKE 'INSERT INTO aibridge_interceptions %'"
        )
    )
    assert [(r["application_name"], r["state"]) for r in rows] == [("aibridged-recorder", "idle")]
