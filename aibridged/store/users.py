"""Users and API tokens: the narrow facade the CLI, the auth cache and the API use."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aibridged.errors import InvalidInput, NotFound
from aibridged.store.db import Connection, Runner, Store
from aibridged.tokens import format_token, generate_token, hash_secret

ROLES = ("owner", "admin", "auditor", "member")
STATUSES = ("active", "suspended")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_BOOTSTRAP_LOCK_KEY = 0x41494272_75736572  # "AIBr" "user"


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    username: str
    name: str
    email: str
    role: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    user_id: uuid.UUID
    username: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the auth cache needs to verify a token without asking the database again."""

    token_id: str
    hashed_secret: bytes
    user_id: uuid.UUID
    username: str
    role: str
    user_status: str
    expires_at: datetime | None
    revoked: bool

    def __repr__(self) -> str:
        return f"TokenGrant(token_id={self.token_id!r}, username={self.username!r})"


_USER_COLUMNS = "id, username, name, email, role, status, created_at, updated_at"
_TOKEN_COLUMNS = "t.id, t.user_id, u.username, t.name, t.created_at, t.expires_at, t.revoked_at"


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            f"invalid username {username!r}: use 1-63 lowercase letters, digits, '_', '.', '-'"
        )
    return username


async def create_user(
    store: Runner, *, username: str, role: str = "member", name: str = "", email: str = ""
) -> User:
    validate_username(username)
    if role not in ROLES:
        raise InvalidInput(f"invalid role {role!r}: one of {', '.join(ROLES)}")
    return await store.run(_insert_user, uuid.uuid4(), username, role, name, email)


async def _insert_user(
    conn: Connection, user_id: uuid.UUID, username: str, role: str, name: str, email: str
) -> User:
    row = await conn.fetchrow(
        f"INSERT INTO users (id, username, role, name, email) VALUES ($1, $2, $3, $4, $5)"
        f" RETURNING {_USER_COLUMNS}",
        user_id,
        username,
        role,
        name,
        email,
    )
    return User(**dict(row))


