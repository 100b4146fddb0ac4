"""What every dashboard page shares: the template context, the CSRF gate, error pages and the
response headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from quart import Blueprint, Response, redirect, render_template, request

from aibridged import __version__
from aibridged.dashboard.guard import (
    SIGNIN_COOKIE,
    UNSAFE_METHODS,
    CsrfRefused,
    SignInNeeded,
    check_csrf,
    is_admin,
    refuse_cross_site,
    signed_in_user,
)
from aibridged.errors import InvalidInput, NotFound, PermissionDenied, StoreError, StoreUnavailable

log = structlog.get_logger("aibridged.dashboard")

# Pages hold CSRF tokens and, once, new secrets: never cached, never framed, scripts and styles
# from the gateway only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self';"
        " base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def page(template: str, status: int = 200, **context: Any) -> Response:
    """`template` rendered with `context` (plus the shared context) as an HTML response."""
    body = await render_template(template, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


async def error_page(status: int, title: str, message: str) -> Response:
    return await page("dashboard/error.html", status, title=title, message=message)


def add_shared(bp: Blueprint) -> None:
    @bp.context_processor
    async def shared_context() -> dict[str, Any]:
        found = await signed_in_user()
        user = found.principal if found is not None else None
        return {
            "version": __version__,
            "current_user": user,
            "is_admin": is_admin(user),
            "csrf_token": found.csrf_token if found is not None else "",
        }

    @bp.before_request
    async def refuse_nul_characters() -> None:
        # PostgreSQL text cannot hold U+0000: a value with one would be a database error (a 500
        # page) wherever it reached a query, so it is refused here, once, for every page.
        values = [request.path, *request.args.values()]
        if request.method in UNSAFE_METHODS:
            values += (await request.form).values()
        if any("\x00" in value for value in values):
            raise InvalidInput("a NUL character in the request")

    @bp.before_request
    async def csrf_gate() -> None:
        if request.method not in UNSAFE_METHODS:
            return
        refuse_cross_site()
        if request.endpoint == "dashboard.signin":
            await check_csrf(request.cookies.get(SIGNIN_COOKIE, ""))
            return
        found = await signed_in_user()
        if found is None:
            raise SignInNeeded("sign in first")
        await check_csrf(found.csrf_token)

    @bp.after_request
    async def security_headers(response: Response) -> Response:
        if not (request.endpoint or "").endswith(".static"):
            response.headers.update(SECURITY_HEADERS)
        return response

    add_error_pages(bp)


def add_error_pages(bp: Blueprint) -> None:
    @bp.errorhandler(SignInNeeded)
    async def sign_in_first(error: SignInNeeded) -> Response:
        target = request.full_path.rstrip("?") if request.method == "GET" else "/"
        return redirect(f"/signin?next={quote(target, safe='/')}")  # type: ignore[return-value]

    @bp.errorhandler(CsrfRefused)
    async def csrf_refused(error: CsrfRefused) -> Response:
        log.info("dashboard.csrf_refused", reason=str(error), path=request.path)
        message = (
            "The form was not sent from this dashboard, or it is too old."
            " Reload the page and try again."
        )
        return await error_page(403, "Request refused", message)

    @bp.errorhandler(InvalidInput)
    async def bad_request(error: InvalidInput) -> Response:
        return await error_page(400, "Bad request", f"The request was refused: {error}.")

    @bp.errorhandler(PermissionDenied)
    async def forbidden(error: PermissionDenied) -> Response:
        return await error_page(403, "Forbidden", f"You cannot open this page: {error}.")

    @bp.errorhandler(NotFound)
    async def not_found(error: NotFound) -> Response:
        return await error_page(404, "Not found", str(error))

    @bp.errorhandler(StoreError)
    async def store_error(error: StoreError) -> Response:
        log.error("dashboard.store_error", error=str(error), path=request.path)
        if isinstance(error, StoreUnavailable):
            return await error_page(503, "Database unavailable", "Try again shortly.")
        return await error_page(500, "Database error", "See the gateway's log.")
