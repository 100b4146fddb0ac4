"""Each Bedrock provider's AWS credentials: resolved off the event loop, refreshed before expiry.

A request signs with the keys its provider's `AwsCredentials` holds at that moment; it never
waits for, or causes, a lookup. `AwsCredentialCache.prepare` runs as part of every provider
reload: a provider revision it has not seen gets a holder, and new holders are resolved right
then, in worker threads, for at most `prepare_timeout_s` (a slow metadata service delays the
reload by that much, never a request). `run_refresher` then keeps every holder fresh:
temporary credentials (AssumeRole, SSO, instance roles) are asked for again `REFRESH_MARGIN_S`
before they expire, chains whose credentials botocore refreshes are asked every
`RECHECK_S` (botocore renews them inside its own window), and a failure is retried with capped
backoff while the keys still valid keep being used.

Holders are keyed by the provider's id and revision: a reload that does not change a provider
keeps its credentials; a change of its settings starts over.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog
import trio

from aibridged.errors import CredentialError
from aibridged.providers.bedrock.settings import BedrockSettings, bedrock_settings
from aibridged.providers.bedrock.signing import AwsKeys
from aibridged.providers.bedrock.sources import Resolved, Source, source_for
from aibridged.providers.pool import Provider, ProviderSet

log = structlog.get_logger("aibridged.providers.bedrock")

PREPARE_TIMEOUT_S = 5.0
REFRESH_TIMEOUT_S = 30.0
REFRESH_MARGIN_S = 15 * 60.0  # ask for new temporary credentials this long before expiry
RECHECK_S = 5 * 60.0
RETRY_S = 5.0
MAX_RETRY_S = 5 * 60.0
_SESSION_NAME_CHARS = 64  # STS RoleSessionName limit

RunSync = Callable[[Source], Awaitable[Resolved]]
SourceFor = Callable[[BedrockSettings, str], Source]  # settings, STS session name


async def _in_thread(source: Source) -> Resolved:
    # A call that outlives its timeout is abandoned (its result is dropped); the source's own
    # lock keeps a second call from running alongside it.
    return await trio.to_thread.run_sync(source, abandon_on_cancel=True)


@dataclass(frozen=True, slots=True)
class CredentialStatistics:
    providers: int
    resolved: int
    failures: int  # failed lookups since start


class AwsCredentials:
    """One provider revision's credentials: the keys to sign with now, or why there are none."""

    def __init__(self, provider: str, source: Source, *, wall: Callable[[], float]) -> None:
        self.provider = provider
        self._source = source
        self._wall = wall
        self._keys: AwsKeys | None = None
        self.error = "AWS credentials are not resolved yet"
        self.next_refresh = -math.inf  # trio time; due at once
        self.failures = 0
        self._lock = trio.Lock()

    def current(self) -> AwsKeys | None:
        """The keys to sign with, None when there are none that are still valid."""
        keys = self._keys
        if keys is None or (keys.expires_at is not None and keys.expires_at <= self._wall()):
            return None
        return keys

    async def refresh(self, run_sync: RunSync, timeout_s: float) -> None:
        """Ask the source again, if that is still due once no other lookup is running."""
        async with self._lock:
            if self.next_refresh > trio.current_time():
                return  # another task refreshed it while this one waited
            try:
                with trio.fail_after(timeout_s):
                    resolved = await run_sync(self._source)
            except (CredentialError, trio.TooSlowError) as exc:
                self._failed(str(exc) or f"no answer within {timeout_s:g}s")
                return
            self._keys, self.error, self.failures = resolved.keys, "", 0
            self.next_refresh = trio.current_time() + self._refresh_in(resolved)
            expires_in = None
            if resolved.keys.expires_at is not None:
                expires_in = round(resolved.keys.expires_at - self._wall())
            log.info("bedrock.credentials_resolved", provider=self.provider,
                     access_key=resolved.keys.hint, expires_in_s=expires_in)  # fmt: skip

    def _refresh_in(self, resolved: Resolved) -> float:
        expires_at = resolved.keys.expires_at
        if expires_at is not None:
            remaining = expires_at - self._wall()
            # Short-lived credentials (under twice the margin) are renewed halfway through.
            return max(RETRY_S, remaining - REFRESH_MARGIN_S, remaining / 2)
        return RECHECK_S if resolved.changing else math.inf

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.error = reason
        retry_in = min(RETRY_S * 2 ** (self.failures - 1), MAX_RETRY_S)
        self.next_refresh = trio.current_time() + retry_in
        log.warning("bedrock.credentials_failed", provider=self.provider, error=reason,
                    retry_in_s=retry_in, still_signing=self.current() is not None)  # fmt: skip


