"""Providers and their keys: the narrow facade the API, the seeder and the reload loop use.

Secrets arrive here sealed (aibridged/secretbox.py) and leave sealed: this module never sees a
key in the clear. Every write sends `NOTIFY ai_providers_changed` in its own transaction, so
every replica listening reloads once the change is committed, and never before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from aibridged.errors import Conflict, NotFound
from aibridged.store.db import Connection, Runner

CHANGED_CHANNEL = "ai_providers_changed"
SEED_LOCK_KEY = 0x41494272_73656564  # "AIBr" "seed": one seeder at a time, across replicas


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: uuid.UUID
    sealed: bytes = field(repr=False)
    hint: str


@dataclass(frozen=True, slots=True)
class StoredProvider:
    id: uuid.UUID
    type: str
    name: str
    display_name: str
    enabled: bool
    base_url: str
    settings: dict[str, Any]
    secret_settings: bytes | None = field(repr=False)
    source: str
    created_at: datetime
    updated_at: datetime
    keys: tuple[StoredKey, ...] = ()
    deleted: bool = False
    seed_name: str | None = None  # the name it was seeded under, if it came from a seed


@dataclass(frozen=True, slots=True)
class ProviderWrite:
    """A provider's new state, as the API or the seeder decided it (keys in order, sealed)."""

    type: str
    name: str
    display_name: str
    enabled: bool
    base_url: str
    settings: dict[str, Any]
    secret_settings: bytes | None = field(repr=False)
    keys: tuple[StoredKey, ...]
    source: str = "api"
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    seed_name: str | None = None


_COLUMNS = (
    "id, type, name, display_name, enabled, base_url, settings, secret_settings, source,"
    " created_at, updated_at, deleted_at IS NOT NULL AS deleted, seed_name"
)


async def list_providers(runner: Runner) -> list[StoredProvider]:
    """The live providers, by name, as one consistent snapshot."""
    return await runner.run(_list)


async def _list(conn: Connection) -> list[StoredProvider]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM ai_providers WHERE deleted_at IS NULL ORDER BY name"
        )
        return await _with_keys(conn, rows)


async def _with_keys(conn: Connection, rows: Sequence[Any]) -> list[StoredProvider]:
    ids = [row["id"] for row in rows]
    keys: dict[uuid.UUID, list[StoredKey]] = {i: [] for i in ids}
    for key in await conn.fetch(
        "SELECT id, provider_id, sealed_key, hint FROM ai_provider_keys"
        " WHERE provider_id = ANY($1::uuid[]) ORDER BY provider_id, position",
        ids,
    ):
        keys[key["provider_id"]].append(StoredKey(key["id"], bytes(key["sealed_key"]), key["hint"]))
    return [_provider(row, keys[row["id"]]) for row in rows]


def _provider(row: Any, keys: list[StoredKey]) -> StoredProvider:
    return StoredProvider(
        id=row["id"],
        type=row["type"],
        name=row["name"],
        display_name=row["display_name"],
        enabled=row["enabled"],
        base_url=row["base_url"],
        settings=json.loads(row["settings"]),
        secret_settings=bytes(row["secret_settings"]) if row["secret_settings"] else None,
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        keys=tuple(keys),
        deleted=row["deleted"],
        seed_name=row["seed_name"],
    )


def _lookup(reference: str) -> tuple[str, Any]:
    """The WHERE clause and parameter finding a live provider by id or by name."""
    try:
        return "id = $1", uuid.UUID(reference)
    except ValueError:
        return "name = $1", reference


async def get_provider(runner: Runner, reference: str) -> StoredProvider:
    """A live provider by id or name; NotFound otherwise."""
    return await runner.run(_get, reference)


async def _get(conn: Connection, reference: str, *, lock: bool = False) -> StoredProvider:
    if not reference.isprintable():  # PostgreSQL text cannot even hold some of it (NUL)
        raise NotFound(f"no provider {reference!r}")
    where, value = _lookup(reference)
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM ai_providers WHERE {where} AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        value,
    )
    if row is None:
        raise NotFound(f'no provider "{reference}"')
    return (await _with_keys(conn, [row]))[0]


