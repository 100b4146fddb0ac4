"""Dashboard sign-in sessions: the narrow facade the dashboard uses.

A session is found by the SHA-256 of its cookie's id and carries the grant of the token it was
opened with, so the caller applies the token rules (revoked, expired, suspended) on every page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aibridged.store.db import Connection, Runner
from aibridged.store.users import TokenGrant


@dataclass(frozen=True, slots=True)
class DashboardSession:
    csrf_token: str
    expires_at: datetime
    grant: TokenGrant

    def __repr__(self) -> str:  # never show the CSRF token
        return f"DashboardSession(token_id={self.grant.token_id!r})"


async def open_session(
    runner: Runner, id_hash: bytes, token_id: str, csrf_token: str, lifetime: timedelta
) -> None:
    """Store a new session; expired ones of every user go at the same time (the table stays
    as small as the number of people signed in)."""
    await runner.run(_insert, id_hash, token_id, csrf_token, lifetime)


async def _insert(
    conn: Connection, id_hash: bytes, token_id: str, csrf_token: str, lifetime: timedelta
) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= now()")
        await conn.execute(
            "INSERT INTO dashboard_sessions (id_hash, token_id, csrf_token, expires_at)"
            " VALUES ($1, $2, $3, now() + $4::interval)",
            id_hash,
            token_id,
            csrf_token,
            lifetime,
        )


async def find_session(runner: Runner, id_hash: bytes) -> DashboardSession | None:
    """The session with this id hash unless it has expired (its token's state included)."""
    row: Any = await runner.run(_find, id_hash)
    if row is None:
        return None
    values = dict(row)
    csrf_token, expires_at = values.pop("csrf_token"), values.pop("session_expires_at")
    return DashboardSession(csrf_token, expires_at, TokenGrant(**values))


async def _find(conn: Connection, id_hash: bytes) -> Any:
    return await conn.fetchrow(
        "SELECT s.csrf_token, s.expires_at AS session_expires_at,"
        " t.id AS token_id, t.hashed_secret, t.user_id, u.username, u.role,"
        " u.status AS user_status, t.expires_at, t.revoked_at IS NOT NULL AS revoked"
        " FROM dashboard_sessions s JOIN api_tokens t ON t.id = s.token_id"
        " JOIN users u ON u.id = t.user_id"
        " WHERE s.id_hash = $1 AND s.expires_at > now()",
        id_hash,
    )


async def close_session(runner: Runner, id_hash: bytes) -> None:
    await runner.run(_delete, id_hash)


async def _delete(conn: Connection, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE id_hash = $1", id_hash)
