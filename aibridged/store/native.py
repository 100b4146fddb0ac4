"""A trio-native PostgreSQL connection: libpq (psycopg's `pq` wrapper) in nonblocking mode, its
socket waited on by trio itself.

Why it exists (docs/architecture.md, docs/recording.md): an asyncpg call through trio-asyncio
costs several scheduling rounds of both loops, and an interception's start commit is on the
request's critical path. The same INSERT here is one `wait_readable` between sending and
reading: a one-row start commit took 0.17 ms instead of 0.33 ms back to back, 0.69 ms instead of
1.0-1.1 ms after 5 ms of idle (bench/results/2026-12-02-recorder-native.md). Only what that
needs is here: prepared statements and plain queries, text parameters, results loaded by
psycopg's `Transformer`.

Parameters go in PostgreSQL's text form (store/pgtext.py): every statement this runs casts each
parameter (`$1::uuid[]`), so no type is sent. `send_now` sends without waiting at all, for a
lone request's start commit (group_commit.py).

A call that fails or is cancelled part-way through the protocol closes its connection (its
state is unknown); the pool opens a new one for the next call. A connection found closed by
the server while it sat idle is replaced before anything is sent, so that call still succeeds.
Host names are resolved before libpq connects (store/conninfo.py), which would block on DNS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
import trio
from psycopg import pq
from psycopg.adapt import Transformer

from aibridged.errors import Conflict, StoreError, StoreUnavailable
from aibridged.store.conninfo import resolve_host
from aibridged.store.pgtext import dump_all

log = structlog.get_logger("aibridged.store")

CONNECT_TIMEOUT_S = 10.0
Row = tuple[Any, ...]

# SQLSTATEs that mean the session is gone: connection exceptions, and the server shutting
# down or killing the backend (pg_terminate_backend sends 57P01).
_LOST_CLASSES = ("08",)
_LOST_STATES = frozenset({"57P01", "57P02", "57P03"})
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL prepared once per connection under `name` (its parameters cast in the SQL)."""

    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class NativeStatistics:
    size: int
    waiting: int
    borrowed: int
    connects: int  # connections opened so far (more than `size`: some were replaced)


def _nothing() -> None:
    return None