async def insert_provider(runner: Runner, write: ProviderWrite) -> StoredProvider:
    return await runner.run(_insert_and_notify, write)


async def _insert_and_notify(conn: Connection, write: ProviderWrite) -> StoredProvider:
    async with conn.transaction():
        await _insert(conn, write)
        await _notify(conn)
        return await _get(conn, str(write.id))


async def _insert(conn: Connection, write: ProviderWrite) -> None:
    try:
        await conn.execute(
            "INSERT INTO ai_providers (id, type, name, display_name, enabled, base_url, settings,"
            " secret_settings, source, seed_name)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)",
            write.id,
            write.type,
            write.name,
            write.display_name,
            write.enabled,
            write.base_url,
            json.dumps(write.settings),
            write.secret_settings,
            write.source,
            write.seed_name,
        )
    except asyncpg.UniqueViolationError as exc:  # the only unique column a write can clash on
        raise Conflict(f'provider name "{write.name}" is already taken') from exc
    await _write_keys(conn, write.id, write.keys)


async def _write_keys(
    conn: Connection, provider_id: uuid.UUID, keys: tuple[StoredKey, ...]
) -> None:
    """Make the provider's keys exactly `keys`, in order (positions are checked at commit)."""
    kept = [key.id for key in keys]
    await conn.execute(
        "DELETE FROM ai_provider_keys WHERE provider_id = $1 AND NOT (id = ANY($2::uuid[]))",
        provider_id,
        kept,
    )
    for position, key in enumerate(keys):
        await conn.execute(
            "INSERT INTO ai_provider_keys (id, provider_id, position, sealed_key, hint)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position",
            key.id,
            provider_id,
            position,
            key.sealed,
            key.hint,
        )


Change = Callable[[StoredProvider], ProviderWrite]


async def update_provider(runner: Runner, reference: str, change: Change) -> StoredProvider:
    """Apply `change` to the provider's current state, with its row locked meanwhile (two
    concurrent PATCHes are applied one after the other, never one over the other)."""
    return await runner.run(_update, reference, change)


async def _update(conn: Connection, reference: str, change: Change) -> StoredProvider:
    async with conn.transaction():
        current = await _get(conn, reference, lock=True)
        write = change(current)
        try:
            await conn.execute(
                "UPDATE ai_providers SET name = $2, display_name = $3, enabled = $4,"
                " base_url = $5, settings = $6::jsonb, secret_settings = $7, updated_at = now()"
                " WHERE id = $1",
                current.id,
                write.name,
                write.display_name,
                write.enabled,
                write.base_url,
                json.dumps(write.settings),
                write.secret_settings,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f'provider name "{write.name}" is already taken') from exc
        await _write_keys(conn, current.id, write.keys)
        await _notify(conn)
        return await _get(conn, str(current.id))


async def delete_provider(runner: Runner, reference: str) -> StoredProvider:
    """Soft-delete: the row stays (its name is free again, a seed never brings it back); its
    keys are deleted."""
    return await runner.run(_delete, reference)


async def _delete(conn: Connection, reference: str) -> StoredProvider:
    async with conn.transaction():
        current = await _get(conn, reference, lock=True)
        await conn.execute("DELETE FROM ai_provider_keys WHERE provider_id = $1", current.id)
        await conn.execute(
            "UPDATE ai_providers SET deleted_at = now(), updated_at = now(),"
            " secret_settings = NULL WHERE id = $1",
            current.id,
        )
        await _notify(conn)
        return current


async def _notify(conn: Connection) -> None:
    await conn.execute("SELECT pg_notify($1, '')", CHANGED_CHANNEL)


# --- seeding ---------------------------------------------------------------------------------

Seeder = Callable[[list[StoredProvider]], list[ProviderWrite]]


async def seed_providers(runner: Runner, decide: Seeder) -> list[StoredProvider]:
    """Under an advisory lock held for the transaction: hand `decide` every provider, live and
    deleted (newest first), and insert what it returns. Replicas starting together seed one
    after the other."""
    return await runner.run(_seed, decide)


