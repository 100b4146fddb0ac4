"""Opening a provider's upstream answer: the attempts a provider type makes for one call.

Each attempt gets its credential from the provider type and is built by it (`ProviderFamily`), so
what varies by vendor stays with the vendor. Nothing reaches the client until an attempt has
succeeded; this is where key failover and the circuit breaker will decide whether to try again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aibridged.intercept.attempt import open_attempt
from aibridged.intercept.routes import UpstreamCall
from aibridged.intercept.upstream import ExchangeTap, UpstreamClient, UpstreamResponse
from aibridged.providers.family import Credential
from aibridged.providers.pool import Provider


@dataclass(slots=True)
class Attempts:
    """What the attempts of one call used, for the log line and the record."""

    count: int = 0
    credential: Credential | None = None  # of the last attempt


async def open_upstream(
    client: UpstreamClient,
    provider: Provider,
    call: UpstreamCall,
    attempts: Attempts,
    *,
    new_tap: Callable[[], ExchangeTap] | None = None,
) -> UpstreamResponse:
    """A successful upstream answer for `call`; raises the last attempt's `UpstreamError`.
    `new_tap` gives each attempt a tap of its own (API dumps: one pair of files each)."""
    family = provider.family
    credential = family.credential(provider, call)
    attempts.count += 1
    attempts.credential = credential
    request = family.build_request(provider, call, credential)
    if new_tap is not None:
        request.tap = new_tap()
    return await open_attempt(client, request, call.route.wire_format)
