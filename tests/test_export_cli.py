"""`aibridged interceptions list`: 5,000 recorded interceptions exported over the API as JSON,
JSONL, CSV and a table, each read back with the standard library and compared with the API."""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from aibridged.recorder import ensure_partitions
from aibridged.records import InterceptionEnd, InterceptionStart, PromptUsage, TokenUsage
from aibridged.remote.client import ApiClient
from aibridged.store import open_store
from aibridged.store.records import Stamped, insert_starts, write_batch
from aibridged.store.users import get_user
from tests.gateway import Gateway, start_gateway
from tests.logs import LogWatch, watch_logs
from tests.test_remote_cli import Cli

COUNT = 5000
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def filled(gateway: Gateway, database_url: str) -> Gateway:
    """COUNT interceptions of the admin, a second apart, each with a usage row and a prompt,
    written with the recorder's own statements."""
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await ensure_partitions(store, today=T0)
        admin = await get_user(store, "admin")
        starts = [InterceptionStart(
            id=uuid.uuid4(), initiator_id=admin.id, api_key_id="k", provider="openai",
            provider_name="openai", model=f"model-{i % 3}", client="Unknown",
            client_session_id=None, user_agent="test", credential_kind="centralized",
            credential_hint="sk-...1234", thread_parent_id=None, thread_root_id=None,
            started_at=T0 - timedelta(seconds=i),
        ) for i in range(COUNT)]  # fmt: skip
        await insert_starts(store, starts)
        records = [(TokenUsage("r", n, 2 * n), PromptUsage(f'say "{n}",\nplease'))
                   for n in range(COUNT)]  # fmt: skip
        rows = [Stamped(s.id, s.started_at, s.started_at, record)
                for s, pair in zip(starts, records, strict=True) for record in pair]  # fmt: skip
        ends = [InterceptionEnd(s.id, s.started_at, s.started_at, "", "completed") for s in starts]
        await write_batch(store, rows, ends)
    return gateway


@pytest.fixture
def logs() -> AsyncIterator[LogWatch]:  # type: ignore[misc]
    with watch_logs() as watch:  # the gateway logs to stdout, where the CLI's output is read
        yield watch


@pytest.fixture
def remote(
    filled: Gateway, logs: LogWatch, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> Cli:  # fmt: skip
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AIBRIDGED_URL", filled.url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", filled.token)
    return Cli(capsys, monkeypatch)


async def _from_api(gateway: Gateway, q: str = "") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as api:
        while True:
            params = {"q": q, "limit": 1000, **({"after_id": found[-1]["id"]} if found else {})}
            page = (await api.get("/api/v2/aibridge/interceptions", params=params)).json()
            if not page["results"]:
                return found
            found += page["results"]


async def test_json_jsonl_and_csv_exports_hold_the_apis_rows(remote: Cli, filled: Gateway) -> None:
    expected = await _from_api(filled)
    assert len(expected) == COUNT
    as_json = await remote("interceptions", "list", "--limit", "6000", "--format", "json")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out) == expected
    assert as_json.err == ""  # no progress line when stderr is not a terminal
    as_lines = await remote("interceptions", "list", "--limit", str(COUNT), "--format", "jsonl")
    assert [json.loads(line) for line in as_lines.out.splitlines()] == expected
    as_csv = await remote("interceptions", "list", "--limit", str(COUNT), "--format", "csv")
    table = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert [r["id"] for r in table] == [r["id"] for r in expected]
    for row, source in zip(table, expected, strict=True):
        usage = source["token_usages"][0]
        assert (row["input_tokens"], row["output_tokens"]) == (
            str(usage["input_tokens"]), str(usage["output_tokens"]))  # fmt: skip
        assert row["prompt"] == source["user_prompts"][0]["prompt"]
        assert row["model"] == source["model"] and row["initiator_username"] == "admin"


async def test_filters_become_the_apis_query(remote: Cli, filled: Gateway) -> None:
    after = (T0 - timedelta(seconds=100)).isoformat()
    expected = await _from_api(filled, f"model:model-1 started_after:{after}")
    result = await remote("interceptions", "list", "--model", "model-1", "--started-after",
                          after, "--initiator", "me", "--format", "jsonl")  # fmt: skip
    assert [json.loads(line)["id"] for line in result.out.splitlines()] == [
        r["id"] for r in expected
    ] and len(expected) == 33
    table = await remote("interceptions", "list", "--limit", "3", "--format", "table")
    lines = table.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STARTED_AT", "INITIATOR_USERNAME"] and len(lines) == 4
    spaced = await remote("interceptions", "list", "--client", 'Claude "Code"', "--format", "json")
    assert (spaced.code, json.loads(spaced.out)) == (0, [])


async def test_progress_goes_to_a_terminals_stderr(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    result = await remote("interceptions", "list", "--limit", str(COUNT), "--format", "jsonl")
    assert result.code == 0 and len(result.out.splitlines()) == COUNT
    assert result.err == "".join(f"\rexported {n} interceptions"
                                 for n in range(2000, COUNT + 1, 1000)) + "\n"  # fmt: skip


async def test_a_bad_filter_is_reported_with_its_field(remote: Cli) -> None:
    result = await remote("interceptions", "list", "--started-after", "yesterday")
    assert result.code == 1 and result.out == ""
    assert "started_after: 'yesterday' is not an RFC 3339 time" in result.err


async def test_an_interrupted_json_export_still_parses_and_says_so(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = ApiClient.get
    calls = 0

    def get(self: ApiClient, path: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return real_get(self, path)

    monkeypatch.setattr(ApiClient, "get", get)
    result = await remote("interceptions", "list", "--limit", str(COUNT), "--format", "json")
    assert result.code == 130
    assert len(json.loads(result.out)) == 2000
    assert "interrupted after 2000 interceptions: the export is incomplete" in result.err
