"""What to do with one CONNECT, decided without I/O: parse the target, check the port, pick
MITM (a provider's host) or tunnel, read the proxy credential, judge a resolved address.

Everything here is a pure function of its inputs, so the rules are tested without sockets.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aibridged.errors import ProxyError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The reference's list (Coder's aibridgeproxyd), plus `::`: never tunnelled to unless allowed by
# CIDR. Linux connects the unspecified address to the loopback (as it does 0.0.0.0, already in).
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
    )
)
PROXY_REALM = 'Basic realm="aibridged proxy"'


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    host: str  # lower-case, no brackets around an IPv6 address, no trailing dot
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_connect_target(target: bytes) -> ConnectTarget:
    """`host:port` of a CONNECT request line; ProxyError(400) when it is not one."""
    text = target.decode("ascii", "replace")
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProxyError(400, "CONNECT needs a host:port target")
    if any(c in host for c in "/@ \t[]") or len(host) > 253:
        raise ProxyError(400, "CONNECT needs a host:port target")
    return ConnectTarget(host.lower().rstrip("."), int(port_text))


def proxy_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The password of `Proxy-Authorization: Basic` (the user name is ignored), or None."""
    for name, value in headers:
        if name.lower() != b"proxy-authorization":
            continue
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


@dataclass(frozen=True, slots=True)
class InterceptTable:
    """Host → provider name for the hosts decrypted right now (an atomic snapshot)."""

    hosts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0

    def provider_for(self, host: str) -> str | None:
        return self.hosts.get(host)


@dataclass(frozen=True, slots=True)
class Decision:
    mitm: bool
    provider: str = ""  # with mitm


def decide(target: ConnectTarget, table: InterceptTable, allowed_ports: Iterable[int]) -> Decision:
    """MITM for a provider's host, a tunnel for every other; ProxyError(403) for a port that
    is not allowed (checked first, as the reference does)."""
    if target.port not in allowed_ports:
        raise ProxyError(403, f"CONNECT to port {target.port} is not allowed")
    provider = table.provider_for(target.host)
    return Decision(True, provider) if provider is not None else Decision(False)


class DestinationPolicy:
    """Which resolved addresses a tunnel may connect to."""

    def __init__(self, allowed_cidrs: Iterable[str] = ()) -> None:
        self._allowed = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allowed_cidrs)

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(address in network for network in self._allowed):
            return True
        return not any(address in network for network in BLOCKED_NETWORKS)

    def usable(self, addresses: Iterable[str]) -> list[str]:
        """`addresses` (as resolved) that may be connected to, in order; ProxyError(403) when
        there are some and none may."""
        resolved = [ipaddress.ip_address(a.partition("%")[0]) for a in addresses]
        usable = [str(a) for a in resolved if self.permits(a)]
        if resolved and not usable:
            raise ProxyError(403, "destination is in a private or reserved address range")
        return usable
