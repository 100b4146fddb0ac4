"""The database handle: asyncpg inside trio-asyncio, behind a fair FIFO gate.

This package is the only place in the tree that runs asyncio code. Callers hand `Store.run` an
asyncio-flavoured function taking a connection; it runs on the trio-asyncio loop while the calling
trio task waits, so SQL stays here and the rest of the daemon stays pure trio.

Measured pitfalls (docs/architecture.md):
- asyncpg arms a timer on every pool release when `max_inactive_connection_lifetime` > 0, and
  trio-asyncio keeps cancelled timers until they would have fired: memory and GC stalls grow under
  load. The pool is created with that lifetime at 0 and no asyncpg `timeout=` is ever passed
  (deadlines are `trio.fail_after` around the call).
- asyncpg's pool acquisition is unfair under trio-asyncio; a FIFO `trio.Semaphore(pool_size)`
  in front of it keeps the tail latency bounded.

Each consumer of the database (token lookups, the recorder, the sweeper, the management API) runs
through a `StoreBudget`: a FIFO gate of its own, sized to its share of the pool, in front of the
shared one. A flood of one kind of work then queues behind its own gate and cannot take every
connection from the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import trio
import trio_asyncio

from aibridged.errors import Conflict, StoreError, StoreRejectedValue, StoreUnavailable
from aibridged.store.conninfo import native_conninfo, secret_scrubber
from aibridged.store.native import NativePool

P = ParamSpec("P")
T = TypeVar("T")

Connection = Any  # asyncpg.Connection; asyncpg ships no type information


class Runner(Protocol):
    """What query functions need: a `Store` or one consumer's `StoreBudget`."""

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    pool_size: int
    waiting: int
    borrowed: int


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    name: str
    size: int
    waiting: int
    borrowed: int


