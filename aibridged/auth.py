"""Authenticating callers by API token without a database query per request.

`TokenCache.verify` keeps what it learnt about a token id for `ttl_s` (5 s by default), so a revoked
token or a suspended user stops working within that time on every replica. The secret is checked
against the cached hash on every call. Built to keep working for real users while someone floods
the gateway with made-up tokens:

- Known tokens are served from memory. Past half their TTL an entry is refreshed in the
  background while it keeps being served (stale-while-revalidate); it is never served past its
  TTL, which is what bounds revocation.
- Lookups of ids never seen before go through a small gate of their own (`miss_concurrency`), so
  a flood of them queues there and not in front of known tokens' refreshes.
- Negative answers live in a separate, smaller LRU: they can never push a real user out.
- Concurrent lookups of one id share a single query.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
import trio

from aibridged.errors import AuthError, StoreError
from aibridged.store.users import TokenGrant
from aibridged.tokens import parse_token, secret_matches

log = structlog.get_logger("aibridged.auth")

GrantLoader = Callable[[str], Awaitable[TokenGrant | None]]
REFRESH_RETRY_S = 1.0  # after a failed background refresh of an entry


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
    negative_entries: int
    hits: int
    misses: int
    refreshes: int
    misses_waiting: int


@dataclass(slots=True)
class _Entry:
    grant: TokenGrant | None
    loaded_at: float  # when the query that produced it started


class TokenCache:
    def __init__(
        self,
        load: GrantLoader,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 100_000,
        max_negative_entries: int = 10_000,
        miss_concurrency: int = 4,
        refresh_concurrency: int = 4,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._refresh_after_s = ttl_s / 2
        self._max_entries = max_entries
        self._max_negative = max_negative_entries
        self._positive: OrderedDict[str, _Entry] = OrderedDict()
        self._negative: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, trio.Event] = {}
        # When each id was last invalidated (a load that started before that is stale news),
        # and until when a refresh that failed is not tried again. Both small and short-lived.
        self._invalidated_at: dict[str, float] = {}
        self._refresh_after_failure: dict[str, float] = {}
        self._miss_gate = trio.Semaphore(miss_concurrency)
        self._known_gate = trio.Semaphore(refresh_concurrency)
        self._nursery: trio.Nursery | None = None
        self._hits = 0
        self._misses = 0
        self._refreshes = 0

    async def run_refresher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the background refreshes; without it, entries are reloaded on the request path."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def verify(self, presented: str) -> Principal:
        """The principal behind `presented`, or AuthError (reason for logs only)."""
        parsed = parse_token(presented)
        if parsed is None:
            raise AuthError("malformed token")
        return _check(parsed.secret, await self._grant(parsed.id))

    def verify_from_memory(self, presented: str) -> Principal | None:
        """`verify` when memory can answer (the usual case: no await, no deadline), else None."""
        parsed = parse_token(presented)
        if parsed is None:
            raise AuthError("malformed token")
        found, grant = self._from_memory(parsed.id)
        return _check(parsed.secret, grant) if found else None

    def is_known(self, presented: str) -> bool:
        """True when `presented` is a valid token answered from memory right now (no query)."""
        parsed = parse_token(presented)
        if parsed is None:
            return False
        entry = self._positive.get(parsed.id)
        if entry is None or trio.current_time() - entry.loaded_at >= self._ttl_s:
            return False
        grant = entry.grant
        return grant is not None and secret_matches(parsed.secret, grant.hashed_secret)

    def _from_memory(self, token_id: str) -> tuple[bool, TokenGrant | None]:
        """(True, what memory knows) while an entry is fresh, else (False, None)."""
        now = trio.current_time()
        entry = self._positive.get(token_id)
        if entry is not None and now - entry.loaded_at < self._ttl_s:
            self._hits += 1
            if now - entry.loaded_at >= self._refresh_after_s:
                self._refresh_soon(token_id)
            return True, entry.grant
        negative = self._negative.get(token_id)
        if negative is not None and now - negative.loaded_at < self._ttl_s:
            self._hits += 1
            return True, negative.grant  # None, or a revoked / expired / suspended grant
        return False, None

    async def _grant(self, token_id: str) -> TokenGrant | None:
        while True:
            found, grant = self._from_memory(token_id)
            if found:
                return grant
            pending = self._loading.get(token_id)
            if pending is None:
                break
            await pending.wait()  # someone else is loading it; use their answer
        self._misses += 1
        known = token_id in self._positive
        return await self._load_now(token_id, self._known_gate if known else self._miss_gate)

    async def _load_now(self, token_id: str, gate: trio.Semaphore) -> TokenGrant | None:
        done = self._loading[token_id] = trio.Event()
        try:
            async with gate:
                started = trio.current_time()
                grant = await self._load(token_id)
            self._remember(token_id, grant, started)
            return grant
        finally:
            self._done_loading(token_id, done)

    def _refresh_soon(self, token_id: str) -> None:
        if self._nursery is None or token_id in self._loading:
            return
        retry_at = self._refresh_after_failure.get(token_id)
        if retry_at is not None:
            if trio.current_time() < retry_at:
                return  # the database just failed this refresh: not once per request
            del self._refresh_after_failure[token_id]
        self._refreshes += 1
        # Marked as loading right away, so no second refresh of it is scheduled meanwhile.
        done = self._loading[token_id] = trio.Event()
        self._nursery.start_soon(self._refresh, token_id, done)

    async def _refresh(self, token_id: str, done: trio.Event) -> None:
        try:
            with trio.move_on_after(self._ttl_s):
                async with self._known_gate:
                    started = trio.current_time()
                    grant = await self._load(token_id)
                self._remember(token_id, grant, started)
        except StoreError as exc:
            # The entry keeps being served until its TTL; then the request path tries again.
            self._refresh_after_failure[token_id] = trio.current_time() + REFRESH_RETRY_S
            log.warning("auth.refresh_failed", error=str(exc))
        finally:
            self._done_loading(token_id, done)

    def _done_loading(self, token_id: str, done: trio.Event) -> None:
        if self._loading.get(token_id) is done:
            del self._loading[token_id]
        done.set()

    def _remember(self, token_id: str, grant: TokenGrant | None, loaded_at: float) -> None:
        invalidated = self._invalidated_at.get(token_id)
        if invalidated is not None and loaded_at <= invalidated:
            return  # read before an invalidation: the next request loads it again
        entry = _Entry(grant, loaded_at)
        if grant is not None and _usable(grant):
            self._negative.pop(token_id, None)
            _put(self._positive, token_id, entry, self._max_entries)
        else:
            self._positive.pop(token_id, None)
            _put(self._negative, token_id, entry, self._max_negative)

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget one token (or all): used after a local revoke so it applies at once here."""
        now = trio.current_time()
        ids = [*self._positive, *self._negative, *self._loading] if token_id is None else [token_id]
        for known in ids:
            self._positive.pop(known, None)
            self._negative.pop(known, None)
            self._invalidated_at[known] = now
        # Entries older than a TTL cannot be overtaken by a load any more.
        for known, at in list(self._invalidated_at.items()):
            if now - at > self._ttl_s:
                del self._invalidated_at[known]

    def statistics(self) -> TokenCacheStatistics:
        return TokenCacheStatistics(
            entries=len(self._positive),
            negative_entries=len(self._negative),
            hits=self._hits,
            misses=self._misses,
            refreshes=self._refreshes,
            misses_waiting=self._miss_gate.statistics().tasks_waiting,
        )


def _put(entries: OrderedDict[str, _Entry], key: str, entry: _Entry, limit: int) -> None:
    entries[key] = entry
    entries.move_to_end(key)
    while len(entries) > limit:
        entries.popitem(last=False)


def _usable(grant: TokenGrant) -> bool:
    return (
        not grant.revoked
        and grant.user_status == "active"
        and (grant.expires_at is None or grant.expires_at > datetime.now(UTC))
    )


def _check(secret: str, grant: TokenGrant | None) -> Principal:
    if grant is None:
        raise AuthError("unknown token id")
    if not secret_matches(secret, grant.hashed_secret):
        raise AuthError("wrong token secret")
    return grant_principal(grant)


def grant_principal(grant: TokenGrant) -> Principal:
    """The principal of a grant whose secret was checked before (a dashboard session was
    opened with it), or AuthError when the token is revoked, expired or its user suspended."""
    if grant.revoked:
        raise AuthError("token revoked")
    if grant.expires_at is not None and grant.expires_at <= datetime.now(UTC):
        raise AuthError("token expired")
    if grant.user_status != "active":
        raise AuthError(f"user {grant.user_status}")
    return Principal(grant.user_id, grant.username, grant.role, grant.token_id)
