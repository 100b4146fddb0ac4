"""The token cache under virtual time: one load per TTL, revocation within the TTL, refreshes in
the background, and a flood of unknown tokens that cannot push out or hold up a real user."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import trio
import trio.testing

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
    def __init__(self, grant: TokenGrant, *, latency_s: float = 0.01) -> None:
        self.grant: TokenGrant | None = grant
        self.loads = 0
        self.latency_s = latency_s  # a database round trip

    async def load(self, token_id: str) -> TokenGrant | None:
        self.loads += 1
        await trio.sleep(self.latency_s)
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


async def test_cache_is_bounded_and_unknown_tokens_never_push_out_known_ones(
    autojump_clock: object,
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret))
    cache = TokenCache(db.load, max_entries=3, max_negative_entries=5)
    real = format_token(tid, secret)
    await cache.verify(real)
    for i in range(100):
        with pytest.raises(AuthError):
            await cache.verify(format_token(f"{i:010d}", "b" * 22))
    stats = cache.statistics()
    assert (stats.entries, stats.negative_entries) == (1, 5)
    loads = db.loads
    await cache.verify(real)
    assert db.loads == loads  # still answered from memory


async def test_a_known_token_is_served_while_its_entry_refreshes(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret), latency_s=2.0)  # a slow database
    cache = TokenCache(db.load, ttl_s=5.0)
    await nursery.start(cache.run_refresher)
    token = format_token(tid, secret)
    await cache.verify(token)  # the first lookup waits for the database: t = 2
    waits = []
    for _ in range(12):  # a request every second for 12 s
        await trio.sleep(1.0)
        before = trio.current_time()
        await cache.verify(token)
        waits.append(trio.current_time() - before)
    assert waits == [0.0] * 12  # never waited: stale-while-revalidate
    assert cache.statistics().refreshes >= 3


async def test_revocation_applies_within_the_ttl_while_refreshing(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret), latency_s=0.5)
    cache = TokenCache(db.load, ttl_s=5.0)
    await nursery.start(cache.run_refresher)
    token = format_token(tid, secret)
    await cache.verify(token)
    await trio.sleep(1.0)
    assert db.grant is not None
    db.grant = replace(db.grant, revoked=True)
    revoked_at = trio.current_time()
    while True:
        await trio.sleep(0.25)
        try:
            await cache.verify(token)
        except AuthError as exc:
            assert "revoked" in str(exc)
            break
    assert trio.current_time() - revoked_at <= 5.0


async def test_a_flood_of_unknown_tokens_does_not_hold_up_a_known_one(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret), latency_s=1.0)
    cache = TokenCache(db.load, ttl_s=5.0, miss_concurrency=2)
    await nursery.start(cache.run_refresher)
    token = format_token(tid, secret)
    await cache.verify(token)

    async def bogus(i: int) -> None:
        with pytest.raises(AuthError):
            await cache.verify(format_token(f"{i:010d}", "b" * 22))

    for i in range(200):  # 200 one-second lookups through a gate of 2: 100 s of queue
        nursery.start_soon(bogus, i)
    await trio.testing.wait_all_tasks_blocked()
    assert cache.statistics().misses_waiting > 100
    for _ in range(20):  # the known token, every second: its refreshes do not queue there
        await trio.sleep(1.0)
        before = trio.current_time()
        await cache.verify(token)
        assert trio.current_time() - before == 0.0


async def test_many_requests_for_a_stale_entry_schedule_one_refresh(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    tid, secret = generate_token()
    db = _Db(_grant(tid, secret), latency_s=0.5)
    cache = TokenCache(db.load, ttl_s=5.0)
    await nursery.start(cache.run_refresher)
    token = format_token(tid, secret)
    await cache.verify(token)
    await trio.sleep(3.0)  # past half the TTL: stale
    async with trio.open_nursery() as burst:
        for _ in range(50):  # a burst, all before the refresh task has even started
            burst.start_soon(cache.verify, token)
    await trio.sleep(1.0)
    assert db.loads == 2 and cache.statistics().refreshes == 1


async def test_an_invalidation_is_not_undone_by_a_load_already_in_flight(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    tid, secret = generate_token()
    current = {"grant": _grant(tid, secret)}

    async def load(token_id: str) -> TokenGrant | None:
        read = current["grant"]  # what the database said when the query ran
        await trio.sleep(1.0)
        return read

    cache = TokenCache(load, ttl_s=5.0)
    token = format_token(tid, secret)
    nursery.start_soon(cache.verify, token)  # a load starts...
    await trio.sleep(0.5)
    current["grant"] = replace(current["grant"], revoked=True)
    cache.invalidate(tid)  # ...and the token is revoked here while it runs
    await trio.sleep(1.0)  # the old answer arrives: it must not be remembered
    with pytest.raises(AuthError, match="revoked"):
        await cache.verify(token)


async def test_a_failing_refresh_is_not_retried_on_every_request(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    from aibridged.errors import StoreUnavailable

    tid, secret = generate_token()
    db = _Db(_grant(tid, secret), latency_s=0.01)
    cache = TokenCache(db.load, ttl_s=5.0)
    await nursery.start(cache.run_refresher)
    token = format_token(tid, secret)
    await cache.verify(token)

    async def down(token_id: str) -> TokenGrant | None:
        db.loads += 1
        await trio.sleep(0.01)
        raise StoreUnavailable("database unavailable")

    cache._load = down
    await trio.sleep(3.0)  # stale: every request would refresh
    loads = db.loads
    for _ in range(50):  # 50 requests in half a second
        await cache.verify(token)
        await trio.sleep(0.01)
    assert db.loads - loads == 1
