"""Copilot providers: the caller's own GitHub token, editor headers, and Messages in Anthropic's
shape, on a whole gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import trio

from tests.gateway import Gateway, start_gateway

GITHUB_TOKEN = "gho_callers0wnGitHubToken0123456789"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-sonnet", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    gw = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with httpx2.AsyncClient(base_url=gw.url, timeout=10) as api:
        created = await api.post(
            "/api/v2/ai/providers",
            json={"type": "copilot", "name": "copilot", "base_url": gw.upstream_url},
            headers={"authorization": f"Bearer {gw.token}"},
        )
    assert created.status_code == 201, created.text
    return gw


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


def _byok(gw: Gateway) -> dict[str, str]:
    return {
        "x-coder-ai-governance-token": gw.token,
        "authorization": f"Bearer {GITHUB_TOKEN}",
        "editor-version": "vscode/1.99.0",
        "copilot-integration-id": "vscode-chat",
    }


async def test_the_callers_github_token_and_editor_headers_go_upstream(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(gateway.base("copilot") + "/chat/completions", json=CHAT,
                        headers=_byok(gateway))  # fmt: skip
    assert r.status_code == 200, r.text
    sent = gateway.upstream.requests[-1]
    assert sent.path == "/chat/completions"  # Copilot base URLs have no /v1
    assert sent.header("authorization") == f"Bearer {GITHUB_TOKEN}"
    assert sent.header("editor-version") == "vscode/1.99.0"
    assert sent.header("copilot-integration-id") == "vscode-chat"
    assert gateway.token not in repr(sent.headers)


async def test_without_the_callers_own_token_nothing_goes_upstream(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    before = len(gateway.upstream.requests)
    plain = {"authorization": f"Bearer {gateway.token}"}  # the gateway token only
    r = await http.post(gateway.base("copilot") + "/chat/completions", json=CHAT, headers=plain)
    assert r.status_code == 401
    assert "GitHub token" in r.json()["error"]["message"]
    governance_only = {"x-coder-ai-governance-token": gateway.token}
    r = await http.post(gateway.base("copilot") + "/v1/messages", json=MSG, headers=governance_only)
    assert r.status_code == 401
    assert r.json()["type"] == "error"  # Messages answers in Anthropic's shape
    assert len(gateway.upstream.requests) == before


async def test_messages_are_served_at_v1_messages(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(gateway.base("copilot") + "/v1/messages", json=MSG, headers=_byok(gateway))
    assert r.status_code == 200 and r.json()["type"] == "message"
    assert gateway.upstream.requests[-1].path == "/v1/messages"


async def test_passthrough_reads_models_and_refuses_writes(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = gateway.base("copilot") + "/models"
    assert (await http.get(url, headers=_byok(gateway))).status_code == 200
    assert (await http.post(url, json={}, headers=_byok(gateway))).status_code == 404
    unknown = await http.get(gateway.base("copilot") + "/v1/chat/completions",
                             headers=_byok(gateway))  # fmt: skip
    assert unknown.status_code == 404
