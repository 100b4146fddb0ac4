"""Admin → AI → Providers: list, add (a form per type), edit, enable/disable, delete.

Every write goes through the management API's own functions (api/provider_routes.py): the same
validation, audit line and reload, so a change serves on this replica before the page answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, redirect, request

from aibridged.api.provider_routes import (
    ProviderRoutes,
    change_provider,
    create_provider,
    delete_provider,
    provider_json,
)
from aibridged.auth import Principal
from aibridged.dashboard.guard import admin_only, dashboard
from aibridged.dashboard.pages import page
from aibridged.dashboard.provider_forms import change_body, create_body, field_errors, type_form
from aibridged.dashboard.provider_forms import type_forms as all_type_forms
from aibridged.errors import Conflict, InvalidInput, NotFound
from aibridged.providers.pool import NAME_RE
from aibridged.providers.types import TYPES
from aibridged.store import providers as stored

NOTICES = {
    "created": "added",
    "changed": "saved",
    "enabled": "enabled",
    "disabled": "disabled",
    "deleted": "deleted",
}


def _routes() -> ProviderRoutes:
    routes = dashboard().providers
    if routes is None:
        raise NotFound("provider management is not available on this gateway")
    return routes


def add_provider_pages(bp: Blueprint) -> None:
    @bp.get("/admin/providers")
    @admin_only
    async def providers(user: Principal) -> Response:
        routes = _routes()
        rows = await stored.list_providers(routes.management.store)
        listed = [provider_json(row, routes.describe(row)) for row in rows]
        done, name = request.args.get("done", ""), request.args.get("name", "")
        # (only a name a provider can have: the query is anyone's to write, the notice is not)
        shown = done in NOTICES and NAME_RE.fullmatch(name) is not None
        notice = f"Provider {name} {NOTICES[done]}." if shown else ""
        return await page("dashboard/providers.html", providers=listed, notice=notice)

    @bp.get("/admin/providers/new")
    @admin_only
    async def new_provider_form(user: Principal) -> Response:
        _routes()
        ptype = TYPES.get(request.args.get("type", ""))
        if ptype is None:
            return await page("dashboard/provider_types.html", types=all_type_forms())
        return await _create_page(ptype.name, {"enabled": "on"}, {})

    @bp.post("/admin/providers/new")
    @admin_only
    async def create_provider_page(user: Principal) -> Response:
        form = await request.form
        ptype = TYPES.get(form.get("type", ""))
        if ptype is None:
            raise NotFound("no such provider type")
        try:
            row = await create_provider(_routes(), user, create_body(ptype, form))
        except (InvalidInput, Conflict) as exc:
            return await _create_page(ptype.name, form, _errors(exc), 400)
        return _done("created", row.name)

    @bp.get("/admin/providers/<name>")
    @admin_only
    async def edit_provider_form(user: Principal, name: str) -> Response:
        row = await stored.get_provider(_routes().management.store, name)
        return await _edit_page(row, _form_of(row), {}, kept=[str(k.id) for k in row.keys])

    @bp.post("/admin/providers/<name>")
    @admin_only
    async def edit_provider(user: Principal, name: str) -> Response:
        routes = _routes()
        current = await stored.get_provider(routes.management.store, name)
        form = await request.form
        kept = form.getlist("keep_key")
        body = change_body(TYPES[current.type], current, form, kept)
        try:
            row = await change_provider(routes, user, str(current.id), body)
        except (InvalidInput, Conflict) as exc:
            return await _edit_page(current, form, _errors(exc), kept, 400)
        return _done("changed", row.name)

    @bp.post("/admin/providers/<name>/enabled")
    @admin_only
    async def set_provider_enabled(user: Principal, name: str) -> Response:
        enabled = (await request.form).get("enabled") == "true"
        row = await change_provider(_routes(), user, name, {"enabled": enabled})
        return _done("enabled" if enabled else "disabled", row.name)

    @bp.get("/admin/providers/<name>/delete")
    @admin_only
    async def delete_provider_form(user: Principal, name: str) -> Response:
        row = await stored.get_provider(_routes().management.store, name)
        return await page("dashboard/provider_delete.html", provider=row)

    @bp.post("/admin/providers/<name>/delete")
    @admin_only
    async def delete_provider_page(user: Principal, name: str) -> Response:
        row = await delete_provider(_routes(), user, name)
        return _done("deleted", row.name)


def _errors(exc: InvalidInput | Conflict) -> dict[str, str]:
    if isinstance(exc, Conflict):
        return {"name": str(exc)}
    return field_errors(exc.validations)


def _form_of(row: stored.StoredProvider) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": row.name,
        "display_name": row.display_name,
        "base_url": row.base_url,
        "enabled": "on" if row.enabled else "",
    }
    form.update({f"settings.{name}": value for name, value in row.settings.items()})
    return form


async def _create_page(
    type_name: str, form: Any, errors: dict[str, str], status: int = 200
) -> Response:
    return await page(
        "dashboard/provider_form.html", status, creating=True, ptype=type_form(TYPES[type_name]),
        form=form, errors=errors, provider=None, keys=[], kept=set(),
    )  # fmt: skip


async def _edit_page(
    row: stored.StoredProvider,
    form: Any,
    errors: dict[str, str],
    kept: list[str],
    status: int = 200,
) -> Response:
    shown = provider_json(row, _routes().describe(row))
    return await page(
        "dashboard/provider_form.html", status, creating=False, ptype=type_form(TYPES[row.type]),
        form=form, errors=errors, provider=shown, keys=shown["api_keys"], kept=set(kept),
    )  # fmt: skip


def _done(what: str, name: str) -> Response:
    query = urlencode({"done": what, "name": name})
    return redirect(f"/admin/providers?{query}", 303)  # type: ignore[return-value]
