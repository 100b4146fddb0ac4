"""Testing rules for this suite.

- Real PostgreSQL: one embedded server (pgserver) per test session; every test that stores data gets
  a fresh database cloned from a migrated template. Never mock the database.
- Upstreams are fakes speaking the real wire formats (tests/fakes.py, aibridged.demo); the official
  openai and anthropic SDKs are the clients in end-to-end tests.
- Timing behaviour runs under trio's autojump_clock with exact virtual-time assertions.
- A test name states the behaviour it checks; a test that cannot fail is a defect.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import asyncpg
import httpx2
import openai
import pytest
import trio

from aibridged.store import Store, apply_migrations, open_store
from aibridged.store.embedded import EmbeddedPostgres, start_embedded_postgres
from tests.browser import admin_page, browser, dash, member_page  # noqa: F401 (fixtures)
from tests.gateway import Gateway

TEMPLATE_DB = "aibridged_template"


def _admin_dsn(server: EmbeddedPostgres, database: str) -> str:
    # pgserver's URI names the `postgres` database; swap in the one we want.
    head, _, tail = server.uri.partition("/postgres?")
    return f"{head}/{database}?{tail}" if tail else server.uri.replace("/postgres", f"/{database}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="aibridged-test-pg-"))
    server = start_embedded_postgres(root / "postgres")
    try:
        asyncio.run(_create_template(server))
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# The test server's data is thrown away: no fsync. Every test clones a database, and without this
# each commit waits on the disk and stopping the server after a thousand clones spent over a
# minute flushing them.
_THROWAWAY_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


async def _create_template(server: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(server.uri)
    try:
        for name, value in _THROWAWAY_SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()

    async def migrate() -> None:
        async with open_store(
            _admin_dsn(server, TEMPLATE_DB), pool_size=2, connect_timeout_s=10
        ) as store:
            await apply_migrations(store)

    # asyncio.run is already running this coroutine: migrate in a worker thread with its own trio.
    await asyncio.to_thread(trio.run, migrate)


def new_database(server: EmbeddedPostgres, *, template: str | None = TEMPLATE_DB) -> str:
    """Create a fresh database (a migrated clone by default) and return its DSN."""
    name = f"t_{uuid.uuid4().hex[:16]}"

    async def create() -> None:
        conn = await asyncpg.connect(server.uri)
        try:
            clause = f" TEMPLATE {template}" if template else ""
            await conn.execute(f"CREATE DATABASE {name}{clause}")
        finally:
            await conn.close()

    asyncio.run(create())
    return _admin_dsn(server, name)


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres) -> str:
    return new_database(postgres_server)


@pytest.fixture
def empty_database_url(postgres_server: EmbeddedPostgres) -> str:
    return new_database(postgres_server, template="template0")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url, pool_size=5, connect_timeout_s=10) as s:
        yield s


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    """The management API of the test module's own `gateway`, as its admin."""
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=20) as client:
        yield client


# The official SDKs on the gateway of the test module's own `gateway` fixture; closed at the end
# (an SDK client left open across trio tests hangs the next one).
@pytest.fixture
async def oai(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base("openai") + "/v1", api_key=gateway.token, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude(gateway: Gateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0
    ) as client:
        yield client