class NativeConnection:
    """One session; one call at a time (the pool sees to it)."""

    def __init__(self, pgconn: pq.abc.PGconn, scrub: Callable[[str], str]) -> None:
        self._pgconn: pq.abc.PGconn | None = pgconn
        self._fd = pgconn.socket
        self._scrub = scrub
        self._prepared: set[str] = set()
        self._ending = False  # the server said FATAL while the session sat idle
        pgconn.notice_handler = self._on_notice

    @classmethod
    async def open(cls, conninfo: str, scrub: Callable[[str], str], shown: str) -> NativeConnection:
        """Connect without blocking the thread; StoreUnavailable if it cannot (naming the
        database as `shown`, its URL without the password)."""
        pgconn = pq.PGconn.connect_start(conninfo.encode())
        failed = f"cannot connect to database {shown}"
        try:
            while True:
                if pgconn.status == pq.ConnStatus.BAD:
                    raise StoreUnavailable(f"{failed}: {scrub(_message(pgconn))}")
                state = pgconn.connect_poll()
                if state == pq.PollingStatus.OK:
                    break
                if state == pq.PollingStatus.FAILED:
                    raise StoreUnavailable(f"{failed}: {scrub(_message(pgconn))}")
                # libpq may move to another socket (the next host): ask for it each time.
                if state == pq.PollingStatus.READING:
                    await trio.lowlevel.wait_readable(pgconn.socket)
                else:
                    await trio.lowlevel.wait_writable(pgconn.socket)
            pgconn.nonblocking = 1
        except psycopg.Error as exc:  # `socket` of a connection libpq gave up on
            _finish(pgconn)
            raise StoreUnavailable(f"{failed}: {scrub(_one_line(str(exc)))}") from exc
        except BaseException:
            _finish(pgconn)
            raise
        return cls(pgconn, scrub)

    @property
    def closed(self) -> bool:
        return self._pgconn is None

    def usable(self) -> bool:
        """Still open, as far as a read that does not wait can tell (the server closes an idle
        session it terminates; the end of the stream is already there to read)."""
        pgconn = self._pgconn
        if pgconn is None:
            return False
        with contextlib.suppress(psycopg.Error):  # a closed stream shows in `status`
            pgconn.consume_input()  # only reads: parsing (and the notice handler) is here
            pgconn.is_busy()
        idle = pq.TransactionStatus.IDLE
        if self._ending or pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != idle:
            self.close()
            return False
        return True

    async def fetch(
        self, statement: Statement, params: Sequence[Any], sent: Callable[[], None] = _nothing
    ) -> list[Row]:
        """Run `statement` (prepared on this connection the first time) and return its rows;
        `sent()` is called once it has gone to the server, while its answer is awaited."""
        values = dump_all(params)
        name = statement.name.encode()
        if statement.name not in self._prepared:
            prepare = self._live().send_prepare
            await self._round_trip(lambda: prepare(name, statement.sql.encode()))
            self._prepared.add(statement.name)
        send = self._live().send_query_prepared
        return await self._round_trip(lambda: send(name, values), sent)

    def send_now(self, statement: Statement, params: Sequence[Any]) -> bool:
        """Send `statement` without waiting, if it is prepared here (False: nothing was sent);
        `answer()` completes it. StoreError if it cannot be sent (the connection is closed)."""
        if statement.name not in self._prepared:
            return False
        values = dump_all(params)
        send = self._live().send_query_prepared
        self._send(lambda: send(statement.name.encode(), values))
        return True

    async def answer(self) -> list[Row]:
        """The rows of what `send_now` sent."""
        return await self._complete(_nothing)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run `sql` unprepared (one-off statements: settings, tests)."""
        values = dump_all(params)
        send = self._live().send_query_params
        return await self._round_trip(lambda: send(sql.encode(), values))

    def close(self) -> None:
        pgconn, self._pgconn = self._pgconn, None
        if pgconn is not None:
            trio.lowlevel.notify_closing(self._fd)
            pgconn.finish()

    def _on_notice(self, result: pq.abc.PGresult) -> None:
        # libpq prints notices on stderr unless told otherwise. The FATAL of a session the
        # server ends while it is idle (pg_terminate_backend, shutdown) arrives this way, maybe
        # before the end of the stream does.
        severity = _field(result, pq.DiagnosticField.SEVERITY_NONLOCALIZED)
        self._ending = self._ending or severity in ("FATAL", "PANIC")
        message = self._scrub(_field(result, pq.DiagnosticField.MESSAGE_PRIMARY))
        log.debug("store.native_notice", severity=severity, message=message)

    def _live(self) -> pq.abc.PGconn:
        if self._pgconn is None:
            raise StoreUnavailable("database unavailable: the connection is closed")
        return self._pgconn

    async def _round_trip(
        self, send: Callable[[], None], sent: Callable[[], None] = _nothing
    ) -> list[Row]:
        """Send, then read every result; the connection is closed unless this completed."""
        self._send(send)
        return await self._complete(sent)

    def _send(self, send: Callable[[], None]) -> None:
        # In nonblocking mode libpq writes what the socket takes at once (all of a start commit:
        # a few KB); `_complete` flushes the rest.
        try:
            send()
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(
                f"database unavailable: {self._scrub(_one_line(str(exc)))}"
            ) from exc

    async def _complete(self, sent: Callable[[], None]) -> list[Row]:
        pgconn = self._live()
        completed = False
        try:
            await self._flush(pgconn)
            sent()
            results = await self._results(pgconn)
            completed = pgconn.transaction_status == pq.TransactionStatus.IDLE
        except psycopg.Error as exc:  # sending or reading failed: the session is gone
            message = self._scrub(_one_line(str(exc)))
            raise StoreUnavailable(f"database unavailable: {message}") from exc
        except (OSError, trio.ClosedResourceError) as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        finally:
            if not completed:
                self.close()
        rows: list[Row] = []
        for result in results:
            rows.extend(self._rows(result))
        return rows

    async def _flush(self, pgconn: pq.abc.PGconn) -> None:
        # libpq wants "read or write ready" here; reading what has come in before waiting to
        # write again is enough for these small statements (the server does not stall on its
        # own output while it is still reading ours).
        while pgconn.flush():
            pgconn.consume_input()
            await trio.lowlevel.wait_writable(self._fd)

    async def _results(self, pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
        results: list[pq.abc.PGresult] = []
        while True:
            while pgconn.is_busy():
                await trio.lowlevel.wait_readable(self._fd)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                return results
            results.append(result)

    def _rows(self, result: pq.abc.PGresult) -> list[Row]:
        status = result.status
        if status == pq.ExecStatus.TUPLES_OK:
            loader = Transformer()
            loader.set_pgresult(result)
            return loader.load_rows(0, result.ntuples, tuple)
        if status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY):
            return []
        raise self._error(result)

    def _error(self, result: pq.abc.PGresult) -> Exception:
        state = _field(result, pq.DiagnosticField.SQLSTATE)
        primary = self._scrub(_field(result, pq.DiagnosticField.MESSAGE_PRIMARY))
        if not primary:  # no error fields: libpq's own message (a protocol failure)
            primary = self._scrub(_one_line(result.error_message.decode(errors="replace")))
        if state == _UNIQUE_VIOLATION:
            return Conflict(
                self._scrub(_field(result, pq.DiagnosticField.MESSAGE_DETAIL)) or primary
            )
        if state[:2] in _LOST_CLASSES or state in _LOST_STATES or self.closed:
            return StoreUnavailable(f"database unavailable: {primary}")
        return StoreError(f"database error: {primary}")


class NativePool:
    """`size` native connections behind a FIFO gate, each kept between calls and replaced when
    it broke. Connections are opened at `open` (a bad URL fails the daemon's start, and the
    first call does not pay for a connect)."""

    def __init__(
        self, conninfo: str, size: int, scrub: Callable[[str], str], *, shown: str
    ) -> None:
        self._conninfo, self._scrub, self._shown = conninfo, scrub, shown
        self._gate = trio.Semaphore(size)  # trio's semaphore wakes its waiters in order
        self._idle: list[NativeConnection] = []
        self._size = size
        self._connects = 0
        self._closed = False

    async def open(self) -> None:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            for _ in range(self._size):
                self._idle.append(await self._connect())

    async def fetch(
        self, statement: Statement, params: Sequence[Any], sent: Callable[[], None] = _nothing
    ) -> list[Row]:
        async with self._gate:
            conn = await self._take()
            try:
                return await conn.fetch(statement, params, sent)
            finally:
                self._give_back(conn)

    def send_now(self, statement: Statement, params: Sequence[Any]) -> Sent | None:
        """`statement` sent before this returns, on a connection that is free and has it
        prepared; None (nothing sent) if there is none, or the send failed (its connection is
        replaced: `fetch` reports what is wrong). Saves `fetch`'s scheduling rounds, which
        the start commit of a lone request waits through (docs/recording.md)."""
        if self._closed:
            return None
        try:
            self._gate.acquire_nowait()
        except trio.WouldBlock:
            return None
        conn = self._take_idle()
        try:
            if conn is not None and conn.send_now(statement, params):
                return Sent(self, conn)
        except StoreError:
            pass
        self._release(conn)
        return None

    def _release(self, conn: NativeConnection | None) -> None:
        if conn is not None:
            self._give_back(conn)
        self._gate.release()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._gate:
            conn = await self._take()
            try:
                return await conn.query(sql, params)
            finally:
                self._give_back(conn)

    async def _take(self) -> NativeConnection:
        if self._closed:
            raise StoreUnavailable("database unavailable: the store is closed")
        conn = self._take_idle()
        if conn is not None:
            return conn
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                return await self._connect()
        except trio.TooSlowError as exc:
            raise StoreUnavailable(
                f"database unavailable: no connection within {CONNECT_TIMEOUT_S:g}s"
            ) from exc

    def _take_idle(self) -> NativeConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
        return None

    async def _connect(self) -> NativeConnection:
        conninfo = await resolve_host(self._conninfo, self._shown)  # DNS off the event loop
        conn = await NativeConnection.open(conninfo, self._scrub, self._shown)
        self._connects += 1
        return conn

    def _give_back(self, conn: NativeConnection) -> None:
        if self._closed:
            conn.close()
        elif not conn.closed:
            self._idle.append(conn)

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def statistics(self) -> NativeStatistics:
        return NativeStatistics(
            size=self._size,
            waiting=self._gate.statistics().tasks_waiting,
            borrowed=self._size - self._gate.value,
            connects=self._connects,
        )


class Sent:
    """A statement `NativePool.send_now` sent: its connection is the caller's until `answer`
    returns (or is cancelled), which must be awaited once."""

    def __init__(self, pool: NativePool, conn: NativeConnection) -> None:
        self._pool, self._conn = pool, conn

    async def answer(self) -> list[Row]:
        try:
            return await self._conn.answer()
        finally:
            self._pool._release(self._conn)

    def abandon(self) -> None:
        """Instead of `answer`: the connection is closed (the statement's fate unknown)."""
        self._conn.close()
        self._pool._release(self._conn)


def _field(result: pq.abc.PGresult, field: pq.DiagnosticField) -> str:
    value = result.error_field(field)
    return value.decode(errors="replace") if value else ""


def _message(pgconn: pq.abc.PGconn) -> str:
    return _one_line(pgconn.error_message.decode(errors="replace")) or "connection failed"


def _one_line(text: str) -> str:
    return " ".join(text.split())  # libpq's messages span lines, indented with tabs


def _finish(pgconn: pq.abc.PGconn) -> None:
    with contextlib.suppress(psycopg.Error):  # no socket
        trio.lowlevel.notify_closing(pgconn.socket)
    pgconn.finish()
