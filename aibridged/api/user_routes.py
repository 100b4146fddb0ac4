"""`/api/v2/users` and `/api/v2/users/{user}/keys`: users and their gateway tokens over HTTP
(docs/management-api.md).

Owners and admins manage every user; everyone manages their own keys (`me` names the caller).
Role rules, so that nobody is locked out and an admin cannot take over: only an owner grants or
removes the owner role, or suspends an owner; nobody changes their own role or status; the last
active owner stays one. A change applies at once on this replica (its token cache forgets), on
the others within the cache's TTL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from aibridged.api import schemas as shape
from aibridged.api.manage import ADMIN_ROLES, Management, caller, json_body, json_response
from aibridged.api.openapi import NoContent, documented
from aibridged.auth import Principal
from aibridged.config.values import parse_duration
from aibridged.errors import ConfigError, InvalidInput, NotFound, PermissionDenied
from aibridged.store import users as stored
from aibridged.store.users import ROLES, STATUSES, ApiToken, User

MAX_NAME_CHARS = 128
MAX_LIFETIME = timedelta(days=3650)


def add_user_routes(app: QuartTrio, management: Management) -> None:
    @app.get("/api/v2/users/me")
    @documented(200, shape.User)
    async def me() -> Response:
        """The caller's user."""
        principal = await caller(management)
        return json_response(user_json(await stored.get_user(management.store,
                                                             str(principal.user_id))))  # fmt: skip

    @app.get("/api/v2/users")
    @documented(200, list[shape.User], errors=(403,))
    async def list_users() -> Response:
        """Every user, by username (owner, admin)."""
        await _admin(management)
        return json_response([user_json(u) for u in await stored.list_users(management.store)])

    @app.post("/api/v2/users")
    @documented(201, shape.User, errors=(400, 403, 409), body=shape.UserCreate)
    async def create_user() -> Response:
        """Create a user (owner, admin; only an owner makes an owner)."""
        principal = await _admin(management)
        user = await add_user(management, principal, await json_body())
        return json_response(user_json(user), 201)

    @app.get("/api/v2/users/<user>")
    @documented(200, shape.User, errors=(404,))
    async def show_user(user: str) -> Response:
        """One user by username, id or `me` (another user: owner, admin)."""
        principal = await caller(management)
        return json_response(user_json(await _target(management, principal, user)))

    @app.patch("/api/v2/users/<user>")
    @documented(200, shape.User, errors=(400, 403, 404), body=shape.UserChange)
    async def change_user(user: str) -> Response:
        """Change a user's role or status (owner, admin; see the role rules)."""
        principal = await _admin(management)
        changed = await modify_user(management, principal, user, await json_body())
        return json_response(user_json(changed))

    add_key_routes(app, management)


def add_key_routes(app: QuartTrio, management: Management) -> None:
    @app.get("/api/v2/users/<user>/keys")
    @documented(200, list[shape.Key], errors=(404,))
    async def list_keys(user: str) -> Response:
        """A user's keys, oldest first, never their secrets."""
        target = await _target(management, await caller(management), user)
        keys = await stored.list_tokens(management.store, str(target.id))
        return json_response([key_json(k) for k in keys])

    @app.post("/api/v2/users/<user>/keys")
    @documented(201, shape.KeyCreated, errors=(400, 404), body=shape.KeyCreate)
    async def create_key(user: str) -> Response:
        """A new key; its secret is in this answer only."""
        principal = await caller(management)
        record, secret = await issue_key(management, principal, user, await json_body())
        # The secret is in this answer once; it is stored only as a hash.
        return json_response({**key_json(record), "key": secret}, 201)

    @app.delete("/api/v2/users/<user>/keys/<key_id>")
    @documented(204, NoContent, errors=(404,))
    async def revoke_key(user: str, key_id: str) -> Response:
        """Revoke a key (at once on this replica)."""
        await revoke_user_key(management, await caller(management), user, key_id)
        return Response(b"", status=204)


# The actions behind the routes, shared with the dashboard's forms: the same validation, role
# rules and cache invalidation. `body` is the route's JSON body.


async def add_user(management: Management, principal: Principal, body: Any) -> User:
    """A new user (the caller is an owner or an admin; only an owner makes an owner)."""
    body = _object(body, {"username", "name", "email", "role"})
    role = _choice(body, "role", ROLES, default=None) or "member"
    if role == "owner" and principal.role != "owner":
        raise PermissionDenied("only an owner can make an owner")
    username = _text(body, "username", required=True)
    try:
        stored.validate_username(username)
    except InvalidInput as exc:
        raise InvalidInput("invalid body", [("username", str(exc))]) from exc
    return await stored.create_user(
        management.store,
        username=username,
        role=role,
        name=_text(body, "name"),
        email=_text(body, "email"),
    )


