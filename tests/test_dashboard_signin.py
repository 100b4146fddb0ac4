"""Signing in to the dashboard in headless Chromium: the form, the session cookie's flags, the
home page by role, and signing out."""

from __future__ import annotations

from tests.browser import DashboardPage, DashboardSetup, save_screenshot


async def test_signing_in_with_the_admin_token_shows_the_admin_links(
    admin_page: DashboardPage,
) -> None:
    nav = await admin_page.do(lambda p: p.get_by_role("navigation", name="Main").inner_text())
    assert "Providers" in nav and "Users" in nav and "Sessions" in nav and "Usage" in nav
    assert await admin_page.do(lambda p: p.title()) == "Home · aibridged"
    cookies = await admin_page.do(lambda p: p.context.cookies())
    session = next(c for c in cookies if c["name"] == "aibridged_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
    assert admin_page.setup.gateway.token not in session["value"]
    await admin_page.screenshot("home")


async def test_a_member_sees_no_admin_links(member_page: DashboardPage) -> None:
    nav = await member_page.do(lambda p: p.get_by_role("navigation", name="Main").inner_text())
    assert "Sessions" in nav and "Providers" not in nav and "Users" not in nav


async def test_a_wrong_token_is_refused_next_to_the_token_field(
    dash: DashboardSetup,
) -> None:
    def attempt(page_url: str) -> tuple[str, str | None, str]:
        context = dash.browser.browser.new_context()
        try:
            page = context.new_page()
            page.goto(page_url)
            page.get_by_label("Token").fill("abcdefghij-0123456789012345678901")
            page.get_by_role("button", name="Sign in").click()
            token_input = page.get_by_label("Token")
            save_screenshot(page, dash.screenshots / "signin.png")
            return (
                page.locator("#token-error").inner_text(),
                token_input.get_attribute("aria-describedby"),
                page.url,
            )
        finally:
            context.close()

    text, described_by, url = await dash.browser.run(attempt, dash.gateway.url + "/signin")
    assert text == "This token is not valid."
    assert described_by == "token-error"
    assert url.endswith("/signin?next=/")


async def test_signing_out_ends_the_session(admin_page: DashboardPage) -> None:
    await admin_page.do(lambda p: p.get_by_role("button", name="Sign out").click())
    await admin_page.do(lambda p: p.wait_for_url("**/signin"))
    status = await admin_page.goto("/")
    assert status == 200
    assert await admin_page.do(lambda p: p.title()) == "Sign in · aibridged"
