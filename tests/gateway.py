"""Starting a whole gateway (run_daemon) against fake upstreams, for end-to-end tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import trio
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CollectorRegistry

from aibridged.config import Config, load_config
from aibridged.daemon import ADMIN_TOKEN_FILE, BoundAddresses, run_daemon
from aibridged.demo import serve_demo_upstream
from aibridged.store import Store
from tests.fakes import FakeUpstream

OPENAI_KEY = "sk-upstream-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-upstream-0123456789"


@dataclass
class Gateway:
    config: Config
    bound: BoundAddresses
    token: str
    upstream: FakeUpstream
    upstream_url: str
    registry: CollectorRegistry
    stopped: trio.Event

    @property
    def url(self) -> str:
        return self.bound.http[0]

    def base(self, provider: str) -> str:
        return f"{self.url}/api/v2/aibridge/{provider}"


def write_config(state_dir: Path, upstream_url: str, extra_toml: str = "") -> Path:
    path = state_dir / "aibridged.toml"
    path.write_text(
        f"""
[server]
http_address = "127.0.0.1:0"
state_dir = "{state_dir}"
shutdown_grace = "5s"

[prometheus]
enabled = false

{extra_toml}

[[providers]]
type = "openai-compat"
name = "openai"
base_url = "{upstream_url}/v1"
key_env = "TEST_OPENAI_KEY"

[[providers]]
type = "anthropic"
name = "anthropic"
base_url = "{upstream_url}"
key_env = "TEST_ANTHROPIC_KEY"

[[providers]]
type = "openai"
name = "switched-off"
base_url = "{upstream_url}/v1"
key_env = "TEST_OPENAI_KEY"
enabled = false
"""
    )
    return path


async def start_gateway(
    nursery: trio.Nursery,
    *,
    database_url: str,
    state_dir: Path,
    flags: Mapping[str, str] | None = None,
    extra_toml: str = "",
    upstream: FakeUpstream | None = None,
    handle_signals: bool = False,
    span_processor: SpanProcessor | None = None,
) -> Gateway:
    upstream = upstream or FakeUpstream()
    upstream_url = await nursery.start(serve_demo_upstream, upstream)
    path = write_config(state_dir, upstream_url, extra_toml)
    config = load_config(
        path=path,
        env={"TEST_OPENAI_KEY": OPENAI_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY},
        flags={"database.url": database_url, **(flags or {})},
        search_default_path=False,
    )
    registry = CollectorRegistry()
    stopped = trio.Event()

    async def daemon(task_status: trio.TaskStatus[BoundAddresses]) -> None:
        try:
            await run_daemon(
                config,
                registry=registry,
                handle_signals=handle_signals,
                environ=_env(),
                span_processor=span_processor,
                task_status=task_status,
            )
        finally:
            stopped.set()

    bound = await nursery.start(daemon)
    token = (state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    return Gateway(config, bound, token, upstream, upstream_url, registry, stopped)


def _env() -> dict[str, str]:
    return {"TEST_OPENAI_KEY": OPENAI_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}


async def recorded_interceptions(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """Every recorded interception (newest first, as listed) once `count` of them have ended:
    recording is asynchronous, the SDK call returns before its rows are written."""
    deadline = time.monotonic() + 10
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as http:
        while True:
            got = await http.get("/api/v2/aibridge/interceptions", params={"limit": 1000})
            found: list[dict[str, Any]] = got.json()["results"]
            if sum(r["ended_at"] is not None for r in found) >= count:
                return found
            assert time.monotonic() < deadline, found
            await trio.sleep(0.02)


async def chat_status(gateway: Gateway, provider: str, token: str | None = None) -> int:
    """The HTTP status of one chat completion through the gateway to `provider`, with the
    openai SDK (the admin's token unless another is given)."""
    async with openai.AsyncOpenAI(
        base_url=gateway.base(provider) + "/v1", api_key=token or gateway.token, max_retries=0
    ) as client:
        try:
            await client.chat.completions.create(
                model="gpt-demo", messages=[{"role": "user", "content": "hello"}]
            )
        except openai.APIStatusError as exc:
            return exc.status_code
    return 200


async def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A one-day self-signed certificate for localhost and its key (skips without openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    await trio.run_process(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    return cert, key


async def ended_interceptions(db: Store, count: int, limit_s: float = 5.0) -> list[dict[str, Any]]:
    """The interceptions, oldest first, once `count` of them have ended (the recorder writes
    behind the request by design)."""
    query = "SELECT * FROM aibridge_interceptions ORDER BY started_at"
    deadline = time.monotonic() + limit_s
    while True:
        rows = [dict(r) for r in await db.run(lambda conn: conn.fetch(query))]
        if sum(r["ended_at"] is not None for r in rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"only {rows} after {limit_s}s"
        await trio.sleep(0.02)
