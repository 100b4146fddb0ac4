"""The proxy's view of the providers: which hosts are decrypted, for which provider.

Built from the stored providers on every reload (the shared reload loop) and swapped whole. Only
names, types, base URLs and the enabled flag are read: the proxy never opens a provider's keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from aibridged.providers.types import TYPES
from aibridged.proxy.connect import InterceptTable
from aibridged.store.providers import StoredProvider


@dataclass(frozen=True, slots=True)
class ProxiedProvider:
    name: str
    type: str
    status: str  # enabled (some host decrypted for it), disabled, proxy_excluded


@dataclass(frozen=True, slots=True)
class ProxySnapshot:
    table: InterceptTable
    providers: tuple[ProxiedProvider, ...]


def base_url_host(row: StoredProvider) -> str:
    """The host of a stored provider's base URL (its type's default when empty), or ""."""
    ptype = TYPES.get(row.type)
    url = row.base_url or (ptype.base_url_for(row.settings) if ptype is not None else "")
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return ""
    return (host or "").lower().rstrip(".")


def build_snapshot(
    rows: Iterable[StoredProvider], explicit: Mapping[str, str], version: int
) -> ProxySnapshot:
    """Hosts of enabled providers (the first by name wins a host claimed twice), plus the
    explicit `[proxy.intercept]` mapping for providers that exist and are enabled. A disabled
    provider's hosts are tunnelled, not decrypted."""
    ordered = sorted(rows, key=lambda row: row.name)
    enabled = {row.name for row in ordered if row.enabled}
    hosts: dict[str, str] = {host: name for host, name in explicit.items() if name in enabled}
    for row in ordered:
        host = base_url_host(row)
        if row.enabled and host and host not in hosts:
            hosts[host] = row.name
    claimed = set(hosts.values())
    providers = tuple(ProxiedProvider(row.name, row.type, _status(row, claimed)) for row in ordered)
    return ProxySnapshot(InterceptTable(MappingProxyType(hosts), version), providers)


def _status(row: StoredProvider, claimed: set[str]) -> str:
    if not row.enabled:
        return "disabled"
    return "enabled" if row.name in claimed else "proxy_excluded"
