"""Group commit of interception starts: starts that arrive while a commit is in flight share the
next one, so a burst costs one round trip, not one each.

A start is *submitted* without waiting; its request goes on preparing the upstream call and
waits for the commit only just before the request's first byte goes upstream (the data plane's
`before_send`). `wait_sent` lets the submitter step aside until the statement is on its way, so
the round trip runs while the request does that work instead of after it: measured at
concurrency 1 (docs/recording.md "What it costs"), the commit then hides behind ~0.4-0.5 ms of the
request's own work.

Starts whose thread is unknown but which answer a tool call go in a batch of their own: their
statement looks the thread up in the call index (store/records.py), which the others need not pay.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from aibridged.errors import StoreError
from aibridged.records import InterceptionStart
from aibridged.store.db import Runner
from aibridged.store.native import NativePool
from aibridged.store.records import insert_starts, insert_starts_finding_threads

START_TIMEOUT_S = 5.0
Thread = tuple[uuid.UUID | None, uuid.UUID | None]


@dataclass(slots=True)
class StartBatch:
    """The starts of one commit; `done` once it was committed (`error` None) or failed."""

    lookup: bool  # the thread of each start is found by the statement
    records: list[InterceptionStart] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    threads: dict[uuid.UUID, Thread] = field(default_factory=dict)
    settle: list[Callable[[StartBatch], None]] = field(default_factory=list)  # run at `done`


class StartCommitter:
    """Commits the submitted starts, one statement in flight at a time (`run` is its task).

    `on_error` hears of every failed commit, `on_round` of the end of each round of commits
    (a drain waits for them); each batch's `settle` callbacks run when it is done, in the
    committing task, before any waiter wakes."""

    def __init__(
        self,
        runner: Runner | NativePool,
        *,
        on_error: Callable[[BaseException], None],
        on_round: Callable[[], None],
    ) -> None:
        self._runner, self._on_error, self._on_round = runner, on_error, on_round
        self._plain = StartBatch(lookup=False)
        self._lookups = StartBatch(lookup=True)
        self._wanted = trio.Event()
        self._idle = True  # no commit in flight, none being taken up
        self._sent = trio.Event()  # the current commit's statement went out (or it ended)
        self._sent.set()
        self.starts = 0  # committed
        self.commits = 0

    def submit(self, record: InterceptionStart, *, lookup: bool) -> StartBatch:
        """Queue `record` for the next commit; the batch it is in."""
        if self._idle and self._sent.is_set():
            self._sent = trio.Event()  # the commit about to be taken up is not sent yet
        batch = self._lookups if lookup else self._plain
        batch.records.append(record)
        self._wanted.set()
        return batch

    async def wait_sent(self) -> None:
        """Until the commit about to be made (or the one in flight) has gone out."""
        await self._sent.wait()

    @property
    def settled(self) -> bool:
        """Nothing submitted waits and no commit is in flight."""
        return self._idle and not self._plain.records and not self._lookups.records

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            self._idle = False
            try:
                plain, self._plain = self._plain, StartBatch(lookup=False)
                lookups, self._lookups = self._lookups, StartBatch(lookup=True)
                for batch in (plain, lookups):
                    if batch.records:
                        await self._commit(batch)
            finally:
                self._idle = True
                self._sent.set()
                self._on_round()

    async def _commit(self, batch: StartBatch) -> None:
        try:
            with trio.fail_after(START_TIMEOUT_S):
                if batch.lookup:
                    batch.threads = await insert_starts_finding_threads(
                        self._runner, batch.records, self._sent.set
                    )
                else:
                    await insert_starts(self._runner, batch.records, self._sent.set)
            self.starts += len(batch.records)
            self.commits += 1
        except (StoreError, trio.TooSlowError) as exc:
            batch.error = exc
            self._on_error(exc)
        finally:
            self._sent.set()
            for settle in batch.settle:
                settle(batch)
            batch.done.set()
