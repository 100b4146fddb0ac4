"""The reload loop (virtual time) and the LISTEN connection (a real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from aibridged.errors import StoreError
from aibridged.metrics import Metrics
from aibridged.reload import Reloader
from aibridged.sdnotify import SdNotifier
from aibridged.store import Store
from aibridged.store.listen import run_notification_listener
from aibridged.store.providers import CHANGED_CHANNEL


class Builds:
    """A build function that records when it ran and can be told to fail."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.fail = False
        self.applied: list[int] = []

    async def build(self, version: int) -> int:
        self.times.append(trio.current_time())
        if self.fail:
            raise StoreError("database unavailable: boom")
        return version

    def apply(self, snapshot: int) -> None:
        self.applied.append(snapshot)


class RecordingNotifier(SdNotifier):
    def __init__(self) -> None:
        super().__init__(environ={})
        self.states: list[str] = []

    def notify(self, state: str) -> None:
        self.states.append(state.split("\n")[0])


def _reloader(builds: Builds, **kw: object) -> tuple[Reloader[int], Metrics]:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    reloader = Reloader(builds.build, builds.apply, metrics=metrics, **kw)  # type: ignore[arg-type]
    return reloader, metrics


async def test_the_poll_reloads_on_time_without_drift(autojump_clock: trio.abc.Clock) -> None:
    builds = Builds()
    reloader, _ = _reloader(builds, poll_interval_s=30.0)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        await trio.sleep(95)
        nursery.cancel_scope.cancel()
    assert [t - start for t in builds.times] == [30.0, 60.0, 90.0]
    assert builds.applied == [1, 2, 3]


async def test_requests_during_a_build_coalesce_into_one_more_build(
    autojump_clock: trio.abc.Clock,
) -> None:
    builds = Builds()
    reloader, _ = _reloader(builds, poll_interval_s=1000.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        for _ in range(5):
            reloader.request()
        await reloader.wait_reloaded()
        for _ in range(5):
            reloader.request()
        await reloader.wait_reloaded()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(builds.times) == 2


async def test_a_failed_build_keeps_the_previous_set_and_is_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    builds = Builds()
    reloader, metrics = _reloader(builds)
    assert await reloader.reload_now()
    builds.fail = True
    assert not await reloader.reload_now()
    assert builds.applied == [1]  # the failed build applied nothing
    stats = reloader.statistics()
    assert (stats.attempts, stats.failures, stats.version) == (2, 1, 1)
    assert "boom" in stats.last_error
    assert metrics.provider_reloads.labels(result="failed")._value.get() == 1
    last = metrics.providers_last_reload._value.get()
    success = metrics.providers_last_reload_success._value.get()
    assert last >= success > 0
    builds.fail = False
    assert await reloader.reload_now() and builds.applied == [1, 2]


async def test_a_sighup_reload_is_framed_by_reloading_and_ready(
    autojump_clock: trio.abc.Clock,
) -> None:
    builds = Builds()
    notifier = RecordingNotifier()
    reloader, _ = _reloader(builds, notifier=notifier, poll_interval_s=1000.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        reloader.request()  # a NOTIFY: no RELOADING
        await reloader.wait_reloaded()
        await trio.testing.wait_all_tasks_blocked()
        reloader.request(sighup=True)
        await reloader.wait_reloaded()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert notifier.states == ["RELOADING=1", "READY=1"]


async def test_a_notify_reaches_the_listener(store: Store) -> None:
    heard = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_notification_listener, store, CHANGED_CHANNEL, heard.set)
        await store.run(lambda conn: conn.execute(f"NOTIFY {CHANGED_CHANNEL}"))
        with trio.fail_after(2):
            await heard.wait()
        nursery.cancel_scope.cancel()


async def test_a_lost_listen_connection_comes_back_and_reports_what_it_missed(
    store: Store,
) -> None:
    calls: list[str] = []
    called = trio.Event()

    def on_notify() -> None:
        calls.append("notify")
        if len(calls) > 1:  # the first comes as the connection starts listening
            called.set()

    async def terminate_listeners(conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(run_notification_listener, store, CHANGED_CHANNEL, on_notify)
        assert await store.run(terminate_listeners) == 1
        with trio.fail_after(20):  # found at the next check (5 s), back after the backoff
            await called.wait()
        # Once when it first listened, once after reconnecting: changes may have been missed.
        assert calls == ["notify", "notify"]
        called = trio.Event()
        await store.run(lambda conn: conn.execute(f"NOTIFY {CHANGED_CHANNEL}"))
        with trio.fail_after(2):
            await called.wait()
        nursery.cancel_scope.cancel()
