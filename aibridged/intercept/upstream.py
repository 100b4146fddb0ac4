"""The upstream HTTP client (httpx2) and the translation of its errors.

httpx2 rather than httpx 0.28: same API, and httpx 0.28's pool scans every pooled connection on
each request, which measured as about half of a proxy's CPU (ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2

from aibridged.errors import UpstreamConnectError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    connect_timeout_s: float = 10.0
    # Longest silence allowed between two bytes from the upstream (models pause to think).
    read_timeout_s: float = 600.0
    max_connections: int = 1000
    max_keepalive_connections: int = 200
    keepalive_expiry_s: float = 90.0


@asynccontextmanager
async def open_upstream_client(settings: UpstreamSettings) -> AsyncIterator[httpx2.AsyncClient]:
    timeout = httpx2.Timeout(
        connect=settings.connect_timeout_s,
        read=settings.read_timeout_s,
        write=settings.read_timeout_s,
        pool=settings.connect_timeout_s,
    )
    limits = httpx2.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry_s,
    )
    async with httpx2.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, trust_env=False
    ) as client:
        yield client


def translate(exc: httpx2.HTTPError) -> UpstreamTimeout | UpstreamConnectError:
    """One place where httpx2 errors become ours (the caller does `raise translate(e) from e`)."""
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeout(f"upstream timed out ({type(exc).__name__})")
    return UpstreamConnectError(f"upstream connection failed ({type(exc).__name__}: {exc})")