async def modify_user(management: Management, principal: Principal, ref: str, body: Any) -> User:
    """A user's role or status changed under the role rules (the caller is an owner or admin)."""
    body = _object(body, {"status", "role"})
    role = _choice(body, "role", ROLES, default=None)
    status = _choice(body, "status", STATUSES, default=None)
    target = await _target(management, principal, ref)
    await _may_change(management, principal, target, role=role, status=status)
    if role is not None:
        target = await stored.set_user_role(management.store, str(target.id), role)
    if status is not None:
        target = await stored.set_user_status(management.store, str(target.id), status)
    management.tokens.invalidate()  # a role or status is part of every cached grant
    return target


async def issue_key(
    management: Management, principal: Principal, ref: str, body: Any
) -> tuple[ApiToken, str]:
    """A new key of the user `ref` names, and its secret (to show once)."""
    target = await _target(management, principal, ref)
    _may_hold_keys_of(principal, target)
    body = _object(body, {"name", "lifetime"})
    return await stored.create_token(
        management.store, str(target.id), name=_text(body, "name"), lifetime=_lifetime(body)
    )


async def revoke_user_key(
    management: Management, principal: Principal, ref: str, key_id: str
) -> None:
    """Revoke a key of the user `ref` names (at once on this replica)."""
    target = await _target(management, principal, ref)
    _may_hold_keys_of(principal, target)
    owned = {k.id for k in await stored.list_tokens(management.store, str(target.id))}
    if key_id not in owned:
        raise NotFound(f"no key {key_id[:64]!r} of {target.username}")
    await stored.revoke_token(management.store, key_id)
    management.tokens.invalidate(key_id)


async def visible_user(management: Management, principal: Principal, ref: str) -> User:
    """The user `ref` names if the caller may see it (themselves; anyone for owner, admin)."""
    return await _target(management, principal, ref)


async def _admin(management: Management) -> Principal:
    principal = await caller(management)
    if principal.role not in ADMIN_ROLES:
        raise PermissionDenied("this needs the owner or admin role")
    return principal


async def _target(management: Management, principal: Principal, ref: str) -> User:
    """The user `ref` names (`me`: the caller); another user only for an owner or an admin
    (a 404 for the others, which does not tell whether the user exists)."""
    if ref == "me":
        ref = str(principal.user_id)
    try:
        user = await stored.get_user(management.store, ref)
    except InvalidInput as exc:
        raise NotFound(f"no user {ref[:64]!r}") from exc
    if user.id != principal.user_id and principal.role not in ADMIN_ROLES:
        raise NotFound(f"no user {ref[:64]!r}")
    return user


def _may_hold_keys_of(principal: Principal, target: User) -> None:
    """An owner's keys are an owner's to create and revoke: a key made for an owner acts as
    that owner, so an admin making one would be an admin making itself an owner."""
    if target.role == "owner" and principal.role != "owner":
        raise PermissionDenied("only an owner can create or revoke an owner's keys")


async def _may_change(
    management: Management,
    principal: Principal,
    target: User,
    *,
    role: str | None,
    status: str | None,
) -> None:
    changes_role = role is not None and role != target.role
    changes_status = status is not None and status != target.status
    if not (changes_role or changes_status):
        return
    if target.id == principal.user_id:
        raise PermissionDenied("you cannot change your own role or status")
    if principal.role != "owner" and (target.role == "owner" or role == "owner"):
        raise PermissionDenied("only an owner can change an owner, or make one")
    leaves_owners = target.role == "owner" and target.status == "active" and (
        (changes_role and role != "owner") or (changes_status and status != "active"))  # fmt: skip
    if leaves_owners and await stored.count_active_owners(management.store) <= 1:
        raise PermissionDenied("the last active owner must stay an active owner")


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("invalid body", [("", "the body must be a JSON object")])
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput("invalid body", [(key, "unknown field") for key in unknown[:50]])
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput("invalid body", [(key, "a non-empty string is needed")])
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInput("invalid body", [(key, f"at most {MAX_NAME_CHARS} characters")])
    return value


def _choice(body: dict[str, Any], key: str, choices: tuple[str, ...], *,
            default: str | None) -> str | None:  # fmt: skip
    value = body.get(key, default)
    if value is not None and value not in choices:
        raise InvalidInput("invalid body", [(key, f"one of {', '.join(choices)}")])
    return value


def _lifetime(body: dict[str, Any]) -> timedelta | None:
    value = body.get("lifetime")
    if value is None:
        return None
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except ConfigError:
        seconds = None
    if seconds is None or not 0 < seconds <= MAX_LIFETIME.total_seconds():
        raise InvalidInput(
            "invalid body", [("lifetime", "a duration like 30d or 12h, up to 10 years")]
        )
    return timedelta(seconds=seconds)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "status": user.status,
        "created_at": user.created_at.isoformat(),
    }


def key_json(key: ApiToken) -> dict[str, Any]:
    return {
        "id": key.id,
        "user_id": str(key.user_id),
        "username": key.username,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }
