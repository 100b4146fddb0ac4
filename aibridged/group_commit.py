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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from aibridged.errors import StoreError, StoreUnavailable
from aibridged.records import InterceptionStart
from aibridged.store.db import Runner
from aibridged.store.native import NativePool, Sent
from aibridged.store.records import (
    Threads,
    insert_starts,
    insert_starts_finding_threads,
    send_starts_now,
    sent_starts_committed,
)

START_TIMEOUT_S = 5.0
STOPPED = StoreUnavailable("the recorder stopped before the start was committed")


@dataclass(slots=True)
class StartBatch:
    """The starts of one commit; `done` once it was committed (`error` None) or failed."""

    lookup: bool  # the thread of each start is found by the statement
    records: list[InterceptionStart] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    threads: Threads = field(default_factory=dict)
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
        self._sent_alone: tuple[StartBatch, Sent] | None = None  # see `_send_now`
        self.starts = 0  # committed
        self.commits = 0

    def submit(self, record: InterceptionStart, *, lookup: bool) -> StartBatch:
        """Queue `record` for the next commit; the batch it is in. A start that finds the
        committer idle is sent at once, its commit alone."""
        if self._idle and not self._wanted.is_set():
            batch = self._send_now(record, lookup=lookup)
            if batch is not None:
                return batch
        if self._idle and self._sent.is_set():
            self._sent = trio.Event()  # the commit about to be taken up is not sent yet
        batch = self._lookups if lookup else self._plain
        batch.records.append(record)
        self._wanted.set()
        return batch

    def _send_now(self, record: InterceptionStart, *, lookup: bool) -> StartBatch | None:
        """A lone request's start on its way before `submit` returns: no scheduling round for
        the committer to take it up and none for the request to hear it went out, ~0.1-0.2 ms
        of the added latency at concurrency 1 (docs/recording.md "What it costs")."""
        if not isinstance(self._runner, NativePool):
            return None
        batch = StartBatch(lookup=lookup, records=[record])
        sent = send_starts_now(self._runner, batch.records, lookup=lookup)
        if sent is None:
            return None
        self._idle = False  # until `run` has its answer; later starts wait for the next commit
        self._sent_alone = (batch, sent)
        self._wanted.set()
        return batch

    async def wait_sent(self) -> None:
        """Until the commit about to be made (or the one in flight) has gone out. Returns at
        once, without a checkpoint, if it has: the request's next step is its own."""
        if not self._sent.is_set():
            await self._sent.wait()

    @property
    def settled(self) -> bool:
        """Nothing submitted waits and no commit is in flight."""
        return self._idle and not self._plain.records and not self._lookups.records

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # cancelled before it took up a start sent alone: its connection is given up
            if self._sent_alone is not None:
                (batch, sent), self._sent_alone = self._sent_alone, None
                sent.abandon()
                self._settle(batch, STOPPED)

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            self._idle = False
            try:
                if self._sent_alone is not None:
                    (batch, sent), self._sent_alone = self._sent_alone, None
                    await self._commit(batch, partial(sent_starts_committed, sent))
                plain, self._plain = self._plain, StartBatch(lookup=False)
                lookups, self._lookups = self._lookups, StartBatch(lookup=True)
                for batch in (plain, lookups):
                    if batch.records:
                        await self._commit(batch, partial(self._send, batch))
            finally:
                self._idle = True
                self._sent.set()
                self._on_round()

    async def _send(self, batch: StartBatch) -> Threads:
        if batch.lookup:
            return await insert_starts_finding_threads(self._runner, batch.records, self._sent.set)
        await insert_starts(self._runner, batch.records, self._sent.set)
        return {}

    async def _commit(self, batch: StartBatch, committed: Callable[[], Awaitable[Threads]]) -> None:
        error: BaseException | None = STOPPED  # cancelled: whether it committed is unknown
        try:
            with trio.fail_after(START_TIMEOUT_S):
                batch.threads = await committed()
            self.starts += len(batch.records)
            self.commits += 1
            error = None
        except (StoreError, trio.TooSlowError) as exc:
            error = exc
            self._on_error(exc)
        finally:
            self._settle(batch, error)

    def _settle(self, batch: StartBatch, error: BaseException | None) -> None:
        batch.error = error
        self._sent.set()
        for settle in batch.settle:
            settle(batch)
        batch.done.set()
