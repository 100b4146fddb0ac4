"""A dedicated LISTEN connection: every NOTIFY on a channel calls back, across reconnects.

asyncpg delivers notifications only on the connection that listens, so it is not a pooled one.
The connection is checked every few seconds; when it is lost it is opened again with capped
backoff, and `on_notify` is called once it listens again, since whatever was notified meanwhile
was missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog
import trio

from aibridged.errors import StoreError
from aibridged.store.db import Store

log = structlog.get_logger("aibridged.store")

CHECK_INTERVAL_S = 5.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


async def run_notification_listener(
    store: Store,
    channel: str,
    on_notify: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """LISTEN on `channel` until cancelled; reports started once listening (or once the first
    attempt failed: the reload loop's poll covers the time until the connection is back)."""
    backoff = BACKOFF_START_S
    started = False
    reconnected = False
    while True:
        try:
            async with _listening(store, channel, on_notify) as connection:
                backoff = BACKOFF_START_S
                # Changes made before LISTEN took effect were not notified: look once now.
                on_notify()
                if reconnected:
                    log.info("store.listen_resumed", channel=channel)
                if not started:
                    started = True
                    task_status.started()
                await _check_forever(store, connection)
        except (StoreError, trio.TooSlowError) as exc:
            log.warning("store.listen_lost", channel=channel, error=str(exc) or "timed out",
                        retry_in_s=backoff)  # fmt: skip
        if not started:
            started = True
            task_status.started()
        reconnected = True
        await trio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)


@asynccontextmanager
async def _listening(
    store: Store, channel: str, on_notify: Callable[[], None]
) -> AsyncIterator[Any]:
    """A connection listening on `channel` for the body of the `async with`."""

    def callback(connection: Any, pid: int, channel: str, payload: str) -> None:
        # Runs on the trio-asyncio loop, inside trio: a trio event may be set from here.
        on_notify()

    with trio.fail_after(CHECK_INTERVAL_S * 2):
        connection = await store.connect()
    try:
        with trio.fail_after(CHECK_INTERVAL_S * 2):
            await store.call(connection.add_listener, channel, callback)
        yield connection
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(StoreError):
            await store.call(connection.close)


async def _check_forever(store: Store, connection: Any) -> None:
    while True:
        await trio.sleep(CHECK_INTERVAL_S)
        with trio.fail_after(CHECK_INTERVAL_S):
            await store.call(connection.fetchval, "SELECT 1")
