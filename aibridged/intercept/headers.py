"""Which request headers go upstream and which come back, as in Coder's AI Gateway."""

from __future__ import annotations

from collections.abc import Iterable

# Hop-by-hop (RFC 9110 §7.6.1) plus what the transport sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_TRANSPORT = frozenset({b"host", b"accept-encoding", b"content-length"})
# No provider API needs the client's cookies, and they may hold the gateway's session.
_CLIENT_STATE = frozenset({b"cookie"})
_FORWARDING = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"forwarded",
    }
)
_GATEWAY = frozenset(
    {
        b"x-coder-ai-governance-token",
        b"x-coder-ai-governance-request-id",
        b"x-coder-token",
        b"coder-session-token",
        b"x-coder-agent-firewall-session-id",
        b"x-coder-agent-firewall-sequence-number",
    }
)
CLIENT_AUTH = frozenset({b"authorization", b"x-api-key"})
ALWAYS_DROPPED = HOP_BY_HOP | _TRANSPORT | _FORWARDING | _GATEWAY | _CLIENT_STATE
IDENTITY_ENCODING = (b"accept-encoding", b"identity")  # relay bytes as they are, never re-encode

# Response headers we must not copy: the ASGI server frames the body itself.
_RESPONSE_DROPPED = HOP_BY_HOP | frozenset({b"server", b"date"})


def forwarded_headers(
    client_headers: Iterable[tuple[bytes, bytes]],
    *,
    keep_client_auth: bool,
    gateway_token: bytes,
) -> list[tuple[bytes, bytes]]:
    """The client's headers that may go upstream: minus hop-by-hop, transport, forwarding,
    gateway and cookie headers, minus the client's auth unless it is its own key (BYOK), and
    minus any header holding the gateway token, whichever header the client put it in. The
    provider's credential is added per attempt by the provider type."""
    connection_named: set[bytes] = set()
    out: list[tuple[bytes, bytes]] = []
    pairs = list(client_headers)
    for name, value in pairs:
        if name == b"connection":
            connection_named.update(t.strip().lower() for t in value.split(b","))
    for name, value in pairs:
        if name in ALWAYS_DROPPED or name in connection_named:
            continue
        if name in CLIENT_AUTH and not keep_client_auth:
            continue
        if gateway_token and gateway_token in value:
            continue
        out.append((name, value))
    return out


def is_json_media(media_type: str) -> bool:
    """True for `application/json` and any `+json` type (media type only, lower-case)."""
    return media_type == "application/json" or media_type.endswith("+json")


def stream_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Streams must not be buffered by a proxy in front of us (nginx honours this header)."""
    if not any(name == b"x-accel-buffering" for name, _ in headers):
        headers.append((b"x-accel-buffering", b"no"))
    return headers


def client_response_headers(
    upstream: Iterable[tuple[bytes, bytes]], *, keep_length: bool = False
) -> list[tuple[bytes, bytes]]:
    """Upstream response headers for the client. `keep_length`: the body is relayed exactly as
    received, so the upstream's Content-Length stays true (and the response needs no chunking)."""
    return [
        (n.lower(), v)
        for n, v in upstream
        if n.lower() not in _RESPONSE_DROPPED and (keep_length or n.lower() != b"content-length")
    ]
