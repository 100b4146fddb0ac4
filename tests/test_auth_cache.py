"""The token cache under virtual time: one load per TTL, revocation within the TTL."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import trio

from aibridged.auth import TokenCache
from aibridged.errors import AuthError
from aibridged.store.users import TokenGrant
from aibridged.tokens import format_token, generate_token, hash_secret


def _grant(token_id: str, secret: str) -> TokenGrant:
    return TokenGrant(
        token_id=token_id,
        hashed_secret=hash_secret(secret),
        user_id=uuid.uuid4(),
        username="dave",
        role="member",
        user_status="active",
        expires_at=None,
        revoked=False,
    )


class _Db:
    def __init__(self, grant: TokenGrant) -> None:
        self.grant: TokenGrant | None = grant
        self.loads = 0

    async def load(self, token_id: str) -> TokenGrant | None:
        self.loads += 1
        await trio.sleep(0.01)  # a database round trip
        return self.grant if self.grant and self.grant.token_id == token_id else None


async def test_cache_loads_once_per_ttl_and_sees_revocation_within_it(
    autojump_clock: object,
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret))
    cache = TokenCache(db.load, ttl_s=5.0)
    token = format_token(tid, secret)
    for _ in range(100):
        await cache.verify(token)
    assert db.loads == 1
    assert db.grant is not None
    db.grant = replace(db.grant, revoked=True)
    await trio.sleep(4.9)
    await cache.verify(token)  # still cached: within the 5 s bound
    await trio.sleep(0.2)
    with pytest.raises(AuthError, match="revoked"):
        await cache.verify(token)
    assert db.loads == 2


async def test_concurrent_misses_share_one_load(autojump_clock: object) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret))
    cache = TokenCache(db.load)
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(cache.verify, format_token(tid, secret))
    assert db.loads == 1
    assert cache.statistics().misses == 1


async def test_unknown_ids_are_cached_negatively(autojump_clock: object) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret))
    cache = TokenCache(db.load)
    bogus = format_token("A" * 10, "b" * 22)
    for _ in range(10):
        with pytest.raises(AuthError, match="unknown"):
            await cache.verify(bogus)
    assert db.loads == 1


async def test_cache_is_bounded(autojump_clock: object) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret))
    cache = TokenCache(db.load, max_entries=3)
    for i in range(10):
        with pytest.raises(AuthError):
            await cache.verify(format_token(f"{i:010d}", "b" * 22))
    assert cache.statistics().entries == 3
