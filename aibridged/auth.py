"""Authenticating callers by API token without a database query per request.

`TokenCache.verify` keeps what it learnt about a token id for `ttl_s` (5 s by default), positive or
negative, so a revoked token or a suspended user stops working within that time on every replica,
and a busy token costs one query per replica per TTL. Concurrent misses for the same id share one
query. The secret is checked against the cached hash on every call.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from aibridged.errors import AuthError
from aibridged.store.users import TokenGrant
from aibridged.tokens import parse_token, secret_matches

GrantLoader = Callable[[str], Awaitable[TokenGrant | None]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: uuid.UUID
    username: str
    role: str
    token_id: str


@dataclass(frozen=True, slots=True)
class TokenCacheStatistics:
    entries: int
    hits: int
    misses: int


@dataclass(slots=True)
class _Entry:
    grant: TokenGrant | None
    loaded_at: float


class TokenCache:
    def __init__(
        self, load: GrantLoader, *, ttl_s: float = 5.0, max_entries: int = 100_000
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, trio.Event] = {}
        self._hits = 0
        self._misses = 0

    async def verify(self, presented: str) -> Principal:
        """The principal behind `presented`, or AuthError (reason for logs only)."""
        parsed = parse_token(presented)
        if parsed is None:
            raise AuthError("malformed token")
        grant = await self._grant(parsed.id)
        if grant is None:
            raise AuthError("unknown token id")
        if not secret_matches(parsed.secret, grant.hashed_secret):
            raise AuthError("wrong token secret")
        if grant.revoked:
            raise AuthError("token revoked")
        if grant.expires_at is not None and grant.expires_at <= datetime.now(UTC):
            raise AuthError("token expired")
        if grant.user_status != "active":
            raise AuthError(f"user {grant.user_status}")
        return Principal(grant.user_id, grant.username, grant.role, grant.token_id)

    async def _grant(self, token_id: str) -> TokenGrant | None:
        while True:
            entry = self._entries.get(token_id)
            now = trio.current_time()
            if entry is not None and now - entry.loaded_at < self._ttl_s:
                self._hits += 1
                return entry.grant
            pending = self._loading.get(token_id)
            if pending is None:
                break
            await pending.wait()  # someone else is loading it; use their answer
        self._misses += 1
        done = self._loading[token_id] = trio.Event()
        try:
            grant = await self._load(token_id)
            self._entries[token_id] = _Entry(grant, trio.current_time())
            self._entries.move_to_end(token_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return grant
        finally:
            del self._loading[token_id]
            done.set()

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget one token (or all): used after a local revoke so it applies at once here."""
        if token_id is None:
            self._entries.clear()
        else:
            self._entries.pop(token_id, None)

    def statistics(self) -> TokenCacheStatistics:
        return TokenCacheStatistics(len(self._entries), self._hits, self._misses)
