"""Bedrock's errors in Anthropic's shapes, so the Anthropic SDKs raise them as their own.

Bedrock answers an error with its HTTP status, `x-amzn-ErrorType: <Name>:<namespace>` and a
body `{"message": "..."}` (`Message` in some services' spelling); mid-stream, with an exception
message (`:message-type: exception`, `:exception-type: throttlingException`, payload
`{"message": ...}`). Each is mapped by the exception's name to the status and error type the
Anthropic API would use for the same problem; unknown names keep Bedrock's status. A body that
is already Anthropic's (Mantle speaks the Messages API natively) is kept as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aibridged.intercept.shapes import error_type_for, looks_like_provider_error
from aibridged.intercept.wire import WireFormat

_MAX_MESSAGE_CHARS = 1000

# Exception name → (status, Anthropic error type). The names are Bedrock runtime's (and the
# SigV4 front door's, for refused credentials).
_EXCEPTIONS: dict[str, tuple[int, str]] = {
    "validationexception": (400, "invalid_request_error"),
    "accessdeniedexception": (403, "permission_error"),
    "unrecognizedclientexception": (403, "permission_error"),
    "invalidsignatureexception": (403, "permission_error"),
    "incompletesignatureexception": (403, "permission_error"),
    "missingauthenticationtokenexception": (403, "permission_error"),
    "expiredtokenexception": (403, "permission_error"),
    "resourcenotfoundexception": (404, "not_found_error"),
    "throttlingexception": (429, "rate_limit_error"),
    "servicequotaexceededexception": (429, "rate_limit_error"),
    "modelnotreadyexception": (429, "rate_limit_error"),
    "modeltimeoutexception": (504, "timeout_error"),
    "modelerrorexception": (500, "api_error"),
    "modelstreamerrorexception": (500, "api_error"),
    "internalserverexception": (500, "api_error"),
    "serviceunavailableexception": (503, "overloaded_error"),
}


def anthropic_error(error_type: str, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": error_type, "message": message}}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def shape_error(
    status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """The status and Anthropic-shaped body the client gets for a Bedrock error answer."""
    if looks_like_provider_error(WireFormat.ANTHROPIC, body):
        return status, body
    name = _error_name(headers, body)
    status, kind = _EXCEPTIONS.get(name.lower(), (status, ""))
    kind = kind or error_type_for(WireFormat.ANTHROPIC, status)
    message = _message_of(body) or (f"Bedrock answered {status}" + (f" ({name})" if name else ""))
    return status, anthropic_error(kind, message)


def stream_exception(name: str, payload: bytes) -> bytes:
    """The `data` of the Anthropic `error` event for a mid-stream Bedrock exception."""
    _, kind = _EXCEPTIONS.get(name.lower(), (500, "api_error"))
    message = _message_of(payload) or f"Bedrock stream failed ({name or 'unknown exception'})"
    return anthropic_error(kind, message)


def _error_name(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> str:
    for key, value in headers:
        if key.lower() == b"x-amzn-errortype":
            return value.decode("latin-1").split(":", 1)[0].strip()
    parsed = _json_object(body)
    name = parsed.get("__type") if parsed else None  # "com.amazon...#ThrottlingException"
    return name.rsplit("#", 1)[-1] if isinstance(name, str) else ""


def _message_of(body: bytes) -> str:
    parsed = _json_object(body)
    message = None
    if parsed is not None:
        message = parsed.get("message", parsed.get("Message"))
    if not isinstance(message, str):
        message = body.decode("utf-8", "replace").strip() if parsed is None else ""
    return message[:_MAX_MESSAGE_CHARS]


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
