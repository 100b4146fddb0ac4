"""Who may open what: a member never reaches another user's session page (the sessions pages
live at /sessions and /sessions/<session_id>, usage at /usage), nor, signed out, any page."""

from __future__ import annotations

import html as markup
import time
from typing import Any

import anthropic
import httpx2
import pytest
import trio

from tests.browser import DashboardPage, DashboardSetup, sign_in_over_http

SECRET_PROMPT = "the admin asks a question for nobody else"
CLAUDE_CODE = {"user-agent": "claude-cli/2.0.14 (external, cli)",
               "x-claude-code-session-id": "cc-admin-session"}  # fmt: skip


async def _recorded_session(setup: DashboardSetup) -> str:
    """The id of the admin's session once it is recorded."""
    gateway = setup.gateway
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0,
        default_headers=CLAUDE_CODE,
    ) as claude:  # fmt: skip
        said: Any = [{"role": "user", "content": SECRET_PROMPT}]
        await claude.messages.create(model="claude-demo", max_tokens=64, messages=said)
    headers = {"authorization": f"Bearer {gateway.token}"}
    deadline = time.monotonic() + 10
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as http:
        while True:
            found = (await http.get("/api/v2/aibridge/sessions")).json()["sessions"]
            if found and found[0]["ended_at"] is not None:
                return str(found[0]["id"])
            assert time.monotonic() < deadline, found
            await trio.sleep(0.02)


async def test_a_member_cannot_open_another_users_session(
    dash: DashboardSetup, member_page: DashboardPage
) -> None:
    session_id = await _recorded_session(dash)
    async with httpx2.AsyncClient(base_url=dash.gateway.url, timeout=10) as admin:
        await sign_in_over_http(admin, dash.gateway.token)
        as_admin = await admin.get(f"/sessions/{session_id}")
    assert as_admin.status_code == 200 and SECRET_PROMPT in markup.unescape(as_admin.text)
    assert await member_page.goto(f"/sessions/{session_id}") == 404
    html = await member_page.do(lambda p: p.content())
    assert SECRET_PROMPT not in markup.unescape(html)
    # Nor by asking for the admin's sessions or usage by name: a member's filter is theirs.
    assert await member_page.goto("/sessions?user=admin") == 200
    html = await member_page.do(lambda p: p.content())
    assert SECRET_PROMPT not in markup.unescape(html)
    assert await member_page.do(lambda p: p.locator("tr.session-row").count()) == 0
    assert await member_page.goto("/usage?user=admin&group_by=user") == 200
    users = await member_page.do(lambda p: p.locator("#by-user tbody th").all_inner_texts())
    assert "admin" not in users


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/admin/providers",
        "/admin/users/admin",
        "/sessions",
        "/usage",
    ],
)
async def test_signed_out_every_page_leads_to_the_sign_in_form(
    dash: DashboardSetup, path: str
) -> None:
    async with httpx2.AsyncClient(base_url=dash.gateway.url, timeout=10) as http:
        answer = await http.get(path)
    assert answer.status_code == 302
    assert answer.headers["location"] == f"/signin?next={path}"
