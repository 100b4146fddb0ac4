"""The providers API on a whole gateway and a real PostgreSQL: CRUD, the validation matrix, key
mutations, roles, and changes served by the data plane at once. Keys never leave."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from prometheus_client import generate_latest

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.gateway import Gateway, start_gateway
from tests.logs import LogWatch, watch_logs

KEY_1 = "sk-provider-key-one-0123456789"
KEY_2 = "sk-provider-key-two-0123456789"
KEY_3 = "sk-provider-key-three-0123456789"
CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def logs() -> AsyncIterator[LogWatch]:
    with watch_logs() as watch:
        yield watch


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, logs: LogWatch
) -> Gateway:
    return await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)


def _new(name: str = "extra", **fields: Any) -> dict[str, Any]:
    return {"type": "openai", "name": name, "api_keys": [KEY_1], **fields}


async def test_create_show_list_change_and_delete(
    api: httpx2.AsyncClient, gateway: Gateway
) -> None:
    body = _new(display_name="Extra", base_url=gateway.upstream_url + "/v1")
    created = (await api.post("/api/v2/ai/providers", json=body)).json()
    assert created["status"] == "enabled" and created["source"] == "api"
    assert created["api_keys"] == [{"id": created["api_keys"][0]["id"], "hint": "sk-p...6789"}]
    by_id = (await api.get(f"/api/v2/ai/providers/{created['id']}")).json()
    by_name = (await api.get("/api/v2/ai/providers/extra")).json()
    assert by_id == by_name == created
    names = [p["name"] for p in (await api.get("/api/v2/ai/providers")).json()]
    assert names == ["anthropic", "extra", "openai", "switched-off"]  # seeds and ours, by name

    changed = await api.patch("/api/v2/ai/providers/extra", json={"enabled": False})
    assert changed.status_code == 200 and changed.json()["status"] == "disabled"
    assert (await api.delete("/api/v2/ai/providers/extra")).status_code == 204
    missing = await api.get("/api/v2/ai/providers/extra")
    assert missing.status_code == 404 and missing.json()["message"] == "not found"
    again = await api.post("/api/v2/ai/providers", json=_new())  # a deleted name is free again
    assert again.status_code == 201 and again.json()["id"] != created["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_new("Bad_Name"), "name"),
        (_new("sessions"), "name"),
        (_new("x" * 64), "name"),
        ({**_new(), "name": None}, "name"),
        (_new(type="gpt"), "type"),
        ({"name": "x", "api_keys": [KEY_1]}, "type"),
        (_new(api_keys=[f"sk-{i}-0123456789" for i in range(6)]), "api_keys"),
        (_new(api_keys=[]), "api_keys"),  # openai needs a key
        (_new(api_keys=["sk with space"]), "api_keys[0]"),
        (_new(api_keys=[{"id": "00000000-0000-0000-0000-000000000000"}]), "api_keys[0]"),
        (_new(type="copilot", api_keys=[KEY_1]), "api_keys"),
        (_new(base_url="ftp://example.com"), "base_url"),
        (_new(base_url="https://user:pw@example.com/v1"), "base_url"),
        (_new(type="openai-compat", api_keys=[]), "base_url"),  # no default to fall back on
        (_new(settings={"region": "eu"}), "settings.region"),
        (_new(type="copilot", api_keys=[], settings={"plan": "gold"}), "settings.plan"),
        (_new(enabled="yes"), "enabled"),
        (_new(surprise=1), "surprise"),
    ],
)
async def test_each_bad_field_is_a_400_naming_the_field(
    api: httpx2.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/api/v2/ai/providers", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["message"] == "invalid provider"
    assert field in [v["field"] for v in error["validations"]], error


async def test_every_bad_field_is_reported_at_once(api: httpx2.AsyncClient) -> None:
    body = {"type": "openai", "name": "BAD", "base_url": "nope", "api_keys": "sk", "x": 1}
    error = (await api.post("/api/v2/ai/providers", json=body)).json()
    assert sorted(v["field"] for v in error["validations"]) == ["api_keys", "base_url", "name", "x"]


async def test_a_duplicate_name_is_409_and_bodies_that_are_not_json_are_400(
    api: httpx2.AsyncClient,
) -> None:
    duplicate = await api.post("/api/v2/ai/providers", json=_new("openai"))
    assert duplicate.status_code == 409
    assert duplicate.json()["validations"][0]["field"] == "name"
    rename = await api.patch("/api/v2/ai/providers/anthropic", json={"name": "openai"})
    assert rename.status_code == 409
    broken = await api.post("/api/v2/ai/providers", content=b"{not json")
    assert broken.status_code == 400 and broken.json()["message"] == "the body is not JSON"
    listed = await api.post("/api/v2/ai/providers", json=["not", "an", "object"])
    assert listed.status_code == 400


async def test_key_mutations_keep_by_id_add_plaintext_and_drop_the_rest(
    api: httpx2.AsyncClient,
) -> None:
    created = (await api.post("/api/v2/ai/providers", json=_new(api_keys=[KEY_1, KEY_2]))).json()
    first, second = (k["id"] for k in created["api_keys"])
    kept = await api.patch(
        "/api/v2/ai/providers/extra", json={"api_keys": [{"id": second}, KEY_3, {"id": first}]}
    )
    keys = kept.json()["api_keys"]
    assert [k["id"] for k in keys[::2]] == [second, first]
    assert [k["hint"] for k in keys] == ["sk-p...6789"] * 3
    dropped = await api.patch("/api/v2/ai/providers/extra", json={"api_keys": [{"id": first}]})
    assert [k["id"] for k in dropped.json()["api_keys"]] == [first]
    untouched = await api.patch("/api/v2/ai/providers/extra", json={"display_name": "X"})
    assert [k["id"] for k in untouched.json()["api_keys"]] == [first]  # absent: unchanged
    emptied = await api.patch("/api/v2/ai/providers/extra", json={"api_keys": []})
    assert emptied.status_code == 400  # openai needs a key: nothing was changed
    assert [k["id"] for k in (await api.get("/api/v2/ai/providers/extra")).json()["api_keys"]] == [
        first
    ]
    typed = await api.patch("/api/v2/ai/providers/extra", json={"type": "anthropic"})
    assert typed.status_code == 400 and typed.json()["validations"][0]["field"] == "type"


async def test_keys_never_appear_in_answers_logs_or_metrics(
    api: httpx2.AsyncClient, gateway: Gateway, logs: LogWatch
) -> None:
    seen: list[str] = []
    body = _new(api_keys=[KEY_1, KEY_2], base_url=gateway.upstream_url + "/v1")
    seen.append((await api.post("/api/v2/ai/providers", json=body)).text)
    seen.append((await api.patch("/api/v2/ai/providers/extra", json={"api_keys": [KEY_3]})).text)
    seen.append((await api.get("/api/v2/ai/providers")).text)
    seen.append((await api.get("/api/v2/ai/providers/extra")).text)
    bedrock = {"type": "bedrock", "name": "br", "settings": {"region": "us-east-1",
               "access_key": "AKIAEXAMPLE0123456", "access_key_secret": KEY_2}}  # fmt: skip
    made = await api.post("/api/v2/ai/providers", json=bedrock)
    assert made.json()["settings"]["access_key_secret"] == "sk-p...6789"
    assert made.json()["status"] == "enabled" and made.json()["status_reason"] == ""
    seen.append(made.text)
    served = await api.post("/api/v2/aibridge/extra/v1/chat/completions", json=CHAT)
    assert served.status_code == 200
    assert gateway.upstream.requests[-1].header("authorization") == f"Bearer {KEY_3}"
    seen.append(repr(logs.entries))
    seen.append(generate_latest(gateway.registry).decode())
    everything = "\n".join(seen)
    for key in (KEY_1, KEY_2, KEY_3, "AKIAEXAMPLE0123456"):
        assert key not in everything


async def test_only_owners_and_admins_manage_providers(gateway: Gateway, database_url: str) -> None:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="member1", role="member")
        await create_user(store, username="auditor1", role="auditor")
        _, member = await create_token(store, "member1")
        _, auditor = await create_token(store, "auditor1")
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        for token in (member, auditor):
            for method, path in (("GET", ""), ("POST", ""), ("DELETE", "/openai")):
                response = await client.request(
                    method, "/api/v2/ai/providers" + path, json=_new(),
                    headers={"authorization": f"Bearer {token}"},
                )  # fmt: skip
                assert response.status_code == 403, (method, path)
                assert response.json()["message"] == "forbidden"
        me = await client.get("/api/v2/users/me", headers={"authorization": f"Bearer {member}"})
        assert me.json()["username"] == "member1" and me.json()["role"] == "member"
        anonymous = await client.get("/api/v2/ai/providers")
        assert anonymous.status_code == 401 and anonymous.json()["message"] == "unauthorized"
        wrong = await client.get(
            "/api/v2/ai/providers", headers={"authorization": "Bearer abcdefghij-wrong"}
        )
        assert wrong.status_code == 401
        session = await client.get(
            "/api/v2/ai/providers", headers={"coder-session-token": gateway.token}
        )
        assert session.status_code == 200


async def _until(check: Any, limit_s: float = 1.0) -> float:
    """Seconds until `await check()` is true; fails past `limit_s`."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < limit_s, "not seen within the limit"
        await trio.sleep(0.02)
    return time.monotonic() - start


