"""Two `aibridged serve` processes on one database: changes made through one reach the other.

Each replica is a subprocess running this checkout's code, with its own state dir, listening on
port 0; the addresses it bound are read from the `daemon.ready` line of its JSON log. The
upstream is a fake in the test process. Replicas are stopped with SIGTERM by their PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import aibridged
from aibridged.demo import serve_demo_upstream
from aibridged.secretbox import SecretBox, load_secret_box, write_key_file
from aibridged.store import open_store
from aibridged.store.db import Connection
from tests.conftest import process_alive
from tests.fakes import FakeUpstream

ROOT = Path(aibridged.__file__).resolve().parent.parent  # this checkout: the code under test
WITHIN_S = 1.0  # a change made through one replica is served by every replica within this
POLL_S = 0.02
START_TIMEOUT_S = 30.0
PROVIDERS = "/api/v2/ai/providers"
FIRST_KEY = "sk-first-0123456789abcdef"
SECOND_KEY = "sk-second-0123456789abcdef"
SEED_KEY = "sk-seeded-0123456789abcdef"
CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Replica:
    """One `aibridged serve` process and where to reach it."""

    name: str
    state_dir: Path
    config: Path
    database_url: str
    starts: int = 0
    process: trio.Process | None = None
    url: str = ""
    metrics_url: str = ""
    log_file: Path = field(default_factory=Path)
    stderr_file: Path = field(default_factory=Path)

    def base(self, provider: str) -> str:
        return f"{self.url}/api/v2/aibridge/{provider}"

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        try:
            text = self.log_file.read_text()
        except FileNotFoundError:
            return []
        # Only whole lines: the log is written in blocks, the last line may still be partial.
        entries = [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]
        return [e for e in entries if e.get("event") == event]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


def _replica(
    tmp_path: Path,
    name: str,
    database_url: str,
    key_file: Path,
    extra_toml: str = "",
) -> Replica:
    state_dir = tmp_path / name
    state_dir.mkdir()
    config = state_dir / "aibridged.toml"
    config.write_text(
        f"""
[server]
http_address = "127.0.0.1:0"
state_dir = "{state_dir}"
secrets_key_file = "{key_file}"
shutdown_grace = "2s"

[prometheus]
address = "127.0.0.1:0"

{extra_toml}
"""
    )
    return Replica(name, state_dir, config, database_url)


async def _launch(replica: Replica, env: dict[str, str]) -> None:
    """Start the process (not waiting for it to be ready)."""
    replica.starts += 1
    replica.log_file = replica.state_dir / f"log-{replica.starts}.jsonl"
    replica.stderr_file = replica.state_dir / f"stderr-{replica.starts}.txt"
    command = [
        sys.executable, "-m", "aibridged", "serve", "--config", str(replica.config),
        "--database-url", replica.database_url, "--log-json", str(replica.log_file),
    ]  # fmt: skip
    with replica.stderr_file.open("wb") as stderr:
        replica.process = await trio.lowlevel.open_process(
            command, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )


async def _wait_ready(replica: Replica) -> None:
    """Until the replica logged `daemon.ready`; read the addresses it bound from that line."""
    process = replica.process
    assert process is not None
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            if ready := replica.log_events("daemon.ready"):
                replica.url = ready[0]["http"][0]
                replica.metrics_url = ready[0]["metrics"][0]
                return
            if process.returncode is not None:
                raise AssertionError(
                    f"replica {replica.name} exited with {process.returncode}:\n"
                    + replica.stderr_file.read_text()[-3000:]
                )
            await trio.sleep(0.05)
    raise AssertionError(f"replica {replica.name} not ready within {START_TIMEOUT_S} s")


async def _stop(replica: Replica) -> None:
    """SIGTERM to the replica's PID; SIGKILL if it is still running after 15 s."""
    process, replica.process = replica.process, None
    if process is None:
        return
    if process.returncode is None:
        process.terminate()
    with trio.move_on_after(15):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    assert not process_alive(process.pid)


@asynccontextmanager
async def _running(
    replicas: Sequence[Replica], env: dict[str, str] | None = None
) -> AsyncIterator[None]:
    """Start every replica at once; stop every one that is still running on the way out."""
    try:
        for replica in replicas:
            await _launch(replica, env or _env())
        async with trio.open_nursery() as starting:
            for replica in replicas:
                starting.start_soon(_wait_ready, replica)
        yield
    finally:
        with trio.CancelScope(shield=True):
            for replica in replicas:
                await _stop(replica)


