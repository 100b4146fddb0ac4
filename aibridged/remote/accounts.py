"""`aibridged users ...` and `aibridged tokens ...` over the management API (`--remote`).

The same actions and output as the local commands (admin_cli), through `/api/v2/users` and
`/api/v2/users/{user}/keys`, so they run from any machine with a token instead of on the
gateway's host with its database.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aibridged.errors import InvalidInput
from aibridged.remote.client import ApiClient, ApiError, printable

USERS = "/api/v2/users"


def wants_remote(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """`--remote`, or `AIBRIDGED_URL` set without a `--config` saying otherwise."""
    if getattr(args, "remote", False):
        return True
    return bool(env.get("AIBRIDGED_URL")) and getattr(args, "config", None) is None


def run_accounts(args: argparse.Namespace, client: ApiClient) -> int:
    from aibridged.admin_cli import print_rows  # the local commands' table and JSON

    if args.command == "users":
        _users(args, client, print_rows)
    else:
        _tokens(args, client, print_rows)
    return 0


def _user_path(ref: str) -> str:
    return f"{USERS}/{quote(ref, safe='')}"


def _users(args: argparse.Namespace, client: ApiClient, print_rows: Any) -> None:
    if args.action == "create":
        body = {"username": args.username, "role": args.role, "name": args.name,
                "email": args.email}  # fmt: skip
        print_rows([_user_row(client.post(USERS, body))], "table")
    elif args.action == "list":
        print_rows([_user_row(u) for u in _list(client.get(USERS))], args.format)
    else:
        status = "suspended" if args.action == "suspend" else "active"
        user = client.patch(_user_path(args.username), {"status": status})
        print(f"user {printable(user['username'])} is {printable(user['status'])}")


def _tokens(args: argparse.Namespace, client: ApiClient, print_rows: Any) -> None:
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name}
        if args.lifetime:
            body["lifetime"] = args.lifetime
        made = client.post(_user_path(args.user) + "/keys", body)
        print(made["key"])  # stdout once, nothing else; stderr explains
        print(f"token {made['id']} for {made['username']}: store it now, it is not shown again",
              file=sys.stderr)  # fmt: skip
    elif args.action == "list":
        print_rows([_token_row(k) for k in _keys(client, args.user)], args.format)
    else:
        owner = args.user or _owner_of(client, args.token_id)
        client.delete(f"{_user_path(owner)}/keys/{quote(args.token_id, safe='')}")
        print(f"token {args.token_id} revoked")


def _keys(client: ApiClient, user: str | None) -> list[dict[str, Any]]:
    """The keys of `user`; without one, everyone's (an owner or admin) or the caller's own."""
    if user is not None:
        return _list(client.get(_user_path(user) + "/keys"))
    try:
        users = _list(client.get(USERS))
    except ApiError as exc:
        if exc.status != 403:
            raise
        return _list(client.get(_user_path("me") + "/keys"))
    return [key for u in users for key in _list(client.get(_user_path(u["id"]) + "/keys"))]


def _owner_of(client: ApiClient, token_id: str) -> str:
    for key in _keys(client, None):
        if key.get("id") == token_id:
            return str(key["user_id"])
    raise InvalidInput(f"no token {token_id!r} among the keys you can see")


def _list(answer: Any) -> list[dict[str, Any]]:
    if not isinstance(answer, list) or not all(isinstance(x, dict) for x in answer):
        raise InvalidInput("the gateway answered with something other than a list")
    return answer


def _user_row(user: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "username", "role", "status", "name", "email")
    row: dict[str, Any] = {key: printable(str(user.get(key, ""))) for key in keys}
    row["created_at"] = _seconds(user.get("created_at"))
    return row


def _token_row(key: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": printable(str(key.get("id", ""))),
        "user": printable(str(key.get("username", ""))),
        "name": printable(str(key.get("name", ""))),
        "created_at": _seconds(key.get("created_at")),
        "expires_at": _seconds(key.get("expires_at")),
        "revoked_at": _seconds(key.get("revoked_at")),
    }


def _seconds(moment: Any) -> str | None:
    """An API time as the local commands print it (to the second)."""
    if not isinstance(moment, str):
        return None
    head, _, rest = moment.partition(".")
    zone = rest[rest.find("+") :] if "+" in rest else ("Z" if rest.endswith("Z") else "")
    return printable(head + zone) if rest else printable(moment)
