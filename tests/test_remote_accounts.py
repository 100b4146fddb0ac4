"""`aibridged users|tokens --remote` and `aibridged sessions list|show` against a real gateway:
the same actions and output as the local commands, through the management API."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import trio

from aibridged.recorder import ensure_partitions
from aibridged.records import InterceptionEnd, InterceptionStart, PromptUsage, TokenUsage
from aibridged.store import open_store
from aibridged.store.records import Stamped, insert_starts, write_batch
from aibridged.store.users import get_user
from tests.gateway import Gateway, start_gateway
from tests.logs import LogWatch, watch_logs
from tests.test_remote_cli import Cli

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    with watch_logs() as watch:  # the gateway logs to stdout, where the CLI's output is read
        yield watch


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path,
                  logs: LogWatch) -> Gateway:  # fmt: skip
    (tmp_path / "state").mkdir()
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path / "state")


@pytest.fixture
def cli(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Cli:  # fmt: skip
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AIBRIDGED_URL", gateway.url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", gateway.token)
    return Cli(capsys, monkeypatch)


async def test_users_over_the_api_print_what_the_local_commands_print(cli: Cli) -> None:
    made = await cli("users", "create", "alice", "--role", "auditor", "--name", "Alice",
                     "--remote")  # fmt: skip
    assert made.code == 0 and "alice" in made.out and "auditor" in made.out
    listed = await cli("users", "list", "--format", "json")  # AIBRIDGED_URL: remote as well
    rows = json.loads(listed.out)
    assert [(r["username"], r["role"], r["status"]) for r in rows] == [
        ("admin", "owner", "active"), ("alice", "auditor", "active")]  # fmt: skip
    assert set(rows[0]) == {"id", "username", "role", "status", "name", "email", "created_at"}
    suspended = await cli("users", "suspend", "alice")
    assert suspended.out.strip() == "user alice is suspended"
    assert (await cli("users", "activate", "alice")).out.strip() == "user alice is active"
    refused = await cli("users", "suspend", "admin")
    assert refused.code == 1 and "your own role or status" in refused.err


async def test_tokens_over_the_api_are_shown_once_work_and_revoke(
    cli: Cli, gateway: Gateway
) -> None:
    await cli("users", "create", "bob")
    made = await cli("tokens", "create", "--user", "bob", "--name", "ci", "--lifetime", "1d")
    secret = made.out.strip()
    assert made.code == 0 and secret.count("\n") == 0 and "not shown again" in made.err
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        me = await http.get("/api/v2/users/me", headers={"authorization": f"Bearer {secret}"})
        assert me.json()["username"] == "bob"
        everyone = json.loads((await cli("tokens", "list", "--format", "json")).out)
        assert [t["user"] for t in everyone] == ["admin", "bob"]  # every user's, for an owner
        assert all(secret not in json.dumps(t) for t in everyone)
        bobs = json.loads((await cli("tokens", "list", "--user", "bob", "--format", "json")).out)
        (key,) = bobs
        assert key["name"] == "ci" and key["expires_at"] and key["revoked_at"] is None
        revoked = await cli("tokens", "revoke", key["id"])  # its user found by the CLI
        assert revoked.out.strip() == f"token {key['id']} revoked"
        after = await http.get("/api/v2/users/me", headers={"authorization": f"Bearer {secret}"})
        assert after.status_code == 401
    missing = await cli("tokens", "revoke", "nosuchtoken")
    assert missing.code == 1 and "no token 'nosuchtoken'" in missing.err


async def _record_sessions(database_url: str) -> list[InterceptionStart]:
    """Two Claude Code sessions: `cc-a` (two requests) and `cc-b` (one)."""
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await ensure_partitions(store, today=T0)
        admin = await get_user(store, "admin")
        starts = [InterceptionStart(
            id=uuid.uuid4(), initiator_id=admin.id, api_key_id="k", provider="anthropic",
            provider_name="anthropic", model="claude-x", client="Claude Code",
            client_session_id=session, user_agent="claude-cli", credential_kind="centralized",
            credential_hint="sk-...1234", thread_parent_id=None, thread_root_id=None,
            started_at=T0 + timedelta(seconds=n),
        ) for n, session in enumerate(("cc-a", "cc-a", "cc-b"))]  # fmt: skip
        await insert_starts(store, starts)
        records = [(TokenUsage("r", 10 * (n + 1), 1), PromptUsage(f"ask {n}")) for n in range(3)]
        rows = [Stamped(s.id, s.started_at, s.started_at, record)
                for s, pair in zip(starts, records, strict=True) for record in pair]  # fmt: skip
        ends = [InterceptionEnd(s.id, s.started_at, s.started_at, "", "completed") for s in starts]
        await write_batch(store, rows, ends)
    return starts


async def test_sessions_list_and_show(cli: Cli, database_url: str) -> None:
    starts = await _record_sessions(database_url)
    listed = json.loads((await cli("sessions", "list")).out)
    assert [(s["id"], s["threads"]) for s in listed] == [("cc-b", 1), ("cc-a", 2)]
    as_csv = list(csv.DictReader(io.StringIO((await cli("sessions", "list", "--format",
                                                        "csv")).out)))  # fmt: skip
    assert [(r["id"], r["input_tokens"], r["last_prompt"]) for r in as_csv] == [
        ("cc-b", "30", "ask 2"), ("cc-a", "30", "ask 1")]  # fmt: skip
    paged = await cli("sessions", "list", "--limit", "1", "--after-session-id", "cc-b",
                      "--format", "jsonl")  # fmt: skip
    assert [json.loads(line)["id"] for line in paged.out.splitlines()] == ["cc-a"]
    shown = json.loads((await cli("sessions", "show", "cc-a")).out)
    assert [t["id"] for t in shown["threads"]] == [str(s.id) for s in starts[:2]]
    assert "page_started_at" not in shown
    table = (await cli("sessions", "show", "cc-a", "--format", "table")).out
    assert "client:             Claude Code" in table and "ask 0" in table and "ask 1" in table
    missing = await cli("sessions", "show", "nope")
    assert missing.code == 1 and "not found" in missing.err