async def list_users(store: Runner) -> list[User]:
    rows = await store.run(_fetch, f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
    return [User(**dict(r)) for r in rows]


async def get_user(store: Runner, ref: str) -> User:
    """A user by username or id."""
    row = await store.run(
        _fetchrow, f"SELECT {_USER_COLUMNS} FROM users WHERE {_user_match(ref)}", ref
    )
    if row is None:
        raise NotFound(f"no user {ref!r}")
    return User(**dict(row))


async def set_user_status(store: Runner, ref: str, status: str) -> User:
    if status not in STATUSES:
        raise InvalidInput(f"invalid status {status!r}")
    return await _set_user(store, ref, "status", status)


async def set_user_role(store: Runner, ref: str, role: str) -> User:
    if role not in ROLES:
        raise InvalidInput(f"invalid role {role!r}: one of {', '.join(ROLES)}")
    return await _set_user(store, ref, "role", role)


async def _set_user(store: Runner, ref: str, column: str, value: str) -> User:
    row = await store.run(
        _fetchrow,
        f"UPDATE users SET {column} = $2, updated_at = now() WHERE {_user_match(ref)}"
        f" RETURNING {_USER_COLUMNS}",
        ref,
        value,
    )
    if row is None:
        raise NotFound(f"no user {ref!r}")
    return User(**dict(row))


async def count_active_owners(store: Runner) -> int:
    return int(
        await store.run(
            _fetchval, "SELECT count(*) FROM users WHERE role = 'owner' AND status = 'active'"
        )
    )


async def create_token(
    store: Runner, user_ref: str, *, name: str = "", lifetime: timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new token for a user; returns the record and the plaintext (shown once)."""
    user = await get_user(store, user_ref)
    token_id, secret = generate_token()
    row = await store.run(_insert_token, token_id, user.id, name, hash_secret(secret), lifetime)
    return ApiToken(username=user.username, **dict(row)), format_token(token_id, secret)


async def _insert_token(
    conn: Connection,
    token_id: str,
    user_id: uuid.UUID,
    name: str,
    hashed: bytes,
    lifetime: timedelta | None,
) -> Any:
    return await conn.fetchrow(
        "INSERT INTO api_tokens (id, user_id, name, hashed_secret, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval)"
        " RETURNING id, user_id, name, created_at, expires_at, revoked_at",
        token_id,
        user_id,
        name,
        hashed,
        lifetime,
    )


async def list_tokens(store: Runner, user_ref: str | None = None) -> list[ApiToken]:
    query = f"SELECT {_TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id"
    if user_ref is None:
        rows = await store.run(_fetch, query + " ORDER BY u.username, t.created_at")
    else:
        user = await get_user(store, user_ref)
        rows = await store.run(
            _fetch, query + " WHERE t.user_id = $1 ORDER BY t.created_at", user.id
        )
    return [ApiToken(**dict(r)) for r in rows]


async def revoke_token(store: Runner, token_id: str) -> ApiToken:
    row = await store.run(
        _fetchrow,
        "WITH t AS (UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = $1 RETURNING *)"
        " SELECT t.id, t.user_id, u.username, t.name, t.created_at, t.expires_at, t.revoked_at"
        " FROM t JOIN users u ON u.id = t.user_id",
        token_id,
    )
    if row is None:
        raise NotFound(f"no token {token_id!r}")
    return ApiToken(**dict(row))


async def lookup_grant(store: Runner, token_id: str) -> TokenGrant | None:
    row = await store.run(
        _fetchrow,
        "SELECT t.id AS token_id, t.hashed_secret, t.user_id, u.username, u.role,"
        " u.status AS user_status, t.expires_at, t.revoked_at IS NOT NULL AS revoked"
        " FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        token_id,
    )
    return None if row is None else TokenGrant(**dict(row))


async def bootstrap_admin(store: Store, deliver: Callable[[str], None]) -> bool:
    """On a database with no users, create the `admin` owner and hand its token to `deliver`
    (which writes it somewhere safe). `deliver` runs before the commit: if it fails, nothing
    is created and the next start tries again. True when the admin was created now."""
    token_id, secret = generate_token()
    created: bool = await store.run(
        _bootstrap, token_id, hash_secret(secret), lambda: deliver(format_token(token_id, secret))
    )
    return created


async def _bootstrap(
    conn: Connection, token_id: str, hashed: bytes, deliver: Callable[[], None]
) -> bool:
    async with conn.transaction():
        # Replicas starting together must not both create an admin.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK_KEY)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
            return False
        user_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO users (id, username, name, role)"
            " VALUES ($1, 'admin', 'Administrator', 'owner')",
            user_id,
        )
        await conn.execute(
            "INSERT INTO api_tokens (id, user_id, name, hashed_secret)"
            " VALUES ($1, $2, 'bootstrap', $3)",
            token_id,
            user_id,
            hashed,
        )
        deliver()  # a failure here rolls the transaction back
        return True


def _user_match(ref: str) -> str:
    """SQL matching `ref` ($1) as a username, or as an id when it is a canonical UUID (a
    username may look like one; the username wins)."""
    try:
        canonical = str(uuid.UUID(ref)) == ref.lower()
    except ValueError:
        canonical = False
    if not canonical:
        return "username = $1"
    return (
        "(username = $1 OR (id = $1::uuid"
        " AND NOT EXISTS (SELECT 1 FROM users WHERE username = $1)))"
    )


async def _fetch(conn: Connection, query: str, *args: object) -> list[Any]:
    return list(await conn.fetch(query, *args))


async def _fetchval(conn: Connection, query: str, *args: object) -> Any:
    return await conn.fetchval(query, *args)


async def _fetchrow(conn: Connection, query: str, *args: object) -> Any:
    return await conn.fetchrow(query, *args)