async def test_changes_are_served_by_the_data_plane_within_a_second(
    api: httpx2.AsyncClient, gateway: Gateway
) -> None:
    url = "/api/v2/aibridge/extra/v1/chat/completions"

    async def status_is(code: int) -> bool:
        return (await api.post(url, json=CHAT)).status_code == code

    await api.post("/api/v2/ai/providers", json=_new(base_url=gateway.upstream_url + "/v1"))
    await _until(lambda: status_is(200))
    await api.patch("/api/v2/ai/providers/extra", json={"enabled": False})
    await _until(lambda: status_is(503))
    disabled = await api.post(url, json=CHAT)
    message = disabled.json()["error"]["message"]
    assert message == 'provider_disabled: AI provider "extra" is disabled'
    await api.patch("/api/v2/ai/providers/extra", json={"enabled": True, "name": "renamed"})
    await _until(lambda: status_is(404))
    assert (
        await api.post("/api/v2/aibridge/renamed/v1/chat/completions", json=CHAT)
    ).status_code == 200
    await api.delete("/api/v2/ai/providers/renamed")

    async def renamed_gone() -> bool:
        response = await api.post("/api/v2/aibridge/renamed/v1/chat/completions", json=CHAT)
        return response.status_code == 404

    await _until(renamed_gone)


