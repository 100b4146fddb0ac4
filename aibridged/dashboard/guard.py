"""Who is signed in to the dashboard, and the checks in front of every page.

The cookie holds an opaque random id; the database holds its SHA-256, the CSRF token and the id
of the token the session was opened with. Every request looks the session up again, so a revoked
token, a suspended user or a changed role takes effect at the next page, on every replica.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import current_app, g, request

from aibridged.api.manage import ADMIN_ROLES, Management
from aibridged.api.provider_routes import ProviderRoutes
from aibridged.auth import Principal, grant_principal
from aibridged.errors import AibridgedError, AuthError, PermissionDenied
from aibridged.store import dashboard as stored

P = ParamSpec("P")
R = TypeVar("R")

SESSION_COOKIE = "aibridged_session"
SIGNIN_COOKIE = "aibridged_signin"  # the sign-in form's CSRF token, before there is a session
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_SESSION_LIFETIME_S = 12 * 3600.0
_EXTENSION = "aibridged.dashboard"


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What the dashboard's pages need."""

    management: Management
    providers: ProviderRoutes | None = None  # None: the provider pages answer 404
    session_lifetime_s: float = DEFAULT_SESSION_LIFETIME_S


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    csrf_token: str


class SignInNeeded(AibridgedError):
    """No valid session: the page redirects to the sign-in form."""


class CsrfRefused(AibridgedError):
    """A state-changing request without the right CSRF token, or from another site."""


def dashboard() -> Dashboard:
    found: Dashboard = current_app.extensions[_EXTENSION]
    return found


def install(extensions: dict[str, object], deps: Dashboard) -> None:
    """Make `deps` what `dashboard()` returns in the app owning `extensions`."""
    extensions[_EXTENSION] = deps


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


async def signed_in_user() -> SignedIn | None:
    """The current request's session, looked up once per request; None when signed out."""
    if "dashboard_user" not in g:
        g.dashboard_user = await _lookup_session(request.cookies.get(SESSION_COOKIE, ""))
    found: SignedIn | None = g.dashboard_user
    return found


async def _lookup_session(session_id: str) -> SignedIn | None:
    if not session_id:
        return None
    row = await stored.find_session(dashboard().management.store, session_hash(session_id))
    if row is None:
        return None
    try:
        return SignedIn(grant_principal(row.grant), row.csrf_token)
    except AuthError:
        return None  # a revoked or expired token, or a suspended user: the session is over


async def current_user() -> Principal:
    """The signed-in principal; SignInNeeded (a redirect to the sign-in page) otherwise."""
    found = await signed_in_user()
    if found is None:
        raise SignInNeeded("sign in first")
    return found.principal


def signed_in(
    view: Callable[Concatenate[Principal, P], Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """A route for any signed-in user; the view gets the Principal as its first argument."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await view(await current_user(), *args, **kwargs)

    return wrapper


def admin_only(
    view: Callable[Concatenate[Principal, P], Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """A route for owners and admins (the management API's rule); others get the 403 page."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        principal = await current_user()
        if principal.role not in ADMIN_ROLES:
            raise PermissionDenied("this page needs the owner or admin role")
        return await view(principal, *args, **kwargs)

    return wrapper


def is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.role in ADMIN_ROLES


def refuse_cross_site() -> None:
    """A browser marks a request from another site (Sec-Fetch-Site); older ones still send an
    Origin. Either one naming another site refuses the request before any form is read."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        raise CsrfRefused(f"a {fetch_site} request")
    origin = request.headers.get("Origin", "")
    if origin and (origin == "null" or urlsplit(origin).netloc != request.host):
        raise CsrfRefused("a request from another origin")


async def presented_csrf_token() -> str:
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    form = await request.form
    return str(form.get(CSRF_FIELD, ""))


async def check_csrf(expected: str) -> None:
    presented = await presented_csrf_token()
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfRefused("missing or wrong CSRF token")