class Store:
    """A pool of connections usable from trio tasks."""

    def __init__(self, loop: Any, pool: Any, pool_size: int, dsn: str, dsn_for_humans: str) -> None:
        self._loop = loop
        self._pool = pool
        self._gate = trio.Semaphore(pool_size)
        self._pool_size = pool_size
        self._dsn = dsn
        self.dsn_for_humans = dsn_for_humans
        # Health checks use a connection of their own, outside the gate: a long queue of
        # requests must not look like a dead database (and make the daemon exit).
        self._probe: Any = None
        self._probe_lock = trio.Lock()
        self._side_pools: list[Dedicated] = []
        self._native_pools: list[NativePool] = []

    @property
    def loop(self) -> Any:
        """The trio-asyncio loop (tests count its pending timers)."""
        return self._loop

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run an asyncio-flavoured coroutine function, translating asyncpg's errors once."""
        try:
            result: T = await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args, **kwargs)
            return result
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(exc.detail or str(exc)) from exc
        except (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        except (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError) as exc:
            raise StoreRejectedValue(f"value not storable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run the asyncio-flavoured `fn(conn, *args)` with a pooled connection."""
        async with self._gate:
            return await self._call(_with_connection, self._pool, fn, *args, **kwargs)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an asyncio-flavoured call (on a connection from `connect`), errors translated."""
        return await self._call(fn, *args)

    async def connect(self) -> Connection:
        """A connection of its own, outside the pool (LISTEN needs one); the caller closes it."""
        return await self._call(asyncpg.connect, self._dsn)

    async def ping(self) -> None:
        """Ask the database for an answer over the dedicated probe connection."""
        async with self._probe_lock:
            if self._probe is None or self._probe.is_closed():
                self._probe = await self._call(asyncpg.connect, self._dsn)
            try:
                await self._call(_ping, self._probe)
            except StoreError:
                await self._close_probe()
                raise

    async def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None and not probe.is_closed():
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._call(probe.close)

    async def side_pool(self, size: int, settings: dict[str, str]) -> Runner:
        """`size` connections of their own, with these session settings (the recorder's commits
        need not wait for the disk: `synchronous_commit = off`), closed with the store.

        Each connection is held between calls (`Dedicated`): no pool acquire and release per
        call, and no reset query (asyncpg's release sends one, a round trip: ~0.3 ms a call)."""
        pool = await self._call(_create_pool, self._dsn, size, settings)
        side = Dedicated(self, pool, size)
        self._side_pools.append(side)
        return side

    async def native_pool(
        self, size: int, settings: dict[str, str], *, application_name: str
    ) -> NativePool:
        """`size` trio-native libpq connections of their own (store/native.py: no trio-asyncio
        between the caller and the socket), named `application_name`, with these session
        settings; connected now, closed with the store."""
        try:
            conninfo = native_conninfo(self._dsn, application_name, settings)
        except ValueError as exc:
            raise StoreUnavailable(f"invalid database url {self.dsn_for_humans}") from exc
        pool = NativePool(conninfo, size, secret_scrubber(conninfo), shown=self.dsn_for_humans)
        try:
            await pool.open()
        except trio.TooSlowError as exc:
            pool.close()
            raise StoreUnavailable(
                f"cannot connect to database {self.dsn_for_humans}: no answer in time"
            ) from exc
        except BaseException:
            pool.close()
            raise
        self._native_pools.append(pool)
        return pool

    async def _close_side_pools(self) -> None:
        for native in self._native_pools:
            native.close()
        self._native_pools.clear()
        for side in self._side_pools:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await side.close()
        self._side_pools.clear()

    def budget(self, name: str, size: int) -> StoreBudget:
        """A share of `size` connections (at most the pool) for one consumer."""
        return StoreBudget(self, name, max(1, min(size, self._pool_size)))

    @property
    def pool_size(self) -> int:
        return self._pool_size

    def statistics(self) -> StoreStatistics:
        waiting = self._gate.statistics().tasks_waiting
        return StoreStatistics(
            pool_size=self._pool_size,
            waiting=waiting,
            borrowed=self._pool_size - self._gate.value,
        )


class StoreBudget:
    """One consumer's share of the pool; `run` is `Store.run` behind this consumer's own gate."""

    def __init__(self, store: Store, name: str, size: int) -> None:
        self._store = store
        self._gate = trio.Semaphore(size)
        self.name = name
        self.size = size

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with self._gate:
            return await self._store.run(fn, *args, **kwargs)

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(
            name=self.name,
            size=self.size,
            waiting=self._gate.statistics().tasks_waiting,
            borrowed=self.size - self._gate.value,
        )


class Dedicated:
    """Connections of one consumer's own, each held between calls: `run` takes an idle one (or
    one from the pool, the first time or after a failure) and keeps it when the call succeeded.
    A call that failed or was cancelled gives its connection back to the pool (reset there, or
    closed if broken), so the next call starts on a clean one."""

    def __init__(self, store: Store, pool: Any, size: int) -> None:
        self._store, self._pool = store, pool
        self._gate = trio.Semaphore(size)
        self._idle: list[Connection] = []
        self.size = size

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with self._gate:
            conn = self._idle.pop() if self._idle else await self._store.call(_acquire, self._pool)
            try:
                result = await self._store.call(fn, conn, *args, **kwargs)
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._release(conn)
                raise
            self._idle.append(conn)
            return result

    async def _release(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):  # broken: the pool has already dropped it
            await self._store.call(self._pool.release, conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._release(conn)
        await trio_asyncio.aio_as_trio(self._pool.close, loop=self._store.loop)()


async def _acquire(pool: Any) -> Connection:
    return await pool.acquire()


async def _with_connection(pool: Any, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    async with pool.acquire() as conn:
        return await fn(conn, *args, **kw)


async def _ping(conn: Connection) -> None:
    await conn.fetchval("SELECT 1")


_SECRET_QUERY_KEYS = frozenset({"password", "passfile", "sslpassword", "sslkey"})


def redact_dsn(dsn: str) -> str:
    """The DSN without any password (userinfo or query parameter), for messages and logs."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable database url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")  # a password may itself contain '@'
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = "&".join(
        f"{key}=***" if key.lower() in _SECRET_QUERY_KEYS else f"{key}={value}" if value else key
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@asynccontextmanager
async def open_store(dsn: str, *, pool_size: int, connect_timeout_s: float) -> AsyncIterator[Store]:
    """Open a trio-asyncio loop and an asyncpg pool; fail fast when the server is unreachable."""
    shown = redact_dsn(dsn)
    try:
        async with trio_asyncio.open_loop() as loop:
            try:
                with trio.fail_after(connect_timeout_s):
                    pool = await trio_asyncio.aio_as_trio(_create_pool, loop=loop)(dsn, pool_size)
            except trio.TooSlowError as exc:
                raise StoreUnavailable(
                    f"cannot connect to database {shown}: no answer within {connect_timeout_s:g}s"
                ) from exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreUnavailable(
                    f"cannot connect to database {shown}: {_describe(exc)}"
                ) from exc
            except ValueError as exc:  # asyncpg's DSN parser
                raise StoreUnavailable(f"invalid database url {shown}: {exc}") from exc
            store = Store(loop, pool, pool_size, dsn, shown)
            try:
                yield store
            finally:
                await store._close_probe()
                await store._close_side_pools()
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await trio_asyncio.aio_as_trio(pool.close, loop=loop)()
    except BaseExceptionGroup as group:
        # open_loop runs a nursery, which wraps whatever crosses it; callers want the error itself.
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from sole.__cause__


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside (possibly nested) single-member groups, else None."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        if len(inner.exceptions) != 1:
            return None
        inner = inner.exceptions[0]
    return inner


async def _create_pool(dsn: str, pool_size: int, settings: dict[str, str] | None = None) -> Any:
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=pool_size,
        max_inactive_connection_lifetime=0,
        server_settings=settings,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip()
    return text or type(exc).__name__
