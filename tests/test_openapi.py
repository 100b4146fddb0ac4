"""The OpenAPI document is true: every documented operation is called on a real gateway with
recorded data, and every answer (successes and errors) is checked against the schema the
document gives for its status. A management route that is not documented, or a documented one
that this test does not call, fails it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import openai
import pytest
import trio

from tests.gateway import Gateway, start_gateway

TOOLS: Any = [{"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}]  # fmt: skip


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    base = gateway.base("openai") + "/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key=gateway.token) as oai:
        await oai.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": "Read it #demo-tool"}],
            tools=TOOLS,
        )  # fmt: skip
    return gateway


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"authorization": f"Bearer {gateway.token}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as client:
        yield client


class Checker:
    """Calls routes and checks each answer against the document; remembers what was called."""

    def __init__(self, http: httpx2.AsyncClient, document: dict[str, Any]) -> None:
        self.http, self.document = http, document
        self.called: set[tuple[str, str]] = set()

    async def call(self, method: str, template: str, path: str, *, expect: int,
                   **kwargs: Any) -> Any:  # fmt: skip
        answer = await self.http.request(method, path, **kwargs)
        assert answer.status_code == expect, (method, path, answer.text)
        operation = self.document["paths"][template][method.lower()]
        documented = operation["responses"].get(str(answer.status_code))
        assert documented is not None, f"{method} {template} answered an undocumented {expect}"
        self.called.add((method, template))
        if answer.status_code == 204:
            assert answer.content == b""
            return None
        schema = documented["content"]["application/json"]["schema"]
        body = answer.json()
        # Refs point into the document's components: validate with them at hand.
        jsonschema.validate(body, {**schema, "components": self.document["components"]})
        return body


async def test_every_documented_route_answers_as_documented(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    public = await http.get("/api/v2/openapi.json", headers={"authorization": ""})
    assert public.status_code == 200
    document = public.json()
    check = Checker(http, document)
    await _users_and_keys(check)
    await _providers(check)
    for prefix in ("/api/v2/aibridge", "/api/v2/ai-gateway"):
        await _recordings(check, prefix)
    documented = {(method.upper(), path) for path, ops in document["paths"].items()
                  for method in ops}  # fmt: skip
    assert check.called == documented
    served = {(method, _template(rule.rule)) for rule in _rules(gateway)
              for method in rule.methods - {"HEAD", "OPTIONS"}}  # fmt: skip
    assert served - documented == set(), "management routes missing from the document"


async def _users_and_keys(check: Checker) -> None:
    me = await check.call("GET", "/api/v2/users/me", "/api/v2/users/me", expect=200)
    await check.call("GET", "/api/v2/users", "/api/v2/users", expect=200)
    await check.call("POST", "/api/v2/users", "/api/v2/users", expect=201,
                     json={"username": "alice", "name": "Alice", "role": "member"})  # fmt: skip
    await check.call("POST", "/api/v2/users", "/api/v2/users", expect=409,
                     json={"username": "alice"})  # fmt: skip
    await check.call("POST", "/api/v2/users", "/api/v2/users", expect=400, json={"username": ""})
    user = "/api/v2/users/{user}"
    await check.call("GET", user, "/api/v2/users/alice", expect=200)
    await check.call("GET", user, "/api/v2/users/nobody", expect=404)
    await check.call("PATCH", user, "/api/v2/users/alice", expect=200, json={"role": "auditor"})
    await check.call("PATCH", user, f"/api/v2/users/{me['id']}", expect=403,
                     json={"status": "suspended"})  # fmt: skip
    keys = "/api/v2/users/{user}/keys"
    made = await check.call("POST", keys, "/api/v2/users/alice/keys", expect=201,
                            json={"name": "ci", "lifetime": "1d"})  # fmt: skip
    await check.call("GET", keys, "/api/v2/users/alice/keys", expect=200)
    await check.call("GET", keys, "/api/v2/users/alice/keys", expect=401,
                     headers={"authorization": "Bearer nope"})  # fmt: skip
    alice = {"authorization": f"Bearer {made['key']}"}
    await check.call("GET", "/api/v2/users", "/api/v2/users", expect=403, headers=alice)
    key = "/api/v2/users/{user}/keys/{key_id}"
    await check.call("DELETE", key, f"/api/v2/users/alice/keys/{made['id']}", expect=204)
    await check.call("DELETE", key, "/api/v2/users/alice/keys/none", expect=404)


async def _providers(check: Checker) -> None:
    base, one = "/api/v2/ai/providers", "/api/v2/ai/providers/{reference}"
    await check.call("GET", base, base, expect=200)
    body = {"type": "openai-compat", "name": "local", "base_url": "http://127.0.0.1:9/v1"}
    await check.call("POST", base, base, expect=201, json=body)
    await check.call("POST", base, base, expect=409, json=body)
    await check.call("POST", base, base, expect=400, json={"type": "nope"})
    await check.call("GET", one, base + "/local", expect=200)
    await check.call("PATCH", one, base + "/local", expect=200, json={"enabled": False})
    await check.call("DELETE", one, base + "/local", expect=204)
    await check.call("GET", one, base + "/local", expect=404)


async def _recordings(check: Checker, prefix: str) -> None:
    found = await check.call("GET", prefix + "/interceptions", prefix + "/interceptions",
                             expect=200)  # fmt: skip
    assert found["count"] == 1 and found["results"][0]["tool_usages"]
    await check.call("GET", prefix + "/interceptions", prefix + "/interceptions", expect=400,
                     params={"q": "colour:blue"})  # fmt: skip
    sessions = await check.call("GET", prefix + "/sessions", prefix + "/sessions", expect=200)
    session_id = sessions["sessions"][0]["id"]
    one = prefix + "/sessions/{session_id}"
    shown = await check.call("GET", one, f"{prefix}/sessions/{session_id}", expect=200)
    assert shown["threads"][0]["agentic_actions"][0]["tool_calls"]
    await check.call("GET", one, f"{prefix}/sessions/none", expect=404)
    await check.call("GET", one, f"{prefix}/sessions/{session_id}", expect=400,
                     params={"limit": 500})  # fmt: skip
    for values in ("/models", "/clients"):
        await check.call("GET", prefix + values, prefix + values, expect=200)
    usage = await check.call("GET", prefix + "/usage", prefix + "/usage", expect=200,
                             params={"group_by": "user"})  # fmt: skip
    assert usage["totals"]["interceptions"] == 1 and usage["by_model"][0]["model"] == "gpt-demo"
    await check.call("GET", prefix + "/usage", prefix + "/usage", expect=400,
                     params={"group_by": "colour"})  # fmt: skip


def _rules(gateway: Gateway) -> list[Any]:
    from aibridged.api.control import create_control_app
    from aibridged.api.manage import Management
    from aibridged.api.provider_routes import ProviderRoutes

    async def ready() -> str | None:
        return None

    # The same app the daemon builds (routes need no live dependencies to be listed).
    routes = ProviderRoutes(management=None, box=None, describe=None, changed=None)  # type: ignore[arg-type]
    app = create_control_app(ready, max_body_bytes=1, management=Management(None, None),  # type: ignore[arg-type]
                             providers=routes)  # fmt: skip
    return [rule for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/v2/") and rule.endpoint != "openapi"]  # fmt: skip


def _template(rule: str) -> str:
    """`/api/v2/users/<user>` as the document writes it: `/api/v2/users/{user}`."""
    return rule.replace("<", "{").replace(">", "}")
