"""The provider set: an immutable snapshot, swapped atomically (aibridged/reload.py).

A request looks its provider up once, at its start, and keeps that `Provider` object to the end, so
a swap never changes anything under a request or stream already in flight. Each provider has a
stable `id` and a `revision` (a digest of everything that configures it): per-provider runtime
state (key cooldowns, breakers) is keyed by both and survives a swap when the provider did not
change.

Building never raises for one bad provider: it gets status "error" with the reason, is left out of
serving, and the reason is logged once per change (`ProviderRegistry.swap`), not on every build.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import structlog

from aibridged.intercept.routes import Route
from aibridged.intercept.upstream import Origin
from aibridged.intercept.wire import WireFormat
from aibridged.providers.family import ProviderFamily
from aibridged.providers.types import TYPES, Keys, ProviderType

if TYPE_CHECKING:
    from aibridged.providers.bedrock.credentials import AwsCredentials

log = structlog.get_logger("aibridged.providers")

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Management endpoints share the /api/v2/aibridge/ prefix with provider routes:
# a provider by one of these names could never be reached.
RESERVED_NAMES = frozenset({"sessions", "interceptions", "models", "clients", "usage", "proxy"})
# Providers built without a database id (tests, tools) get ids derived from their names.
_NAME_NAMESPACE = uuid.UUID("6f1c2a64-8d1e-4d52-9a43-2b8b1c9f0e71")
_NO_SETTINGS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Provider:
    id: uuid.UUID
    revision: str
    name: str
    type: ProviderType
    base_url: str  # without a trailing slash
    keys: tuple[str, ...] = field(repr=False)
    enabled: bool = True
    error: str = ""  # non-empty: status "error", not served
    origin: Origin | None = field(default=None, repr=False)  # None only in status "error"
    display_name: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)  # the non-secret ones
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # secret settings
    source: str = "api"
    # A Bedrock provider's AWS credentials, kept fresh by the reload's credential cache
    # (providers/bedrock/credentials.py); None for every other type.
    aws_credentials: AwsCredentials | None = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> ProviderFamily:
        return self.type.family

    @property
    def wire_format(self) -> WireFormat:
        return self.type.wire_format

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "enabled" if self.enabled else "disabled"

    def route(self, method: str, path: str) -> Route | None:
        return self.family.route(method, path)


@dataclass(frozen=True, slots=True)
class ProviderSet:
    providers: Mapping[str, Provider]  # the servable ones (enabled or disabled) by name
    everything: tuple[Provider, ...] = ()  # every configured provider, those in error included
    version: int = 0

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.everything)


class ProviderRegistry:
    """Holds the current snapshot. Reads are a single attribute load; `swap` replaces it whole."""

    def __init__(self, initial: ProviderSet) -> None:
        self._current = ProviderSet({})
        self._reported: dict[uuid.UUID, tuple[str, str]] = {}
        self.swap(initial)

    @property
    def current(self) -> ProviderSet:
        return self._current

    def swap(self, new: ProviderSet) -> None:
        self._current = new
        self._report_errors(new)

    def _report_errors(self, providers: ProviderSet) -> None:
        """Log each provider's error once per change of the provider or of the error."""
        reported: dict[uuid.UUID, tuple[str, str]] = {}
        for provider in providers:
            if not provider.error:
                continue
            state = (provider.revision, provider.error)
            if self._reported.get(provider.id) != state:
                log.warning("provider.error", provider=provider.name, reason=provider.error)
            reported[provider.id] = state
        self._reported = reported


def build_provider(
    *,
    name: str,
    type_name: str,
    base_url: str,
    keys: tuple[str, ...],
    enabled: bool = True,
    id: uuid.UUID | None = None,
    problem: str = "",
    display_name: str = "",
    settings: Mapping[str, Any] = _NO_SETTINGS,
    secrets: Mapping[str, str] = _NO_SETTINGS,
    source: str = "api",
) -> Provider:
    """A provider; problems put it in status "error" (left out of serving) instead of raising."""
    ptype = TYPES.get(type_name)
    if ptype is None:
        raise ValueError(f"unknown provider type {type_name!r}")
    url = (base_url or ptype.base_url_for(settings)).rstrip("/")
    provider_id = id or uuid.uuid5(_NAME_NAMESPACE, name)
    origin, error = None, problem
    if error:
        pass  # the caller's reason comes first: it is why the rest may look wrong too
    elif not NAME_RE.fullmatch(name):
        error = f"invalid provider name {name!r}: use lowercase letters, digits and dashes"
    elif name in RESERVED_NAMES:
        error = f"provider name {name!r} is reserved for the management API"
    elif reason := ptype.family.settings_problem(provider_id, url, settings, secrets):
        error = reason
    elif not url:
        error = f"provider type {type_name} needs a base_url"
    elif ptype.keys is Keys.REQUIRED and not keys:
        error = f"provider type {type_name} needs an API key and this provider has none"
    if not error:
        error = _unusable_key(keys)
    if not error:
        try:
            origin = Origin.from_url(url)
        except ValueError as exc:
            error = str(exc)
    return Provider(
        id=provider_id,
        revision=_revision(name, type_name, url, keys, enabled, settings, secrets),
        name=name,
        type=ptype,
        base_url=url,
        keys=keys,
        enabled=enabled,
        error=error,
        origin=origin if not error else None,
        display_name=display_name or name,
        settings=MappingProxyType(dict(settings)),
        secrets=MappingProxyType(dict(secrets)),
        source=source,
    )


def _unusable_key(keys: tuple[str, ...]) -> str:
    """Why a key cannot go in a header (it would be refused, or split into two), or ""."""
    for index, key in enumerate(keys):
        if not key or not all("!" <= c <= "~" for c in key):
            return (
                f"key {index + 1} holds characters an HTTP header cannot carry"
                " (spaces, line breaks, non-ASCII)"
            )
    return ""


def _revision(
    name: str,
    type_name: str,
    url: str,
    keys: tuple[str, ...],
    enabled: bool,
    settings: Mapping[str, Any],
    secrets: Mapping[str, str],
) -> str:
    """A digest of everything that configures the provider (a change of any gives a new one)."""
    digest = hashlib.sha256()
    described = json.dumps([dict(settings), dict(secrets)], sort_keys=True)
    for part in (name, type_name, url, str(enabled), described, *keys):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def provider_set(providers: Iterable[Provider], version: int = 0) -> ProviderSet:
    """The snapshot of `providers`; a second provider of the same name gets status "error"."""
    servable: dict[str, Provider] = {}
    everything: list[Provider] = []
    names: set[str] = set()
    for provider in providers:
        if provider.name in names and not provider.error:
            provider = replace(provider, error=f"duplicate provider name {provider.name!r}")
        names.add(provider.name)
        everything.append(provider)
        if not provider.error:
            servable[provider.name] = provider
    return ProviderSet(servable, tuple(everything), version)