def _admin_token(replicas: Sequence[Replica]) -> str:
    """The bootstrap token: exactly one replica created the admin and wrote it."""
    files = [
        r.state_dir / "admin.token" for r in replicas if (r.state_dir / "admin.token").exists()
    ]
    assert len(files) == 1, f"admin.token written by {len(files)} replicas"
    return files[0].read_text().strip()


async def _within(
    what: str, check: Callable[[], Awaitable[bool]], within_s: float = WITHIN_S
) -> float:
    """Poll `check` every 20 ms until it holds; fail unless it did within `within_s`."""
    start = trio.current_time()
    with trio.move_on_after(within_s):
        while True:
            if await check():
                return trio.current_time() - start
            await trio.sleep(POLL_S)
    raise AssertionError(f"{what}: not seen within {within_s} s")


async def _reloads(http: httpx2.AsyncClient, replica: Replica, result: str) -> float:
    """coder_aibridged_provider_reloads_total{result=...} as the replica's /metrics shows it."""
    text = (await http.get(replica.metrics_url + "/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "coder_aibridged_provider_reloads_total"
                and sample.labels.get("result") == result
            ):
                return sample.value
    return 0.0


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> tuple[FakeUpstream, str]:
    fake = FakeUpstream()
    return fake, await nursery.start(serve_demo_upstream, fake)


class Api:
    """The management API and the data plane of the replicas, with the admin's token."""

    def __init__(self, http: httpx2.AsyncClient, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    async def create(self, replica: Replica, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(replica.url + PROVIDERS, json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def patch(self, replica: Replica, name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.patch(
            f"{replica.url}{PROVIDERS}/{name}", json=body, headers=self.headers
        )
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def delete(self, replica: Replica, name: str) -> None:
        r = await self.http.delete(f"{replica.url}{PROVIDERS}/{name}", headers=self.headers)
        assert r.status_code == 204, r.text

    async def list(self, replica: Replica) -> list[dict[str, Any]]:
        r = await self.http.get(replica.url + PROVIDERS, headers=self.headers)
        assert r.status_code == 200, r.text
        answer: list[dict[str, Any]] = r.json()
        return answer

    async def chat(self, replica: Replica, provider: str) -> httpx2.Response:
        return await self.http.post(
            replica.base(provider) + "/v1/chat/completions", json=CHAT, headers=self.headers
        )

    def answers(
        self, replica: Replica, provider: str, status: int, text: str = ""
    ) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            r = await self.chat(replica, provider)
            return r.status_code == status and text in r.text

        return check


def _compat(name: str, upstream_url: str, key: str) -> dict[str, Any]:
    return {
        "type": "openai-compat",
        "name": name,
        "base_url": upstream_url + "/v1",
        "api_keys": [key],
    }


async def test_a_change_through_either_replica_is_served_by_the_other_within_a_second(
    http: httpx2.AsyncClient,
    upstream: tuple[FakeUpstream, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    fake, upstream_url = upstream
    key_file = tmp_path / "secrets.key"
    write_key_file(key_file, SecretBox.generate())
    a = _replica(tmp_path, "a", database_url, key_file)
    b = _replica(tmp_path, "b", database_url, key_file)
    async with _running([a, b]):
        api = Api(http, _admin_token([a, b]))
        assert (await api.chat(b, "shared")).status_code == 404

        await api.create(a, _compat("shared", upstream_url, FIRST_KEY))
        took = {
            "created, on b": await _within(
                "b serving the provider a created", api.answers(b, "shared", 200)
            )
        }
        assert fake.requests[-1].header("authorization") == f"Bearer {FIRST_KEY}"
        # The replica that wrote it reloads on its own request and on the NOTIFY, as fast.
        took["created, on a"] = await _within(
            "a serving the provider it created", api.answers(a, "shared", 200)
        )

        await api.patch(b, "shared", {"enabled": False})
        took["disabled, on a"] = await _within(
            "a refusing the provider b disabled", api.answers(a, "shared", 503, "provider_disabled")
        )

        await api.delete(a, "shared")
        took["deleted, on b"] = await _within(
            "b dropping the provider a deleted", api.answers(b, "shared", 404)
        )
        assert await _reloads(http, a, "failed") == 0
        assert await _reloads(http, b, "failed") == 0
    print(f"seen after: {took}")


async def test_a_replica_whose_key_ring_lacks_the_new_key_keeps_serving_its_previous_providers(
    http: httpx2.AsyncClient,
    upstream: tuple[FakeUpstream, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    fake, upstream_url = upstream
    a_key, b_key = tmp_path / "a.key", tmp_path / "b.key"
    write_key_file(a_key, SecretBox.generate())
    shutil.copyfile(a_key, b_key)  # b's own copy: a rotation rewrites only a's file
    a = _replica(tmp_path, "a", database_url, a_key)
    b = _replica(tmp_path, "b", database_url, b_key)
    async with _running([a, b]):
        api = Api(http, _admin_token([a, b]))
        await api.create(a, _compat("first", upstream_url, FIRST_KEY))
        await _within("b serving the first provider", api.answers(b, "first", 200))
        loaded = await _reloads(http, b, "ok")

        # The configuration flags belong to `secrets`, before the action.
        rotate = await trio.run_process(
            [sys.executable, "-m", "aibridged", "secrets", "--config", str(a.config),
             "--database-url", database_url, "--log-human", "off", "rotate"],
            env=_env(), capture_stdout=True, capture_stderr=True,
        )  # fmt: skip
        assert b"secrets sealed again" in rotate.stdout, rotate.stderr
        assert len(load_secret_box(a_key, create=False).key_ids) == 2
        assert len(load_secret_box(b_key, create=False).key_ids) == 1

        # The re-sealing notified both: a re-reads its key file and reloads; b cannot.
        async def b_failed() -> bool:
            return await _reloads(http, b, "failed") >= 1

        await _within("b's reload failing", b_failed)
        await api.create(a, _compat("second", upstream_url, SECOND_KEY))
        took = await _within("a serving its new provider", api.answers(a, "second", 200))
        assert fake.requests[-1].header("authorization") == f"Bearer {SECOND_KEY}"
        assert (await api.chat(a, "first")).status_code == 200
        assert fake.requests[-1].header("authorization") == f"Bearer {FIRST_KEY}"
        assert await _reloads(http, a, "failed") == 0  # a picked the rotated file up itself

        async def failed_again() -> bool:
            return await _reloads(http, b, "failed") >= 2

        await _within("b's reload failing again", failed_again)
        failures = b.log_events("providers.reload_failed")
        assert len(failures) >= 2
        assert "which the key file does not hold" in failures[-1]["error"]
        assert len({f["kept_version"] for f in failures}) == 1  # the set holding "first"
        assert await _reloads(http, b, "ok") == loaded  # nothing was swapped in since
        # b still serves what it had, and not what it could not load.
        previous = fake.requests[-1]
        assert (await api.chat(b, "first")).status_code == 200
        assert fake.requests[-1] is not previous  # it went upstream
        assert fake.requests[-1].header("authorization") == f"Bearer {FIRST_KEY}"
        assert (await api.chat(b, "second")).status_code == 404
        # The new file copied to b, and a SIGHUP: b serves everything, without a restart.
        shutil.copyfile(a_key, b_key)
        b.signal(signal.SIGHUP)
        await _within("b serving the second provider", api.answers(b, "second", 200))
    print(f"a served its change after {took:.3f} s")


async def test_two_replicas_started_together_on_an_empty_database_seed_once(
    http: httpx2.AsyncClient,
    upstream: tuple[FakeUpstream, str],
    empty_database_url: str,
    tmp_path: Path,
) -> None:
    fake, upstream_url = upstream
    key_file = tmp_path / "secrets.key"  # missing: the first replica to get there creates it
    seed = f"""
[[providers]]
type = "openai-compat"
name = "seeded"
base_url = "{upstream_url}/v1"
key_env = "SEEDED_KEY"
"""
    replicas = [_replica(tmp_path, name, empty_database_url, key_file, seed) for name in ("a", "b")]
    async with _running(replicas, _env({"SEEDED_KEY": SEED_KEY})):
        api = Api(http, _admin_token(replicas))
        for replica in replicas:
            assert [p["name"] for p in await api.list(replica)] == ["seeded"]
            assert (await api.chat(replica, "seeded")).status_code == 200
            assert fake.requests[-1].header("authorization") == f"Bearer {SEED_KEY}"
        assert load_secret_box(key_file, create=False).key_ids  # one ring, both use it

    async def count(conn: Connection) -> tuple[int, int, int]:
        providers = await conn.fetchval("SELECT count(*) FROM ai_providers WHERE name = 'seeded'")
        users = await conn.fetchval("SELECT count(*) FROM users")
        keys = await conn.fetchval("SELECT count(*) FROM ai_provider_keys")
        return providers, users, keys

    async with open_store(empty_database_url, pool_size=1, connect_timeout_s=10) as store:
        assert await store.run(count) == (1, 1, 1)
