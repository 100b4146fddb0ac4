"""The text of a dump: HTTP/1.1 as it went over the wire, made readable and safe to share.

- A request: `<METHOD> <target> HTTP/1.1`, its headers sorted by name, a blank line, the body
  (pretty-printed when it is JSON, key order kept; Content-Length then gives the printed
  length, so the file stays a consistent HTTP message), and a final newline.
- A response: `HTTP/1.1 <status> <reason>`, its headers sorted by name (Transfer-Encoding left
  out: the body is written de-chunked), a blank line; the body follows raw, as it arrived (SSE
  bytes untouched).

Credentials never reach a dump: the value of each sensitive header (`SENSITIVE_REQUEST`,
`SENSITIVE_RESPONSE`, and on requests any header whose name looks like it carries a secret) is
replaced by a masked hint (`Bearer sk-a...efgh`), the same hint the logs and records show.
"""

from __future__ import annotations

import contextlib
import re
from http import HTTPStatus

import orjson

from aibridged.safe import mask_secret

Headers = list[tuple[bytes, bytes]]

# As Coder's dumps, plus the governance headers (stripped before going upstream; listed so a
# change there can never leak one).
SENSITIVE_REQUEST = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"x-auth-token",
        b"cookie",
        b"proxy-authorization",
        b"x-amz-security-token",
        b"x-coder-ai-governance-token",
        b"x-coder-ai-governance-session-token",
    }
)
SENSITIVE_RESPONSE = frozenset({b"set-cookie", b"www-authenticate", b"proxy-authenticate"})
# Request headers a client or provider type may add with a secret in them (x-goog-api-key, ...).
# Not applied to responses: their x-ratelimit-*-tokens headers are counts worth reading.
_SECRET_NAME = re.compile(rb"auth|token|secret|passw|api-?key|cookie|credential", re.IGNORECASE)
# "Bearer abc", "AWS4-HMAC-SHA256 Credential=...": the scheme stays readable.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9._-]*) +(\S.*)", re.DOTALL)


def mask_header_value(value: str) -> str:
    """A masked hint of a credential header's value, keeping its auth scheme."""
    found = _SCHEME.fullmatch(value)
    if found is not None:
        return f"{found[1]} {mask_secret(found[2])}"
    return mask_secret(value)


def canonical_name(name: bytes) -> str:
    """`content-type` → `Content-Type`, as Go's dumps (and most HTTP tooling) print names."""
    text = name.decode("latin-1")
    return "-".join(part[:1].upper() + part[1:].lower() for part in text.split("-"))


def pretty_body(body: bytes) -> bytes:
    """`body` indented when it is JSON (key order kept), else unchanged; ends in a newline."""
    if not body:
        return body
    if body.lstrip()[:1] in (b"{", b"["):
        # Not JSON after all (or beyond what orjson reads): shown as it was sent.
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    return body if body.endswith(b"\n") else body + b"\n"


def render_request(method: str, target: bytes, headers: Headers, body: bytes) -> bytes:
    shown = pretty_body(body)
    overrides = {b"content-length": b"%d" % len(shown)}
    lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target)]
    lines += _header_lines(headers, SENSITIVE_REQUEST, by_pattern=True, overrides=overrides)
    lines.append(b"\r\n")
    lines.append(shown)
    return b"".join(lines)


def render_response_head(status: int, headers: Headers) -> bytes:
    # The body is dumped as read, de-chunked: a Transfer-Encoding line would misdescribe it.
    headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip().encode("ascii") + b"\r\n"]
    lines += _header_lines(headers, SENSITIVE_RESPONSE, by_pattern=False, overrides={})
    lines.append(b"\r\n")
    return b"".join(lines)


def is_sensitive(name: bytes, listed: frozenset[bytes], *, by_pattern: bool) -> bool:
    lower = name.lower()
    return lower in listed or (by_pattern and _SECRET_NAME.search(lower) is not None)


def _header_lines(
    headers: Headers,
    listed: frozenset[bytes],
    *,
    by_pattern: bool,
    overrides: dict[bytes, bytes],
) -> list[bytes]:
    lines = []
    for name, value in sorted(headers, key=lambda header: header[0].lower()):
        value = overrides.get(name.lower(), value)
        text = value.decode("latin-1")
        if is_sensitive(name, listed, by_pattern=by_pattern):
            text = mask_header_value(text)
        lines.append(f"{canonical_name(name)}: {text}\r\n".encode("latin-1", "replace"))
    return lines
