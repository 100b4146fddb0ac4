"""The provider reload loop: NOTIFY, SIGHUP and a periodic poll each trigger a reload.

A reload builds the whole new set first, then swaps it in one step (`ProviderRegistry.swap`). A
failed build keeps the previous set, is logged and counted. Requests and streams in flight hold
the `Provider` they started with, so a swap never touches them, however long they run.

Triggers coalesce: any number of them during a build give one more build after it, so a burst
of writes costs two builds, not one each. The loop is not tied to the gateway: the proxy uses it
with its own `build` and `apply`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
import trio

from aibridged.errors import AibridgedError, StartupError
from aibridged.metrics import ReloadMetrics
from aibridged.sdnotify import SdNotifier

log = structlog.get_logger("aibridged.reload")

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ReloadStatistics:
    attempts: int
    failures: int
    version: int  # of the snapshot in use
    last_error: str


class Reloader(Generic[S]):
    """Builds snapshots with `build(version)` and hands each successful one to `apply`."""

    def __init__(
        self,
        build: Callable[[int], Awaitable[S]],
        apply: Callable[[S], None],
        *,
        metrics: ReloadMetrics,
        notifier: SdNotifier | None = None,
        poll_interval_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._build, self._apply = build, apply
        self._metrics, self._notifier = metrics, notifier
        self._poll_interval_s, self._timeout_s = poll_interval_s, timeout_s
        self._wanted = trio.Event()
        self._sighup = False
        self._attempts = self._failures = self._version = 0
        self._last_error = ""
        self._done = trio.Event()  # set after each reload attempt (tests and SIGHUP wait on it)
        self._requests = 0  # requests so far
        self._covered = 0  # requests made before the last finished attempt started

    def request(self, *, sighup: bool = False) -> None:
        """Ask for a reload soon (safe from any trio task, and from asyncpg's callbacks)."""
        self._requests += 1
        self._sighup = self._sighup or sighup
        self._wanted.set()

    async def reload_soon(self, timeout_s: float = 2.0) -> None:
        """Ask for a reload and wait (at most `timeout_s`) until one that started after this
        request has ended: the API answers a write once this replica serves it."""
        self.request()
        target = self._requests
        with trio.move_on_after(timeout_s):
            while self._covered < target:
                await self._done.wait()

    async def load_first(self) -> None:
        """The load at start-up: StartupError when it fails (there is no set to keep yet)."""
        if not await self.reload_now():
            raise StartupError(f"cannot load the providers: {self._last_error}")

    async def reload_now(self) -> bool:
        """Build and swap once; False (the previous snapshot kept) when the build failed."""
        self._attempts += 1
        covering = self._requests
        version = self._version + 1
        self._metrics.providers_last_reload.set(time.time())
        try:
            with trio.fail_after(self._timeout_s):
                snapshot = await self._build(version)
        except (AibridgedError, trio.TooSlowError) as exc:
            self._failures += 1
            self._last_error = str(exc) or "timed out"
            self._metrics.provider_reloads.labels(result="failed").inc()
            log.error("providers.reload_failed", error=self._last_error, kept_version=self._version)
            self._attempt_ended(covering)
            return False
        self._version = version
        self._last_error = ""
        self._apply(snapshot)
        self._metrics.provider_reloads.labels(result="ok").inc()
        self._metrics.providers_last_reload_success.set(time.time())
        self._attempt_ended(covering)
        return True

    def _attempt_ended(self, covering: int) -> None:
        self._covered = max(self._covered, covering)
        self._done.set()
        self._done = trio.Event()

    async def wait_reloaded(self) -> None:
        """Until the next reload attempt ends."""
        await self._done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reload on each request, and every `poll_interval_s` without drift."""
        task_status.started()
        next_poll = trio.current_time() + self._poll_interval_s
        while True:
            with trio.move_on_at(next_poll):
                await self._wanted.wait()
            if trio.current_time() >= next_poll:
                next_poll += self._poll_interval_s * (
                    1 + (trio.current_time() - next_poll) // self._poll_interval_s
                )
            self._wanted = trio.Event()
            sighup, self._sighup = self._sighup, False
            if sighup and self._notifier is not None:
                self._notifier.reloading()
            try:
                await self.reload_now()
            finally:
                if sighup and self._notifier is not None:
                    self._notifier.ready()

    def statistics(self) -> ReloadStatistics:
        return ReloadStatistics(self._attempts, self._failures, self._version, self._last_error)
