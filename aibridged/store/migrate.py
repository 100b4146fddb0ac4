"""Versioned SQL migrations, applied under a PostgreSQL advisory lock.

Files are `migrations/NNNN_name.sql`; each runs in its own transaction together with the row that
records it, so a failed migration leaves nothing half-applied. Several replicas may start at once:
the advisory lock makes the others wait, and they then find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from aibridged.errors import MigrationError
from aibridged.store.db import Connection, Store

# Arbitrary but fixed: every aibridged replica must use the same key.
MIGRATION_LOCK_KEY = 0x41494272_6D696772  # "AIBr" "migr"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("aibridged.store").joinpath("migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be contiguous from 1, found {versions}")
    return found


async def apply_migrations(store: Store) -> list[int]:
    """Apply pending migrations; returns the versions this call applied."""
    return await store.run(_apply, load_migrations())


async def _apply(conn: Connection, migrations: list[Migration]) -> list[int]:
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        newest_known = migrations[-1].version if migrations else 0
        if done and max(done) > newest_known:
            raise MigrationError(
                f"database schema version {max(done)} is newer than this aibridged "
                f"(knows up to {newest_known}); upgrade aibridged"
            )
        for migration in migrations:
            if migration.version in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now
