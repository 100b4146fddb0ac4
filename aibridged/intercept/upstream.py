"""The upstream HTTP client (httpx2) and the translation of its errors.

httpx2 rather than httpx 0.28: same API, and httpx 0.28's pool scans every pooled connection on
each request, which measured as about half of a proxy's CPU (ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx2

from aibridged.errors import UpstreamConnectError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    connect_timeout_s: float = 10.0
    # Longest silence allowed between two bytes from the upstream (models pause to think).
    read_timeout_s: float = 600.0
    # Keep-alive connections kept per shard; concurrency itself is bounded by
    # ai_gateway.max_concurrency, not by the pool (thousands of streams may be open at once).
    max_keepalive_per_shard: int = 64
    keepalive_expiry_s: float = 90.0
    shards: int = 8


class UpstreamClients:
    """Several independent httpx2 clients, used in turn.

    httpcore2 probes the socket of every idle pooled connection (a `select` each) whenever a
    request is added to or leaves its pool. With one pool and 64 requests in flight that was
    ~15 % of the gateway's CPU (bench/results/2026-11-23-hotpath.md); spreading requests over a
    few pools keeps each scan short while connections are still reused.
    """

    def __init__(self, clients: list[httpx2.AsyncClient]) -> None:
        self._clients = clients
        self._next = 0

    def pick(self) -> httpx2.AsyncClient:
        client = self._clients[self._next]
        self._next = (self._next + 1) % len(self._clients)
        return client


@asynccontextmanager
async def open_upstream_clients(settings: UpstreamSettings) -> AsyncIterator[UpstreamClients]:
    timeout = httpx2.Timeout(
        connect=settings.connect_timeout_s,
        read=settings.read_timeout_s,
        write=settings.read_timeout_s,
        pool=None,  # waiting for a pool slot is bounded by max_concurrency, not by a timer
    )
    limits = httpx2.Limits(
        max_connections=None,
        max_keepalive_connections=settings.max_keepalive_per_shard,
        keepalive_expiry=settings.keepalive_expiry_s,
    )
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx2.AsyncClient(
                    timeout=timeout, limits=limits, follow_redirects=False, trust_env=False
                )
            )
            for _ in range(settings.shards)
        ]
        yield UpstreamClients(clients)


def translate(exc: httpx2.HTTPError) -> UpstreamTimeout | UpstreamConnectError:
    """One place where httpx2 errors become ours (the caller does `raise translate(e) from e`)."""
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeout(f"upstream timed out ({type(exc).__name__})")
    return UpstreamConnectError(f"upstream connection failed ({type(exc).__name__}: {exc})")
