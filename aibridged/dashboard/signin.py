"""Signing in and out, and the home page.

Sign-in checks the token through the management API's own verification (the token cache:
malformed, unknown, revoked, expired tokens and suspended users are refused alike). The session
cookie is HttpOnly, SameSite=Strict, Path=/, Secure when the request came over TLS, and never
holds the token.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import structlog
from quart import Blueprint, Response, redirect, request

from aibridged.auth import Principal
from aibridged.dashboard.guard import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    dashboard,
    new_secret,
    session_hash,
    signed_in,
    signed_in_user,
)
from aibridged.dashboard.pages import page
from aibridged.errors import AuthError
from aibridged.store import dashboard as stored

log = structlog.get_logger("aibridged.dashboard")

MAX_FIELD_CHARS = 200
SIGNIN_FORM_LIFETIME_S = 3600
# RFC 3986's reserved and unreserved characters, and "%" (a target's escapes are kept as given)
URL_CHARACTERS = "/?#[]@!$&'()*+,;=:-._~%"


def add_signin_pages(bp: Blueprint) -> None:
    @bp.get("/")
    @signed_in
    async def home(user: Principal) -> Response:
        return await page("dashboard/home.html")

    @bp.get("/signin")
    async def signin_form() -> Response:
        if await signed_in_user() is not None:
            return _redirect(_next_page())
        return await _signin_page()

    @bp.post("/signin")
    async def signin() -> Response:
        form = await request.form
        username = form.get("username", "").strip()[:MAX_FIELD_CHARS]
        token = form.get("token", "").strip()[:MAX_FIELD_CHARS]
        deps = dashboard()
        try:
            principal = await deps.management.tokens.verify(token)
            if username and username != principal.username:
                raise AuthError("username does not match the token")
        except AuthError as exc:
            log.info("dashboard.signin_refused", reason=exc.reason)
            return await _signin_page(username, "This token is not valid.", 401)
        session_id, csrf_token = new_secret(), new_secret()
        lifetime = timedelta(seconds=deps.session_lifetime_s)
        await stored.open_session(
            deps.management.store, session_hash(session_id), principal.token_id, csrf_token,
            lifetime,
        )  # fmt: skip
        log.info("dashboard.signed_in", username=principal.username, token_id=principal.token_id)
        response = _redirect(_next_page())
        _set_cookie(response, SESSION_COOKIE, session_id, int(deps.session_lifetime_s))
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        return response

    @bp.post("/signout")
    async def signout() -> Response:
        # The CSRF gate in front of every POST has checked the session and its token already.
        session_id = request.cookies.get(SESSION_COOKIE, "")
        await stored.close_session(dashboard().management.store, session_hash(session_id))
        response = _redirect("/signin")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


async def _signin_page(username: str = "", error: str = "", status: int = 200) -> Response:
    # The same token while the cookie lasts: sign-in forms open in two tabs both work.
    form_token = request.cookies.get(SIGNIN_COOKIE, "")[:MAX_FIELD_CHARS] or new_secret()
    response = await page(
        "dashboard/signin.html", status, username=username, error=error,
        signin_token=form_token, next_page=_next_page(),
    )  # fmt: skip
    _set_cookie(response, SIGNIN_COOKIE, form_token, SIGNIN_FORM_LIFETIME_S)
    return response


def _set_cookie(response: Response, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age_s, path="/", httponly=True, samesite="Strict",
        secure=request.scheme == "https",
    )  # fmt: skip


def _next_page() -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL).

    Every character outside a URL's own is percent-encoded first: browsers drop tabs and
    newlines from a Location (`/<TAB>/evil.example` would open `//evil.example`), and a
    control character in a header is a protocol error, not a redirect."""
    given = request.args.get("next", "") or "/"
    target = quote(given, safe=URL_CHARACTERS)
    if not target.startswith("/") or target.startswith("//") or "\\" in given:
        return "/"
    return target


def _redirect(location: str) -> Response:
    return redirect(location, 303)  # type: ignore[return-value]
