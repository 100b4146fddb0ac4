"""Driving the dashboard in headless Chromium from trio tests.

Playwright's sync API binds its objects to the thread that made them, and trio must keep serving
the gateway meanwhile: one dedicated thread owns Playwright and the browser, and trio tests hand
it work with `await browser.run(fn)` (or `await page.do(fn)`), waiting without blocking trio.
Chromium is Debian's (`/usr/bin/chromium`, or $AIBRIDGED_CHROMIUM); Playwright never downloads
a browser. Without Chromium or the playwright package, the tests are skipped, saying which.

Fixtures (tests/conftest.py imports them, so every test module has them):

- `browser`: the BrowserThread (one per test session).
- `dash`: a started gateway (tests/gateway.py) with an admin (the bootstrap owner) and a member
  `member1`, and their tokens.
- `admin_page`, `member_page`: a `DashboardPage` signed in through the sign-in form, each in its
  own browser context (cookies apart); `page.url(path)`, `await page.goto(path)`,
  `await page.do(lambda p: ...)` with the sync playwright Page, `await page.screenshot(name)`
  (written under the test's tmp_path/screenshots, and into $AIBRIDGED_SCREENSHOT_DIR when set:
  `make screenshots` regenerates docs/screenshots/ that way).
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
import trio
import trio_asyncio  # noqa: F401 (before the browser thread: its event loop policy is per thread)

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.gateway import Gateway, start_gateway

T = TypeVar("T")
DEFAULT_CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    wanted = os.environ.get("AIBRIDGED_CHROMIUM", DEFAULT_CHROMIUM)
    return wanted if Path(wanted).exists() else shutil.which("chromium")


class BrowserThread:
    """One thread owning Playwright and a headless Chromium; trio sends it jobs."""

    def __init__(self, executable: str) -> None:
        self._executable = executable
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.browser: Any = None
        self._thread = threading.Thread(target=self._main, name="playwright", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        from playwright.sync_api import sync_playwright

        # trio-asyncio (imported by the store) makes new asyncio loops trio-asyncio ones, which
        # Playwright's own loop cannot be; outside trio its policy is per thread, so this
        # thread gets asyncio's default back without touching the gateway's.
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        try:
            with sync_playwright() as playwright:
                self.browser = playwright.chromium.launch(
                    executable_path=self._executable,
                    headless=True,
                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
                )
                self._ready.set()
                while (job := self._jobs.get()) is not None:
                    job()
                self.browser.close()
        except BaseException as exc:  # reported to the test that started the browser
            self._failure = exc
            self._ready.set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the browser thread; trio keeps running meanwhile."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        outcome: dict[str, Any] = {}

        def job() -> None:
            try:
                outcome["value"] = fn(*args)
            except Exception as exc:  # re-raised in the test's task
                outcome["error"] = exc
            token.run_sync_soon(done.set)

        self._jobs.put(job)
        await done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]


@dataclass
class DashboardSetup:
    gateway: Gateway
    member_token: str
    browser: BrowserThread
    screenshots: Path


@dataclass
class DashboardPage:
    setup: DashboardSetup
    page: Any  # playwright.sync_api.Page, used on the browser thread only

    def url(self, path: str) -> str:
        return self.setup.gateway.url + path

    async def do(self, fn: Callable[[Any], T]) -> T:
        return await self.setup.browser.run(fn, self.page)

    async def goto(self, path: str) -> int:
        """Open `path`; the response's status."""
        response = await self.do(lambda p: p.goto(self.url(path)))
        return int(response.status)

    async def screenshot(self, name: str) -> Path:
        path = self.setup.screenshots / f"{name}.png"
        await self.do(lambda p: save_screenshot(p, path))
        return path


def save_screenshot(page: Any, path: Path) -> None:
    """`page` as a PNG at `path` (and in $AIBRIDGED_SCREENSHOT_DIR); on the browser thread."""
    page.screenshot(path=str(path), full_page=True)
    published = os.environ.get("AIBRIDGED_SCREENSHOT_DIR")
    if published:
        Path(published).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(published) / path.name)


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium at {DEFAULT_CHROMIUM} or on PATH (Debian: apt install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing (pip install -e '.[test]')")
    thread = BrowserThread(executable)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
async def dash(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, browser: BrowserThread
) -> DashboardSetup:
    gateway = await start_gateway(nursery, database_url=database_url, state_dir=tmp_path)
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="member1", role="member")
        _, member_token = await create_token(store, "member1")
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    return DashboardSetup(gateway, member_token, browser, screenshots)


async def signed_in_page(setup: DashboardSetup, token: str) -> DashboardPage:
    """A new browser context signed in with `token` through the sign-in form."""

    def open_page() -> Any:
        context = setup.browser.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(setup.gateway.url + "/signin")
        page.get_by_label("Token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(setup.gateway.url + "/")
        return page

    return DashboardPage(setup, await setup.browser.run(open_page))


async def _close(page: DashboardPage) -> None:
    await page.do(lambda p: p.context.close())


@pytest.fixture
async def admin_page(dash: DashboardSetup) -> AsyncIterator[DashboardPage]:
    page = await signed_in_page(dash, dash.gateway.token)
    yield page
    await _close(page)


@pytest.fixture
async def member_page(dash: DashboardSetup) -> AsyncIterator[DashboardPage]:
    page = await signed_in_page(dash, dash.member_token)
    yield page
    await _close(page)


# --- the same, without a browser (httpx), for the security tests --------------------------------

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_token_in(html: str) -> str:
    """The CSRF token of the first form on a dashboard page."""
    found = _CSRF_RE.search(html)
    assert found is not None, "no form with a CSRF token on the page"
    return found[1]


async def sign_in_over_http(http: httpx2.AsyncClient, token: str) -> str:
    """Sign `http` in through the form (its cookie jar keeps the session); the CSRF token."""
    form = await http.get("/signin")
    answer = await http.post(
        "/signin", data={"csrf_token": csrf_token_in(form.text), "token": token}
    )
    assert answer.status_code == 303, answer.text
    return csrf_token_in((await http.get("/")).text)
