"""The web dashboard: server-rendered pages on the control app, at `/` (docs/dashboard.md).

A Quart Blueprint with Jinja2 templates (templates/dashboard/) and hand-written CSS (static/,
served at `/static/`). Pages are plain HTML forms, POST-redirect-GET.

Interface for page modules
--------------------------

Each page module has an `add_<name>_pages(bp: Blueprint) -> None` that adds its routes to the
blueprint; `create_dashboard` below calls every one of them (add yours to `_PAGE_MODULES`).

- Routes: `@bp.get("/usage")` then `@signed_in` (any signed-in user) or `@admin_only` (owner or
  admin; anyone else gets the 403 page), from `aibridged.dashboard.guard`. The decorated view
  gets the caller's `aibridged.auth.Principal` as its first argument, the same type the
  management API scopes visibility with (`principal.user_id`, `.username`, `.role`), then the
  URL's parameters:

      @bp.get("/sessions/<session_id>")
      @signed_in
      async def session(user: Principal, session_id: str) -> Response: ...

  Signed out, both redirect to `/signin?next=<this page>`.
- Dependencies: `guard.dashboard()` is the `Dashboard` (`.management.store` is the management
  API's share of the database pool, `.management.tokens` the token cache, `.providers` the
  provider routes' hooks).
- Rendering: `await pages.page("dashboard/x.html", status=200, **context)` gives an HTML
  response; `pages.error_page(status, title, message)` the error page. Templates extend
  `dashboard/base.html` and fill `{% block title %}` and `{% block content %}`; the shared
  context has `current_user` (Principal or None), `is_admin` (bool) and `csrf_token` (str).
  `{% import "dashboard/forms.html" as forms with context %}` gives `forms.csrf()` (the
  hidden input every state-changing form needs) and `forms.field(...)`, `forms.select(...)`,
  `forms.textarea(...)`, `forms.checkbox(...)` (label, input, and its error tied by
  aria-describedby; `errors` maps a field name to its message).
- CSRF: every POST/PUT/PATCH/DELETE to the blueprint is checked before the view runs (the
  session's token in the `csrf_token` form field or the `X-CSRF-Token` header, and no
  cross-site Origin/Sec-Fetch-Site); a failure is the 403 page. Views need do nothing.
- Errors: raising `aibridged.errors.NotFound` or `PermissionDenied` in a view gives the 404 or
  403 page; a StoreError the 503/500 page.
- Tests: tests/browser.py has the harness (the gateway, headless Chromium, signed-in pages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.typing import RouteCallable
from quart import Blueprint, Response

from aibridged.api.openapi import hide
from aibridged.dashboard.formatting import add_formatting
from aibridged.dashboard.guard import Dashboard, admin_only, install, signed_in
from aibridged.dashboard.pages import add_shared
from aibridged.dashboard.providers import add_provider_pages
from aibridged.dashboard.sessions_pages import add_sessions_pages
from aibridged.dashboard.signin import add_signin_pages
from aibridged.dashboard.usage_pages import add_usage_pages
from aibridged.dashboard.users import add_user_pages

__all__ = ["Dashboard", "admin_only", "create_dashboard", "signed_in"]

_PAGE_MODULES: tuple[Callable[[Blueprint], None], ...] = (
    add_signin_pages,
    add_provider_pages,
    add_formatting,
    add_sessions_pages,
    add_usage_pages,
    add_user_pages,
)


class _PagesBlueprint(Blueprint):
    """A blueprint whose routes stay out of the management API's OpenAPI document."""

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: RouteCallable | None = None,
        provide_automatic_options: bool | None = None,
        **options: Any,
    ) -> None:
        if view_func is not None:
            hide(view_func)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)

    @hide
    async def send_static_file(self, filename: str) -> Response:
        return await super().send_static_file(filename)


def create_dashboard(deps: Dashboard) -> Blueprint:
    """The dashboard's blueprint, to register on the control app at `/`."""
    bp = _PagesBlueprint(
        "dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    bp.record_once(lambda state: install(state.app.extensions, deps))
    add_shared(bp)
    for add_pages in _PAGE_MODULES:
        add_pages(bp)
    return bp
