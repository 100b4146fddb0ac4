"""Admin → AI → Providers in headless Chromium: adding an openai provider through its form, the
openai SDK served by it at once, disabling it (the next request gets 503), editing it (a
rotated key goes upstream), a bad name shown next to its field, deleting after confirmation,
and a member refused the admin pages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import DashboardPage
from tests.gateway import chat_status

NEW_KEY = "sk-dashboard-added-0123456789"
ROTATED_KEY = "sk-dashboard-rotated-9876543210"


def _add_provider(page: Any, base_url: str, name: str) -> None:
    page.get_by_role("link", name="Add provider").first.click()
    page.get_by_role("link", name="openai", exact=False).first.click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Base URL").fill(base_url)
    page.get_by_label("Keys").fill(NEW_KEY)
    page.get_by_role("button", name="Add provider").click()


async def test_a_provider_added_in_the_form_serves_at_once_and_stops_when_disabled(
    admin_page: DashboardPage,
) -> None:
    gateway = admin_page.setup.gateway
    assert await admin_page.goto("/admin/providers") == 200
    await admin_page.screenshot("providers")
    await admin_page.do(lambda p: p.get_by_role("link", name="Add provider").first.click())
    await admin_page.screenshot("provider-types")
    await admin_page.goto("/admin/providers")
    await admin_page.do(lambda p: _add_provider(p, gateway.upstream_url + "/v1", "dash-openai"))
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == "Provider dash-openai added."
    row = await admin_page.do(lambda p: p.locator("#provider-dash-openai").inner_text())
    assert "enabled" in row and "sk-d...6789" in row and NEW_KEY not in row

    assert await chat_status(admin_page.setup.gateway, "dash-openai") == 200
    assert gateway.upstream.requests[-1].header("authorization") == f"Bearer {NEW_KEY}"

    await admin_page.do(
        lambda p: p.get_by_role("button", name="Disable dash-openai", exact=True).click()
    )
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == "Provider dash-openai disabled."
    assert await chat_status(admin_page.setup.gateway, "dash-openai") == 503


async def test_editing_a_provider_rotates_its_key(admin_page: DashboardPage) -> None:
    gateway = admin_page.setup.gateway
    await admin_page.goto("/admin/providers")
    await admin_page.do(lambda p: _add_provider(p, gateway.upstream_url + "/v1", "rotating"))
    await admin_page.goto("/admin/providers/rotating")
    await admin_page.screenshot("provider-edit")

    def rotate(page: Any) -> None:
        page.get_by_label("Keep key sk-d...6789").uncheck()
        page.get_by_label("New keys").fill(ROTATED_KEY)
        page.get_by_role("button", name="Save").click()

    await admin_page.do(rotate)
    row = await admin_page.do(lambda p: p.locator("#provider-rotating").inner_text())
    assert "sk-d...3210" in row and "sk-d...6789" not in row
    assert await chat_status(admin_page.setup.gateway, "rotating") == 200
    assert gateway.upstream.requests[-1].header("authorization") == f"Bearer {ROTATED_KEY}"


async def test_a_bad_name_is_shown_next_to_the_name_field(admin_page: DashboardPage) -> None:
    gateway = admin_page.setup.gateway
    await admin_page.goto("/admin/providers")
    await admin_page.do(lambda p: _add_provider(p, gateway.upstream_url + "/v1", "Bad Name!"))

    def name_error(page: Any) -> tuple[str, str | None, str | None, str]:
        name = page.get_by_label("Name", exact=True)
        return (
            page.locator("#name-error").inner_text(),
            name.get_attribute("aria-describedby"),
            name.get_attribute("aria-invalid"),
            name.input_value(),
        )

    text, described_by, invalid, kept = await admin_page.do(name_error)
    assert text == "use lowercase letters, digits and single dashes, e.g. openai-prod"
    assert described_by is not None and "name-error" in described_by.split()
    assert invalid == "true" and kept == "Bad Name!"
    await admin_page.screenshot("provider-add-error")


async def test_deleting_a_provider_asks_first(admin_page: DashboardPage) -> None:
    gateway = admin_page.setup.gateway
    await admin_page.goto("/admin/providers")
    await admin_page.do(lambda p: _add_provider(p, gateway.upstream_url + "/v1", "short-lived"))
    await admin_page.do(lambda p: p.get_by_role("link", name="Delete short-lived").click())
    heading = await admin_page.do(lambda p: p.get_by_role("heading", level=1).inner_text())
    assert heading == "Delete provider short-lived?"
    await admin_page.screenshot("provider-delete")
    assert (
        await chat_status(admin_page.setup.gateway, "short-lived") == 200
    )  # asking deleted nothing
    await admin_page.do(lambda p: p.get_by_role("button", name="Delete short-lived").click())
    notice = await admin_page.do(lambda p: p.get_by_role("status").inner_text())
    assert notice == "Provider short-lived deleted."
    assert await chat_status(admin_page.setup.gateway, "short-lived") == 404


@pytest.mark.parametrize(
    "path", ["/admin/providers", "/admin/providers/new?type=openai", "/admin/providers/openai"]
)
async def test_a_member_gets_the_forbidden_page_on_admin_pages(
    member_page: DashboardPage, path: str
) -> None:
    assert await member_page.goto(path) == 403
    heading = await member_page.do(lambda p: p.get_by_role("heading", level=1).inner_text())
    assert heading == "Forbidden"
    if path == "/admin/providers":
        await member_page.screenshot("forbidden")


async def test_a_bad_endpoint_on_edit_is_shown_next_to_its_field_and_changes_nothing(
    admin_page: DashboardPage,
) -> None:
    await admin_page.goto("/admin/providers/openai")

    def bad_endpoint(page: Any) -> tuple[str, bool]:
        page.get_by_label("Base URL").fill("ftp://example.com")
        page.get_by_role("button", name="Save").click()
        error = page.locator("#base_url-error").inner_text()
        return error, page.get_by_label("Keep key sk-u...6789").is_checked()

    error, key_kept = await admin_page.do(bad_endpoint)
    assert "ftp" in error and key_kept
    assert await chat_status(admin_page.setup.gateway, "openai") == 200
