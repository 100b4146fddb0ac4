"""Error bodies in each wire format's own shape, so SDKs surface our errors like the provider's."""

from __future__ import annotations

import json

from aibridged.intercept.wire import WireFormat

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    501: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    501: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


def error_type_for(fmt: WireFormat, status: int) -> str:
    if fmt is WireFormat.ANTHROPIC:
        return _ANTHROPIC_TYPES.get(status, "api_error")
    return _OPENAI_TYPES.get(status, "server_error")


def error_body(fmt: WireFormat, status: int, message: str, code: str | None = None) -> bytes:
    kind = error_type_for(fmt, status)
    if fmt is WireFormat.ANTHROPIC:
        payload: dict[str, object] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(payload).encode()


def looks_like_provider_error(fmt: WireFormat, body: bytes) -> bool:
    """True when an upstream error body is already JSON in `fmt`'s error shape."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return False
    return fmt is WireFormat.OPENAI or parsed.get("type") == "error"
