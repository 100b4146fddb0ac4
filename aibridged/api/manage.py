"""The management API's common ground: who is calling, which role it has, and the error shape.

Every route takes a gateway token in `Authorization: Bearer` or `Coder-Session-Token`, checked
through the same token cache as the data plane (revocation and suspension apply within its TTL).
Errors are `{"message", "detail", "validations": [{"field", "detail"}]}` (docs/management-api.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from quart import Response, request
from quart_trio import QuartTrio

from aibridged.auth import Principal, TokenCache
from aibridged.errors import (
    AuthError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SecretsError,
    StoreError,
    StoreRejectedValue,
    StoreUnavailable,
)
from aibridged.store.db import Runner

log = structlog.get_logger("aibridged.api")

ADMIN_ROLES = frozenset({"owner", "admin"})


@dataclass(frozen=True, slots=True)
class Management:
    """What the management routes need."""

    tokens: TokenCache
    store: Runner  # the management API's own share of the pool


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


def error_response(
    status: int, message: str, detail: str = "", validations: list[tuple[str, str]] | None = None
) -> Response:
    entries = [{"field": field, "detail": text} for field, text in validations or []]
    return json_response({"message": message, "detail": detail, "validations": entries}, status)


async def caller(management: Management) -> Principal:
    """The authenticated caller of the current request; AuthError otherwise."""
    token = request.headers.get("Coder-Session-Token", "").strip()
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    if not token:
        raise AuthError("no token")
    return await management.tokens.verify(token)


async def admin(management: Management) -> Principal:
    """The caller, who must be an owner or an admin."""
    principal = await caller(management)
    if principal.role not in ADMIN_ROLES:
        raise PermissionDenied("this needs the owner or admin role")
    return principal


async def json_body() -> Any:
    data = await request.get_data(cache=False)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("the body is not JSON", [("", str(exc))]) from exc


Handler = Callable[..., Awaitable[Response]]


def add_management_errors(app: QuartTrio) -> None:
    """Map the error tree onto the API's statuses and shape, once for every route."""

    @app.errorhandler(InvalidInput)
    async def invalid(error: InvalidInput) -> Response:
        count = len(error.validations)
        detail = f"{count} field{'s are' if count != 1 else ' is'} not valid" if count else ""
        if count == 1 and not error.validations[0][0]:
            detail = error.validations[0][1]  # about the body as a whole, not a field
        return error_response(400, str(error), detail, error.validations)

    @app.errorhandler(AuthError)
    async def unauthorized(error: AuthError) -> Response:
        log.info("api.unauthorized", reason=error.reason, path=request.path)
        return error_response(
            401, "unauthorized", "a valid token is needed (Authorization: Bearer <token>)"
        )

    @app.errorhandler(PermissionDenied)
    async def forbidden(error: PermissionDenied) -> Response:
        return error_response(403, "forbidden", str(error))

    @app.errorhandler(NotFound)
    async def not_found(error: NotFound) -> Response:
        return error_response(404, "not found", str(error))

    @app.errorhandler(Conflict)
    async def conflict(error: Conflict) -> Response:
        return error_response(409, "conflict", "the name is in use", [("name", str(error))])

    @app.errorhandler(StoreError)
    async def store_error(error: StoreError) -> Response:
        if isinstance(error, StoreRejectedValue):  # the caller's text, not the database's fault
            return error_response(400, "invalid value", "text must not contain NUL characters")
        log.error("api.store_error", error=str(error), path=request.path)
        if isinstance(error, StoreUnavailable):
            return error_response(503, "database unavailable", "try again shortly")
        return error_response(500, "database error", "see the gateway's log")

    @app.errorhandler(SecretsError)
    async def secrets_error(error: SecretsError) -> Response:
        log.error("api.secrets_error", error=str(error), path=request.path)
        return error_response(500, "stored secrets cannot be opened", "see the gateway's log")