async def test_a_provider_in_error_says_why_and_is_not_served(
    api: httpx2.AsyncClient, gateway: Gateway
) -> None:
    seeded = (await api.get("/api/v2/ai/providers/openai")).json()
    assert seeded["source"] == "seed" and seeded["status"] == "enabled"
    copilot = await api.post(
        "/api/v2/ai/providers",
        json={"type": "copilot", "name": "gh", "settings": {"plan": "business"}},
    )
    assert copilot.json()["effective_base_url"] == "https://api.business.githubcopilot.com"
    metrics = generate_latest(gateway.registry).decode()

    async def listed() -> bool:
        text = generate_latest(gateway.registry).decode()
        return 'provider_name="gh",provider_type="copilot",status="enabled"' in text

    await _until(listed)
    assert 'provider_name="switched-off",provider_type="openai",status="disabled"' in metrics


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_new("abc\n"), "name"),  # `$` would match before a final newline
        (_new("12345678-1234-5678-1234-567812345678"), "name"),  # looks up as an id
        (_new(base_url="https://x\u0000y.example/v1"), "base_url"),
        (
            _new(type="bedrock", api_keys=[], settings={"region": "us-east-1.evil.com/x?"}),
            "settings.region",
        ),
    ],
)
async def test_names_urls_and_regions_that_would_slip_past_a_check_are_400(
    api: httpx2.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/api/v2/ai/providers", json=body)
    assert response.status_code == 400, response.text
    assert field in [v["field"] for v in response.json()["validations"]]


async def test_a_password_in_a_base_url_is_never_echoed(api: httpx2.AsyncClient) -> None:
    response = await api.post(
        "/api/v2/ai/providers", json=_new(base_url="https://user:pa55word@example.com/v1")
    )
    assert response.status_code == 400 and "pa55word" not in response.text


async def test_odd_references_and_key_ids_and_huge_bodies_are_answered_cleanly(
    api: httpx2.AsyncClient,
) -> None:
    assert (await api.get("/api/v2/ai/providers/a%00b")).status_code == 404
    created = (await api.post("/api/v2/ai/providers", json=_new())).json()
    key_id = created["api_keys"][0]["id"].upper()
    kept = await api.patch("/api/v2/ai/providers/extra", json={"api_keys": [{"id": key_id}]})
    assert kept.status_code == 200 and kept.json()["api_keys"] == created["api_keys"]
    many = {f"k{i}": "v" for i in range(5000)}
    refused = await api.post("/api/v2/ai/providers", json=_new("many", settings=many))
    assert refused.status_code == 400 and len(refused.json()["validations"]) == 50