async def _seed(conn: Connection, decide: Seeder) -> list[StoredProvider]:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEED_LOCK_KEY)
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM ai_providers"
            " ORDER BY deleted_at IS NOT NULL, deleted_at DESC, created_at DESC"
        )
        writes = decide(await _with_keys(conn, rows))
        for write in writes:
            await _insert(conn, write)
        if writes:
            await _notify(conn)
        return [await _get(conn, str(write.id)) for write in writes]


# --- the secrets key -------------------------------------------------------------------------

SECRETS_CHECK_CONTEXT = b"secrets_check"


async def check_secrets_key(
    runner: Runner, seal: Callable[[], bytes], check: Callable[[bytes], None]
) -> bool:
    """`check` the stored sealed value with the key in use, or store `seal()` on first boot.
    Returns True when the value was stored now."""
    return await runner.run(_check_secrets_key, seal, check)


async def _check_secrets_key(
    conn: Connection, seal: Callable[[], bytes], check: Callable[[bytes], None]
) -> bool:
    async with conn.transaction():
        stored = await conn.fetchval("SELECT sealed FROM secrets_check WHERE id = 1")
        if stored is not None:
            check(bytes(stored))
            return False
        inserted = await conn.fetchval(
            "INSERT INTO secrets_check (id, sealed) VALUES (1, $1)"
            " ON CONFLICT (id) DO NOTHING RETURNING 1",
            seal(),
        )
        if inserted is None:  # another replica stored its value first: check against that one
            check(bytes(await conn.fetchval("SELECT sealed FROM secrets_check WHERE id = 1")))
            return False
        return True


async def secrets_registered(runner: Runner) -> bool:
    """True once a secrets key has been registered (the database holds sealed values)."""
    return bool(await runner.run(_secrets_registered))


async def _secrets_registered(conn: Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM secrets_check)"))


Reseal = Callable[[bytes, bytes], bytes]  # (sealed, context) -> sealed again under the new key


async def reseal_all(runner: Runner, reseal: Reseal) -> int:
    """Seal every stored secret again (a key rotation), in one transaction; returns how many."""
    return await runner.run(_reseal_all, reseal)


async def _reseal_all(conn: Connection, reseal: Reseal) -> int:
    count = 0
    async with conn.transaction():
        await conn.execute("LOCK TABLE ai_providers, ai_provider_keys, secrets_check")
        for row in await conn.fetch("SELECT id, sealed_key FROM ai_provider_keys"):
            new = reseal(bytes(row["sealed_key"]), key_context(row["id"]))
            await conn.execute(
                "UPDATE ai_provider_keys SET sealed_key = $2 WHERE id = $1", row["id"], new
            )
            count += 1
        for row in await conn.fetch(
            "SELECT id, secret_settings FROM ai_providers WHERE secret_settings IS NOT NULL"
        ):
            new = reseal(bytes(row["secret_settings"]), settings_context(row["id"]))
            await conn.execute(
                "UPDATE ai_providers SET secret_settings = $2 WHERE id = $1", row["id"], new
            )
            count += 1
        stored = await conn.fetchval("SELECT sealed FROM secrets_check WHERE id = 1")
        if stored is not None:
            new = reseal(bytes(stored), SECRETS_CHECK_CONTEXT)
            await conn.execute("UPDATE secrets_check SET sealed = $1 WHERE id = 1", new)
        await _notify(conn)
    return count


async def all_sealed(runner: Runner) -> list[bytes]:
    """Every sealed value stored (to check they are all under one key before dropping others)."""
    return await runner.run(_all_sealed)


async def _all_sealed(conn: Connection) -> list[bytes]:
    rows = await conn.fetch(
        "SELECT sealed_key AS v FROM ai_provider_keys"
        " UNION ALL SELECT secret_settings FROM ai_providers WHERE secret_settings IS NOT NULL"
        " UNION ALL SELECT sealed FROM secrets_check"
    )
    return [bytes(row["v"]) for row in rows]


def key_context(key_id: uuid.UUID) -> bytes:
    """The associated data binding a sealed key to its row."""
    return b"ai_provider_keys:" + key_id.bytes


def settings_context(provider_id: uuid.UUID) -> bytes:
    return b"ai_providers.secret_settings:" + provider_id.bytes
