"""The dashboard by keyboard and on a narrow window, in headless Chromium: the skip link, signing
in without a mouse, a label on every input, the landmarks, and no page wider than a 400 px
window (wide tables scroll inside their box)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import TIMEOUT_MS, DashboardPage, DashboardSetup

ADMIN_PAGES = [
    "/",
    "/admin/providers",
    "/admin/providers/new",
    "/admin/providers/new?type=bedrock",
    "/admin/providers/openai",
    "/admin/providers/openai/delete",
    "/admin/users",
    "/admin/users/admin",
    "/sessions",
    "/usage",
    "/usage?range=custom&group_by=client",
]

# Inputs a person uses (not hidden ones) without a <label> or an aria-label.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
  .map(e => e.name || e.id)"""


async def test_signing_in_by_keyboard_alone(dash: DashboardSetup) -> None:
    def by_keyboard(url: str, token: str) -> tuple[str, str, str]:
        context = dash.browser.browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url + "/signin")
            page.keyboard.press("Tab")
            first = page.evaluate("document.activeElement.textContent.trim()")
            page.keyboard.press("Enter")  # the skip link moves focus into the main content
            after_skip = page.evaluate("document.activeElement.id")
            page.keyboard.press("Tab")  # the username
            page.keyboard.press("Tab")  # the token
            page.keyboard.type(token)
            page.keyboard.press("Enter")
            page.wait_for_url(url + "/")
            return first, after_skip, page.title()
        finally:
            context.close()

    first, after_skip, title = await dash.browser.run(
        by_keyboard, dash.gateway.url, dash.gateway.token
    )
    assert first == "Skip to content"
    assert after_skip == "main"
    assert title == "Home · aibridged"


@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_every_input_has_a_label_and_the_page_has_its_landmarks(
    admin_page: DashboardPage, path: str
) -> None:
    assert await admin_page.goto(path) == 200

    def inspect(page: Any) -> tuple[list[str], int, int, int, str]:
        return (
            page.evaluate(UNLABELLED),
            page.get_by_role("banner").count(),
            page.get_by_role("navigation", name="Main").count(),
            page.get_by_role("main").count(),
            page.title(),
        )

    unlabelled, banners, navs, mains, title = await admin_page.do(inspect)
    assert unlabelled == []
    assert (banners, navs, mains) == (1, 1, 1)
    assert title.endswith(" · aibridged") and title != " · aibridged"


@pytest.mark.parametrize(
    "path",
    ["/", "/admin/providers", "/admin/providers/openai", "/admin/users", "/sessions", "/usage"],
)
async def test_pages_fit_a_narrow_window(admin_page: DashboardPage, path: str) -> None:
    await admin_page.do(lambda p: p.set_viewport_size({"width": 400, "height": 800}))
    await admin_page.goto(path)
    width = await admin_page.do(lambda p: p.evaluate("document.documentElement.scrollWidth"))
    assert width <= 400
    if path == "/admin/providers":
        await admin_page.screenshot("providers-narrow")
