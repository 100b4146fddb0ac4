from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from aibridged.auth import TokenCache
from aibridged.errors import AuthError, Conflict, InvalidInput, NotFound
from aibridged.store import Store
from aibridged.store import users as u
from aibridged.tokens import parse_token


async def test_created_token_has_coder_format_and_only_its_hash_is_stored(store: Store) -> None:
    await u.create_user(store, username="alice")
    record, plaintext = await u.create_token(store, "alice", name="laptop")
    parsed = parse_token(plaintext)
    assert parsed is not None and parsed.id == record.id
    assert len(parsed.secret) == 22
    grant = await u.lookup_grant(store, record.id)
    assert grant is not None
    assert parsed.secret.encode() not in grant.hashed_secret
    assert len(grant.hashed_secret) == 32


async def test_duplicate_username_is_a_conflict(store: Store) -> None:
    await u.create_user(store, username="bob")
    with pytest.raises(Conflict):
        await u.create_user(store, username="bob")


@pytest.mark.parametrize("name", ["Bob", "", "a b", "x" * 64, "-lead"])
async def test_invalid_usernames_are_rejected(store: Store, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid username"):
        await u.create_user(store, username=name)


async def test_unknown_user_and_token_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await u.create_token(store, "nobody")
    with pytest.raises(NotFound):
        await u.revoke_token(store, "AAAAAAAAAA")
    with pytest.raises(NotFound):
        await u.set_user_status(store, "nobody", "suspended")


async def test_bootstrap_creates_one_owner_only_once(store: Store) -> None:
    delivered: list[str] = []
    assert await u.bootstrap_admin(store, delivered.append) is True
    assert await u.bootstrap_admin(store, delivered.append) is False
    [first] = delivered
    [admin] = await u.list_users(store)
    assert (admin.username, admin.role) == ("admin", "owner")
    cache = TokenCache(lambda tid: u.lookup_grant(store, tid))
    principal = await cache.verify(first)
    assert principal.username == "admin"


async def test_concurrent_bootstraps_create_a_single_admin(store: Store) -> None:
    results: list[str | None] = []

    async def boot() -> None:
        results.append("token" if await u.bootstrap_admin(store, lambda t: None) else None)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(boot)
    assert sum(r is not None for r in results) == 1
    assert len(await u.list_users(store)) == 1


async def test_verify_revoke_suspend_and_expiry(store: Store) -> None:
    await u.create_user(store, username="carol")
    rec, token = await u.create_token(store, "carol")
    _, expired = await u.create_token(store, "carol", lifetime=timedelta(seconds=-1))
    cache = TokenCache(lambda tid: u.lookup_grant(store, tid), ttl_s=0.0)
    assert (await cache.verify(token)).username == "carol"
    with pytest.raises(AuthError, match="expired"):
        await cache.verify(expired)
    with pytest.raises(AuthError, match="secret"):
        await cache.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(AuthError, match="malformed"):
        await cache.verify("not-a-token")
    with pytest.raises(AuthError, match="unknown"):
        await cache.verify("ZZZZZZZZZZ-" + "a" * 22)
    await u.set_user_status(store, "carol", "suspended")
    with pytest.raises(AuthError, match="suspended"):
        await cache.verify(token)
    await u.set_user_status(store, "carol", "active")
    await u.revoke_token(store, rec.id)
    with pytest.raises(AuthError, match="revoked"):
        await cache.verify(token)
    [listed] = [t for t in await u.list_tokens(store, "carol") if t.id == rec.id]
    assert listed.revoked_at is not None


async def test_bootstrap_creates_nothing_when_the_token_cannot_be_delivered(store: Store) -> None:
    def fail(token: str) -> None:
        raise InvalidInput("disk full")

    with pytest.raises(InvalidInput):
        await u.bootstrap_admin(store, fail)
    assert await u.list_users(store) == []  # the next start tries again
    delivered: list[str] = []
    assert await u.bootstrap_admin(store, delivered.append)
    assert len(delivered) == 1


async def test_a_username_shaped_like_a_uuid_is_found_by_name(store: Store) -> None:
    odd = "0b2b7a3e-6a39-4a43-8d8a-2f2d3c5e9b10"
    created = await u.create_user(store, username=odd)
    assert (await u.get_user(store, odd)).id == created.id
    other = await u.create_user(store, username="grace")
    assert (await u.get_user(store, str(other.id))).username == "grace"
    with pytest.raises(NotFound):
        await u.get_user(store, "urn:uuid:" + str(other.id))
