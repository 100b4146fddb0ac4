"""The provider set: an immutable snapshot, swapped atomically.

A request looks its provider up once, at its start, and keeps that `Provider` object to the end, so
a swap never changes anything under a request or stream already in flight.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from aibridged.config import ProviderSeed
from aibridged.intercept.wire import WireFormat
from aibridged.providers.types import TYPES, ProviderType

log = structlog.get_logger("aibridged.providers")

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Management endpoints share the /api/v2/aibridge/ prefix with provider routes (SPEC §8, §11):
# a provider by one of these names could never be reached.
RESERVED_NAMES = frozenset({"sessions", "interceptions", "models", "clients", "proxy"})


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: ProviderType
    base_url: str  # without a trailing slash
    keys: tuple[str, ...] = field(repr=False)
    enabled: bool = True
    error: str = ""  # non-empty: status "error", not served

    @property
    def wire_format(self) -> WireFormat:
        return self.type.wire_format

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "enabled" if self.enabled else "disabled"

    @property
    def key(self) -> str:
        """The centralized credential (key failover across several keys is a later feature)."""
        return self.keys[0] if self.keys else ""


@dataclass(frozen=True, slots=True)
class ProviderSet:
    providers: Mapping[str, Provider]
    version: int = 0

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.providers.values())


class ProviderRegistry:
    """Holds the current snapshot. Reads are a single attribute load; `swap` replaces it whole."""

    def __init__(self, initial: ProviderSet) -> None:
        self._current = initial

    @property
    def current(self) -> ProviderSet:
        return self._current

    def swap(self, new: ProviderSet) -> None:
        self._current = new


def build_provider(
    *, name: str, type_name: str, base_url: str, keys: tuple[str, ...], enabled: bool = True
) -> Provider:
    """A provider; problems put it in status "error" (left out of serving) instead of raising."""
    ptype = TYPES.get(type_name)
    if ptype is None:
        raise ValueError(f"unknown provider type {type_name!r}")
    if not NAME_RE.match(name):
        raise ValueError(f"invalid provider name {name!r}")
    url = (base_url or ptype.default_base_url).rstrip("/")
    error = ""
    if name in RESERVED_NAMES:
        error = f"provider name {name!r} is reserved for the management API"
    elif not ptype.supported:
        error = ptype.why_unsupported
    elif not url:
        error = f"provider type {type_name} needs a base_url"
    elif not url.startswith(("http://", "https://")):
        error = f"base_url {url!r} must be an http(s) URL"
    return Provider(name=name, type=ptype, base_url=url, keys=keys, enabled=enabled, error=error)


def provider_from_seed(seed: ProviderSeed, environ: Mapping[str, str] | None = None) -> Provider:
    env = os.environ if environ is None else environ
    keys = list(seed.keys)
    problem = ""
    if seed.key_env:
        value = env.get(seed.key_env, "").strip()
        if value:
            keys.append(value)
        else:
            problem = f"environment variable {seed.key_env} (key_env) is not set"
    if seed.key_file:
        try:
            keys.extend(k for k in Path(seed.key_file).read_text().split() if k)
        except OSError as exc:
            problem = f"cannot read key_file {seed.key_file}: {exc.strerror}"
    provider = build_provider(
        name=seed.name,
        type_name=seed.type,
        base_url=seed.base_url,
        keys=tuple(keys),
        enabled=seed.enabled,
    )
    if problem and not provider.error:
        provider = Provider(
            name=provider.name,
            type=provider.type,
            base_url=provider.base_url,
            keys=provider.keys,
            enabled=provider.enabled,
            error=problem,
        )
    return provider


def provider_set(providers: Iterable[Provider], version: int = 0) -> ProviderSet:
    by_name: dict[str, Provider] = {}
    for provider in providers:
        if provider.name in by_name:
            raise ValueError(f"duplicate provider name {provider.name!r}")
        by_name[provider.name] = provider
        if provider.error:
            log.warning("provider.error", provider=provider.name, reason=provider.error)
    return ProviderSet(by_name, version)