class AwsCredentialCache:
    """The holders of every served Bedrock provider, and the task that keeps them fresh."""

    def __init__(
        self,
        *,
        run_sync: RunSync = _in_thread,
        wall: Callable[[], float] = time.time,
        sources: SourceFor = source_for,
        prepare_timeout_s: float = PREPARE_TIMEOUT_S,
        refresh_timeout_s: float = REFRESH_TIMEOUT_S,
    ) -> None:
        self._run_sync = run_sync
        self._wall = wall
        self._sources = sources
        self._prepare_timeout_s = prepare_timeout_s
        self._refresh_timeout_s = refresh_timeout_s
        self._holders: dict[tuple[uuid.UUID, str], AwsCredentials] = {}
        self._wakeup = trio.Event()
        self._failures = 0

    async def prepare(self, providers: ProviderSet) -> ProviderSet:
        """`providers` with a holder on each servable Bedrock provider; new holders are
        resolved now, within the prepare timeout (the refresher retries what is left)."""
        holders: dict[tuple[uuid.UUID, str], AwsCredentials] = {}
        attached: dict[uuid.UUID, Provider] = {}
        for provider in providers:
            if provider.type.name != "bedrock" or provider.error or not provider.enabled:
                continue
            key = (provider.id, provider.revision)
            holder = self._holders.get(key) or self._new_holder(provider)
            holders[key] = holder
            attached[provider.id] = replace(provider, aws_credentials=holder)
        fresh = [h for k, h in holders.items() if k not in self._holders]
        self._holders = holders  # providers gone or changed drop their holders here
        if fresh:
            with trio.move_on_after(self._prepare_timeout_s):
                async with trio.open_nursery() as nursery:
                    for holder in fresh:
                        nursery.start_soon(self._refresh, holder)
            self._wakeup.set()
        return _with(providers, attached)

    def _new_holder(self, provider: Provider) -> AwsCredentials:
        settings = bedrock_settings(provider.id, provider.base_url, provider.settings,
                                    provider.secrets)  # fmt: skip
        session_name = f"aibridged-{provider.name}"[:_SESSION_NAME_CHARS]
        return AwsCredentials(provider.name, self._sources(settings, session_name), wall=self._wall)

    async def _refresh(self, holder: AwsCredentials) -> None:
        failures = holder.failures
        await holder.refresh(self._run_sync, self._refresh_timeout_s)
        if holder.failures > failures:
            self._failures += 1

    async def run_refresher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Refresh each holder when it is due; runs until cancelled."""
        task_status.started()
        while True:
            now = trio.current_time()
            due = [h for h in self._holders.values() if h.next_refresh <= now]
            async with trio.open_nursery() as nursery:
                for holder in due:
                    nursery.start_soon(self._refresh, holder)
            upcoming = min((h.next_refresh for h in self._holders.values()), default=math.inf)
            with trio.move_on_at(upcoming):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def statistics(self) -> CredentialStatistics:
        resolved = sum(h.current() is not None for h in self._holders.values())
        return CredentialStatistics(len(self._holders), resolved, self._failures)


def _with(providers: ProviderSet, attached: dict[uuid.UUID, Provider]) -> ProviderSet:
    if not attached:
        return providers
    everything = tuple(attached.get(p.id, p) for p in providers)
    servable = {name: attached.get(p.id, p) for name, p in providers.providers.items()}
    return ProviderSet(servable, everything, providers.version)
