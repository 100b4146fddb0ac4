"""`aibridged migrate|users|tokens|secrets`: local-database administration."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from aibridged.config import Config, parse_duration
from aibridged.daemon import open_database
from aibridged.errors import InvalidInput
from aibridged.secretbox import write_key_file
from aibridged.startup import prepare_secret_box
from aibridged.store import Store, apply_migrations
from aibridged.store import providers as p
from aibridged.store import users as u


async def run(config: Config, args: argparse.Namespace) -> int:
    async with open_database(config) as store:
        applied = await apply_migrations(store)
        if args.command == "migrate":
            print(f"applied migrations: {applied}" if applied else "database schema is up to date")
            return 0
        if args.command == "users":
            return await _users(store, args)
        if args.command == "secrets":
            return await _secrets(store, config, args)
        return await _tokens(store, args)


def _user_row(user: u.User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "role": user.role,
        "status": user.status,
        "name": user.name,
        "email": user.email,
        "created_at": user.created_at.isoformat(timespec="seconds"),
    }


def _token_row(token: u.ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.username,
        "name": token.name,
        "created_at": token.created_at.isoformat(timespec="seconds"),
        "expires_at": token.expires_at.isoformat(timespec="seconds") if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else None,
    }


async def _users(store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        user = await u.create_user(
            store, username=args.username, role=args.role, name=args.name, email=args.email
        )
        print_rows([_user_row(user)], "table")
    elif args.action == "list":
        print_rows([_user_row(x) for x in await u.list_users(store)], args.format)
    else:
        status = "suspended" if args.action == "suspend" else "active"
        user = await u.set_user_status(store, args.username, status)
        print(f"user {user.username} is {user.status}")
    return 0


async def _tokens(store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        record, plaintext = await u.create_token(
            store, args.user, name=args.name, lifetime=parse_lifetime(args.lifetime)
        )
        # The plaintext goes to stdout once and nowhere else; stderr explains.
        print(plaintext)
        print(
            f"token {record.id} for {record.username}: store it now, it is not shown again",
            file=sys.stderr,
        )
    elif args.action == "list":
        print_rows([_token_row(t) for t in await u.list_tokens(store, args.user)], args.format)
    else:
        token = await u.revoke_token(store, args.token_id)
        print(f"token {token.id} revoked")
    return 0


async def _secrets(store: Store, config: Config, args: argparse.Namespace) -> int:
    path = config.server.secrets_key_path
    box = await prepare_secret_box(store, path, may_create=False)
    if args.action == "rotate":
        rotated = box.rotated()
        # The file first: it holds the old keys too, so whatever happens next still opens.
        write_key_file(path, rotated)
        count = await p.reseal_all(
            store, lambda sealed, context: rotated.seal(box.open(sealed, context=context),
                                                        context=context)
        )  # fmt: skip
        print(f"new key {rotated.key_ids[0]} first in {path}; {count} secrets sealed again")
        print("copy the file to every replica, restart them, then run `aibridged secrets prune`")
        return 0
    stale = [v for v in await p.all_sealed(store) if not box.sealed_by_current(v)]
    if stale:
        raise InvalidInput(
            f"{len(stale)} stored secrets are sealed under older keys: run"
            " `aibridged secrets rotate` first"
        )
    pruned = box.only_current()
    write_key_file(path, pruned)
    print(f"{path} holds one key now: {pruned.key_ids[0]}")
    return 0


def parse_lifetime(text: str | None) -> timedelta | None:
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise InvalidInput("--lifetime must be positive")
    return timedelta(seconds=seconds)


def print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        return
    columns = list(rows[0])
    widths = {
        c: max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in rows)) for c in columns
    }
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print(
            "  ".join(
                str(row[c] if row[c] is not None else "").ljust(widths[c]) for c in columns
            ).rstrip()
        )
