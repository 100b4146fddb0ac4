"""The proxy's sans-IO decisions: CONNECT targets, ports, MITM or tunnel, the credential, the
private-range policy, the hosts decrypted per provider."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from aibridged.errors import ProxyError
from aibridged.proxy.connect import (
    ConnectTarget,
    DestinationPolicy,
    InterceptTable,
    decide,
    parse_connect_target,
    proxy_token,
)
from aibridged.proxy.hosts import build_snapshot
from aibridged.proxy.mitm import gateway_headers
from aibridged.store.providers import StoredProvider


def basic(user: str, password: str) -> tuple[bytes, bytes]:
    return (b"Proxy-Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))


def test_connect_targets_are_host_and_port_lower_cased_and_anything_else_is_a_400() -> None:
    assert parse_connect_target(b"API.Anthropic.com.:443") == ConnectTarget(
        "api.anthropic.com", 443
    )
    assert parse_connect_target(b"[::1]:8443") == ConnectTarget("::1", 8443)
    assert ConnectTarget("::1", 8443).authority == "[::1]:8443"
    for bad in (b"api.openai.com", b":443", b"host:0", b"host:70000", b"host:x", b"a/b:443",
                b"user@host:443"):  # fmt: skip
        with pytest.raises(ProxyError) as caught:
            parse_connect_target(bad)
        assert caught.value.status == 400, bad


def test_the_port_is_checked_before_the_host_and_provider_hosts_are_mitm() -> None:
    table = InterceptTable({"api.openai.com": "openai"})
    assert decide(ConnectTarget("api.openai.com", 443), table, (80, 443)).provider == "openai"
    assert not decide(ConnectTarget("example.com", 443), table, (80, 443)).mitm
    with pytest.raises(ProxyError) as caught:
        decide(ConnectTarget("api.openai.com", 22), table, (80, 443))
    assert caught.value.status == 403


def test_the_proxy_credential_is_the_basic_password_and_the_user_name_is_ignored() -> None:
    assert proxy_token([basic("anything", "aib_tok")]) == "aib_tok"
    assert proxy_token([basic("", "a:b")]) == "a:b"
    assert proxy_token([]) is None
    assert proxy_token([basic("user", "")]) is None
    assert proxy_token([(b"proxy-authorization", b"Bearer aib_tok")]) is None
    assert proxy_token([(b"proxy-authorization", b"Basic !!notbase64")]) is None


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "127.0.0.1", "169.254.169.254", "100.64.0.1", "192.168.1.1", "172.16.0.1",
     "0.0.0.0", "198.18.0.1", "240.0.0.1", "::", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1",
     "64:ff9b::a00:1", "2002::1"],
)  # fmt: skip
def test_private_and_reserved_destinations_are_refused_with_403(address: str) -> None:
    with pytest.raises(ProxyError) as caught:
        DestinationPolicy().usable([address])
    assert caught.value.status == 403


def test_allowed_cidrs_exempt_private_ranges_and_public_addresses_pass() -> None:
    assert DestinationPolicy().usable(["93.184.216.34", "2606:2800:220:1::1"]) == [
        "93.184.216.34", "2606:2800:220:1::1"]  # fmt: skip
    policy = DestinationPolicy(["127.0.0.0/8"])
    assert policy.usable(["127.0.0.1", "10.0.0.1"]) == ["127.0.0.1"]  # only the checked one
    with pytest.raises(ProxyError):
        policy.usable(["10.0.0.1"])


def _row(name: str, base_url: str, *, enabled: bool = True, type: str = "openai") -> StoredProvider:
    now = datetime.now(UTC)
    return StoredProvider(
        id=uuid.uuid4(), type=type, name=name, display_name=name, enabled=enabled,
        base_url=base_url, settings={}, secret_settings=None, source="api", created_at=now,
        updated_at=now,
    )  # fmt: skip


def test_hosts_come_from_enabled_providers_first_by_name_plus_the_explicit_mapping() -> None:
    rows = [
        _row("zeta", "https://relay.internal/v1"),
        _row("alpha", "https://relay.internal/openai"),
        _row("off", "https://off.example/v1", enabled=False),
        _row("anthropic", "", type="anthropic"),  # the type's default base URL
    ]
    explicit = {"api.openai.com": "zeta", "api.off.example": "off", "api.ghost": "missing"}
    snapshot = build_snapshot(rows, explicit, 7)
    assert dict(snapshot.table.hosts) == {
        "api.openai.com": "zeta",
        "relay.internal": "alpha",
        "api.anthropic.com": "anthropic",
    }
    assert snapshot.table.version == 7
    statuses = {p.name: p.status for p in snapshot.providers}
    assert statuses == {"alpha": "enabled", "anthropic": "enabled", "off": "disabled",
                        "zeta": "enabled"}  # fmt: skip
    lone = build_snapshot([_row("a", "https://h/v1"), _row("b", "https://h/v2")], {}, 1)
    assert {p.name: p.status for p in lone.providers} == {"a": "enabled", "b": "proxy_excluded"}


def test_gateway_headers_keep_the_client_key_and_add_the_governance_token_for_byok() -> None:
    client = [(b"host", b"api.openai.com"), (b"authorization", b"Bearer sk-own"),
              (b"proxy-authorization", b"Basic x"), (b"connection", b"keep-alive, x-hop"),
              (b"x-hop", b"1"), (b"x-coder-ai-governance-token", b"forged"),
              (b"content-length", b"2"), (b"content-type", b"application/json")]  # fmt: skip
    byok = gateway_headers(client, "aib_tok", "rid-1")
    assert byok == [
        (b"authorization", b"Bearer sk-own"),
        (b"content-type", b"application/json"),
        (b"x-coder-ai-governance-request-id", b"rid-1"),
        (b"x-coder-ai-governance-token", b"aib_tok"),
    ]
    same = gateway_headers([(b"x-api-key", b"aib_tok")], "aib_tok", "rid-2")
    assert same == [(b"x-api-key", b"aib_tok"), (b"x-coder-ai-governance-request-id", b"rid-2")]
    bearer = gateway_headers([(b"authorization", b"Bearer aib_tok")], "aib_tok", "rid-3")
    assert (b"x-coder-ai-governance-token", b"aib_tok") not in bearer
