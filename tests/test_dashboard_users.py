"""Admin → Users in headless Chromium: creating a user, a token whose secret is shown once and
works on the data plane until it is revoked, changing a role, suspending, and the role rules
and field errors of the management API shown on the page."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.browser import DashboardPage, DashboardSetup, sign_in_over_http
from tests.gateway import chat_status


def _create_user(page: Any, username: str, role: str = "member") -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Full name").fill("Carol Example")
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_role("button", name="Create user").click()


async def test_a_token_created_in_the_dashboard_is_shown_once_and_works_until_revoked(
    admin_page: DashboardPage,
) -> None:
    await admin_page.goto("/admin/users")
    await admin_page.do(lambda p: _create_user(p, "carol"))
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == "User carol created."
    await admin_page.screenshot("users")

    def create_token(page: Any) -> str:
        page.get_by_role("link", name="Tokens of carol").click()
        page.get_by_label("Token name").fill("laptop")
        page.get_by_role("button", name="Create token").click()
        return str(page.locator("#new-secret").input_value())

    secret = await admin_page.do(create_token)
    await admin_page.screenshot("user-tokens")
    assert await chat_status(admin_page.setup.gateway, "openai", secret) == 200
    assert await admin_page.goto("/admin/users/carol") == 200
    assert secret not in await admin_page.do(lambda p: p.content())  # shown that once only

    token_id = secret.split("-")[0]
    await admin_page.do(lambda p: p.get_by_role("button", name=f"Revoke token {token_id}").click())
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == f"Token {token_id} revoked."
    assert await chat_status(admin_page.setup.gateway, "openai", secret) == 403


async def test_changing_a_role_and_suspending_a_user(admin_page: DashboardPage) -> None:
    await admin_page.goto("/admin/users")
    await admin_page.do(lambda p: _create_user(p, "dave"))

    def make_admin(page: Any) -> None:
        page.get_by_label("Role of dave", exact=True).select_option("admin")
        page.get_by_role("button", name="Change role of dave").click()

    await admin_page.do(make_admin)
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == "User dave has a new role."
    role = await admin_page.do(lambda p: p.get_by_label("Role of dave", exact=True).input_value())
    assert role == "admin"
    await admin_page.do(lambda p: p.get_by_role("button", name="Suspend dave").click())
    row = await admin_page.do(lambda p: p.locator("#user-dave").inner_text())
    assert "suspended" in row


async def test_the_role_rules_and_field_errors_are_shown(admin_page: DashboardPage) -> None:
    await admin_page.goto("/admin/users")

    def demote_myself(page: Any) -> str:
        page.get_by_label("Role of admin", exact=True).select_option("member")
        page.get_by_role("button", name="Change role of admin").click()
        return str(page.get_by_role("alert").inner_text())

    alert = await admin_page.do(demote_myself)
    assert alert == "admin: you cannot change your own role or status"

    await admin_page.do(lambda p: _create_user(p, "Not Valid"))

    def username_error(page: Any) -> tuple[str, str | None]:
        described = page.get_by_label("Username").get_attribute("aria-describedby")
        return page.locator("#username-error").inner_text(), described

    text, described = await admin_page.do(username_error)
    assert text.startswith("invalid username 'Not Valid'")
    assert described is not None and "username-error" in described.split()


@pytest.mark.parametrize("path", ["/admin/users", "/admin/users/admin"])
async def test_a_member_gets_the_forbidden_page_on_user_pages(
    member_page: DashboardPage, path: str
) -> None:
    assert await member_page.goto(path) == 403
    heading = await member_page.do(lambda p: p.get_by_role("heading", level=1).inner_text())
    assert heading == "Forbidden"


async def test_an_admin_sees_no_token_forms_on_an_owners_tokens_page(
    dash: DashboardSetup, database_url: str
) -> None:
    async with open_store(database_url, pool_size=1, connect_timeout_s=10) as store:
        await create_user(store, username="adam", role="admin")
        _, admin_token = await create_token(store, "adam")
    gateway = dash.gateway
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        await sign_in_over_http(http, admin_token)
        owner_page = await http.get("/admin/users/admin")
        assert owner_page.status_code == 200, owner_page.text
        assert "Only an owner creates or revokes an owner's tokens." in owner_page.text
        assert "Create a token" not in owner_page.text and ">Revoke<" not in owner_page.text
        member_page = await http.get("/admin/users/member1")
        assert "Create a token" in member_page.text and ">Revoke<" in member_page.text
