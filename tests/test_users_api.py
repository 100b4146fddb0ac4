"""`/api/v2/users` and `/api/v2/users/{user}/keys` on a real gateway and database: who may do
what, a key's secret shown once and working on the data plane, revocation and suspension taking
effect at once, and the role rules that keep an owner in charge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from tests.gateway import Gateway, start_gateway

CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        yield client


def _as(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _user(http: httpx2.AsyncClient, owner: str, username: str, role: str) -> str:
    """Create `username` with `role` (as the owner); its first key's secret."""
    made = await http.post("/api/v2/users", json={"username": username, "role": role},
                           headers=_as(owner))  # fmt: skip
    assert made.status_code == 201, made.text
    key = await http.post(f"/api/v2/users/{username}/keys", json={"name": "first"},
                          headers=_as(owner))  # fmt: skip
    assert key.status_code == 201, key.text
    secret: str = key.json()["key"]
    return secret


async def _chat(http: httpx2.AsyncClient, gateway: Gateway, token: str) -> int:
    answer = await http.post(gateway.base("openai") + "/v1/chat/completions", json=CHAT,
                             headers=_as(token))  # fmt: skip
    return answer.status_code


async def test_an_admin_creates_a_user_whose_key_works_and_is_shown_once(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    secret = await _user(http, gateway.token, "alice", "member")
    assert await _chat(http, gateway, secret) == 200
    keys = (await http.get("/api/v2/users/alice/keys", headers=_as(gateway.token))).json()
    assert [k["name"] for k in keys] == ["first"]
    assert secret not in str(keys) and all("key" not in k for k in keys)
    users = (await http.get("/api/v2/users", headers=_as(gateway.token))).json()
    assert {u["username"]: u["role"] for u in users} == {"admin": "owner", "alice": "member"}
    me = (await http.get("/api/v2/users/me", headers=_as(secret))).json()
    assert (me["username"], me["role"], me["status"]) == ("alice", "member", "active")


async def test_everyone_manages_their_own_keys_and_only_theirs(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    alice = await _user(http, gateway.token, "alice", "member")
    await _user(http, gateway.token, "bob", "member")
    second = await http.post("/api/v2/users/me/keys", json={"name": "laptop", "lifetime": "30d"},
                             headers=_as(alice))  # fmt: skip
    assert second.status_code == 201 and second.json()["expires_at"]
    mine = (await http.get("/api/v2/users/me/keys", headers=_as(alice))).json()
    assert [k["name"] for k in mine] == ["first", "laptop"]
    others = ("/api/v2/users/bob/keys", "/api/v2/users/bob", "/api/v2/users/nobody/keys")
    for method, path in [("GET", p) for p in others] + [("POST", others[0])]:
        answer = await http.request(method, path, json={}, headers=_as(alice))
        assert answer.status_code == 404, (method, path)
    for method, path in (("GET", "/api/v2/users"), ("POST", "/api/v2/users"),
                         ("PATCH", "/api/v2/users/bob")):  # fmt: skip
        answer = await http.request(method, path, json={"username": "x"}, headers=_as(alice))
        assert answer.status_code == 403, (method, path)
    revoked = await http.delete(f"/api/v2/users/me/keys/{second.json()['id']}",
                                headers=_as(alice))  # fmt: skip
    assert revoked.status_code == 204
    # The data plane refuses a revoked key as Coder's does (403), at once on this replica.
    assert await _chat(http, gateway, second.json()["key"]) == 403
    assert await _chat(http, gateway, alice) == 200


async def test_suspending_a_user_stops_their_keys_at_once_and_resuming_restores_them(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    alice = await _user(http, gateway.token, "alice", "member")
    assert await _chat(http, gateway, alice) == 200  # cached now
    changed = await http.patch("/api/v2/users/alice", json={"status": "suspended"},
                               headers=_as(gateway.token))  # fmt: skip
    assert changed.json()["status"] == "suspended"
    assert await _chat(http, gateway, alice) == 403
    me = await http.get("/api/v2/users/me", headers=_as(alice))
    assert me.status_code == 401
    await http.patch("/api/v2/users/alice", json={"status": "active", "role": "auditor"},
                     headers=_as(gateway.token))  # fmt: skip
    assert await _chat(http, gateway, alice) == 200
    assert (await http.get("/api/v2/users/me", headers=_as(alice))).json()["role"] == "auditor"


async def test_an_admin_cannot_touch_an_owner_or_make_one(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    admin = await _user(http, gateway.token, "ann", "admin")
    await _user(http, gateway.token, "olga", "owner")
    for body in ({"status": "suspended"}, {"role": "member"}):
        answer = await http.patch("/api/v2/users/olga", json=body, headers=_as(admin))
        assert answer.status_code == 403, body
    made = await http.post("/api/v2/users", json={"username": "eve", "role": "owner"},
                           headers=_as(admin))  # fmt: skip
    assert made.status_code == 403
    member = await http.post("/api/v2/users", json={"username": "eve"}, headers=_as(admin))
    assert member.json()["role"] == "member"
    promote = await http.patch("/api/v2/users/eve", json={"role": "owner"}, headers=_as(admin))
    assert promote.status_code == 403
    own = await http.patch("/api/v2/users/ann", json={"role": "member"}, headers=_as(admin))
    assert own.status_code == 403 and "your own" in own.json()["detail"]
    by_owner = await http.patch("/api/v2/users/olga", json={"role": "admin"},
                                headers=_as(gateway.token))  # fmt: skip
    assert by_owner.json()["role"] == "admin"


async def test_an_admin_cannot_create_or_revoke_an_owners_keys(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    # A key made for an owner acts as that owner: an admin making one would be an owner.
    admin = await _user(http, gateway.token, "ann", "admin")
    owners_keys = await http.get("/api/v2/users/admin/keys", headers=_as(gateway.token))
    key_id = owners_keys.json()[0]["id"]
    made = await http.post("/api/v2/users/admin/keys", json={"name": "mine now"},
                           headers=_as(admin))  # fmt: skip
    assert made.status_code == 403 and "owner's keys" in made.json()["detail"]
    revoked = await http.delete(f"/api/v2/users/admin/keys/{key_id}", headers=_as(admin))
    assert revoked.status_code == 403
    assert await _chat(http, gateway, gateway.token) == 200  # the owner's key still works
    listed = await http.get("/api/v2/users/admin/keys", headers=_as(gateway.token))
    assert [k["id"] for k in listed.json()] == [key_id]
    own = await http.post("/api/v2/users/admin/keys", json={"name": "second"},
                          headers=_as(gateway.token))  # fmt: skip
    assert own.status_code == 201  # the owner itself still may


async def test_the_last_active_owner_stays_one(http: httpx2.AsyncClient, gateway: Gateway) -> None:
    other = await _user(http, gateway.token, "olga", "owner")
    demoted = await http.patch("/api/v2/users/admin", json={"role": "admin"}, headers=_as(other))
    assert demoted.status_code == 200  # two owners: one may go
    again = await http.patch("/api/v2/users/olga", json={"status": "suspended"},
                             headers=_as(gateway.token))  # fmt: skip
    assert again.status_code == 403  # an admin now, and olga the only owner


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v2/users", {"username": "Bad Name!"}, "username"),
        ("POST", "/api/v2/users", {"username": "x", "role": "god"}, "role"),
        ("POST", "/api/v2/users", {"username": "x", "colour": "red"}, "colour"),
        ("POST", "/api/v2/users", {}, "username"),
        ("POST", "/api/v2/users", ["not", "an", "object"], ""),
        ("PATCH", "/api/v2/users/admin", {"status": "asleep"}, "status"),
        ("POST", "/api/v2/users/me/keys", {"lifetime": "forever"}, "lifetime"),
        ("POST", "/api/v2/users/me/keys", {"lifetime": "0"}, "lifetime"),
        ("POST", "/api/v2/users/me/keys", {"name": 5}, "name"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    http: httpx2.AsyncClient, gateway: Gateway, method: str, path: str, body: Any, field: str
) -> None:
    answer = await http.request(method, path, json=body, headers=_as(gateway.token))
    assert answer.status_code == 400, answer.text
    validations = answer.json()["validations"]
    assert field in [v["field"] for v in validations] or (field == "" and not validations)


async def test_a_taken_username_is_a_conflict_and_unknown_keys_are_404(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    await _user(http, gateway.token, "alice", "member")
    again = await http.post("/api/v2/users", json={"username": "alice"}, headers=_as(gateway.token))
    assert again.status_code == 409
    gone = await http.delete("/api/v2/users/alice/keys/nosuchkey", headers=_as(gateway.token))
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/aibridge/sessions?q=client:%00",
        "/api/v2/aibridge/interceptions?q=model:a%00b",
        "/api/v2/aibridge/usage?user=%00",
        "/api/v2/users/a%00",
    ],
)
async def test_a_nul_character_in_a_value_is_a_400_not_a_database_error(
    http: httpx2.AsyncClient, gateway: Gateway, path: str
) -> None:
    got = await http.get(path, headers=_as(gateway.token))
    assert got.status_code == 400, got.text
    assert got.json()["message"] == "invalid value"
    assert "NUL" in got.json()["detail"]
