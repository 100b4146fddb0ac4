"""Admin → Users: create users, change their role, suspend or reactivate them, create and revoke
their tokens (a new token's secret is shown once, on the page that answers the form).

Every action goes through the management API's own functions (api/user_routes.py): the same
validation and role rules (nobody changes their own role, only an owner makes an owner, the last
active owner stays one), and the token cache forgets at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from quart import Blueprint, Response, redirect, request

from aibridged.api.user_routes import (
    add_user,
    issue_key,
    modify_user,
    revoke_user_key,
    visible_user,
)
from aibridged.auth import Principal
from aibridged.dashboard.guard import admin_only, dashboard
from aibridged.dashboard.pages import page
from aibridged.dashboard.provider_forms import field_errors
from aibridged.errors import Conflict, InvalidInput, PermissionDenied
from aibridged.store import users as stored
from aibridged.store.users import ROLES, USERNAME_RE, User

NOTICES = {
    "created": "created",
    "role": "has a new role",
    "active": "is active again",
    "suspended": "is suspended",
    "revoked": "lost a token",
}


def add_user_pages(bp: Blueprint) -> None:
    @bp.get("/admin/users")
    @admin_only
    async def users(user: Principal) -> Response:
        done, name = request.args.get("done", ""), request.args.get("name", "")
        # (only a name a user can have: the query is anyone's to write, the notice is not)
        shown = done in NOTICES and USERNAME_RE.fullmatch(name) is not None
        notice = f"User {name} {NOTICES[done]}." if shown else ""
        return await _users_page(notice=notice)

    @bp.post("/admin/users")
    @admin_only
    async def create_user(user: Principal) -> Response:
        form = await request.form
        body = {k: form.get(k, "").strip() for k in ("username", "name", "email", "role")}
        try:
            created = await add_user(dashboard().management, user, body)
        except (InvalidInput, Conflict, PermissionDenied) as exc:
            return await _users_page(form=form, errors=_errors(exc), status=_status(exc))
        return _done("created", created.username)

    @bp.post("/admin/users/<username>/role")
    @admin_only
    async def change_role(user: Principal, username: str) -> Response:
        role = (await request.form).get("role", "")
        return await _change(user, username, {"role": role}, "role")

    @bp.post("/admin/users/<username>/status")
    @admin_only
    async def change_status(user: Principal, username: str) -> Response:
        status = (await request.form).get("status", "")
        return await _change(user, username, {"status": status}, status)

    @bp.get("/admin/users/<username>")
    @admin_only
    async def user_tokens(user: Principal, username: str) -> Response:
        return await _tokens_page(user, username, revoked=request.args.get("revoked", ""))

    @bp.post("/admin/users/<username>/tokens")
    @admin_only
    async def create_token(user: Principal, username: str) -> Response:
        form = await request.form
        body: dict[str, Any] = {"name": form.get("name", "").strip()}
        if form.get("lifetime", "").strip():
            body["lifetime"] = form.get("lifetime", "").strip()
        try:
            record, secret = await issue_key(dashboard().management, user, username, body)
        except InvalidInput as exc:
            return await _tokens_page(user, username, form=form, errors=_errors(exc), status=400)
        # Answered here, not redirected: the secret exists in this response only.
        return await _tokens_page(user, username, secret=secret, new_id=record.id)

    @bp.post("/admin/users/<username>/tokens/<token_id>/revoke")
    @admin_only
    async def revoke_token(user: Principal, username: str, token_id: str) -> Response:
        await revoke_user_key(dashboard().management, user, username, token_id)
        query = urlencode({"revoked": token_id})
        return redirect(f"/admin/users/{quote(username)}?{query}", 303)  # type: ignore[return-value]


async def _change(user: Principal, username: str, body: dict[str, str], done: str) -> Response:
    try:
        changed = await modify_user(dashboard().management, user, username, body)
    except (InvalidInput, PermissionDenied) as exc:
        return await _users_page(problem=f"{username}: {_message(exc)}", status=_status(exc))
    return _done(done, changed.username)


async def _users_page(
    *,
    form: Any = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    problem: str = "",
    status: int = 200,
) -> Response:
    listed: list[User] = await stored.list_users(dashboard().management.store)
    return await page(
        "dashboard/users.html", status, users=listed, roles=ROLES, form=form or {"role": "member"},
        errors=errors or {}, notice=notice, problem=problem,
    )  # fmt: skip


async def _tokens_page(
    user: Principal,
    username: str,
    *,
    form: Any = None,
    errors: dict[str, str] | None = None,
    revoked: str = "",
    secret: str = "",
    new_id: str = "",
    status: int = 200,
) -> Response:
    management = dashboard().management
    target = await visible_user(management, user, username)
    keys = await stored.list_tokens(management.store, str(target.id))
    notice = f"Token {revoked} revoked." if revoked in {k.id for k in keys} else ""
    # The management API's rule (an owner's keys are an owner's to make and revoke), shown
    # up front instead of as a 403 after the form.
    manages = target.role != "owner" or user.role == "owner"
    return await page(
        "dashboard/user_tokens.html", status, target=target, keys=keys, form=form or {},
        errors=errors or {}, notice=notice, secret=secret, new_id=new_id, manages=manages,
    )  # fmt: skip


def _errors(exc: InvalidInput | Conflict | PermissionDenied) -> dict[str, str]:
    if isinstance(exc, Conflict):
        return {"username": "this username is taken"}
    if isinstance(exc, PermissionDenied):
        return {"role": str(exc)}
    return field_errors(exc.validations) if exc.validations else {"": str(exc)}


def _message(exc: InvalidInput | PermissionDenied) -> str:
    if isinstance(exc, InvalidInput) and exc.validations:
        return "; ".join(detail for _, detail in exc.validations)
    return str(exc)


def _status(exc: InvalidInput | Conflict | PermissionDenied) -> int:
    if isinstance(exc, Conflict):
        return 409
    return 403 if isinstance(exc, PermissionDenied) else 400


def _done(what: str, username: str) -> Response:
    query = urlencode({"done": what, "name": username})
    return redirect(f"/admin/users?{query}", 303)  # type: ignore[return-value]
