"""The remote commands: `aibridged login`, `aibridged providers ...`, `aibridged interceptions
list`, `aibridged sessions ...` (and `users`/`tokens` with `--remote`) talk to a gateway's
management API over HTTP, with no configuration file and no database of their own."""

from __future__ import annotations

import argparse
import os
import sys

from aibridged.errors import AibridgedError
from aibridged.remote.accounts import run_accounts
from aibridged.remote.client import ApiClient, ApiError, RemoteError
from aibridged.remote.credentials import resolve_credentials
from aibridged.remote.interceptions import run_interceptions
from aibridged.remote.login import login
from aibridged.remote.parsers import add_remote_parsers
from aibridged.remote.providers import run_providers
from aibridged.remote.sessions import run_sessions

REMOTE_COMMANDS = frozenset({"login", "providers", "interceptions", "sessions"})

__all__ = ["REMOTE_COMMANDS", "add_remote_parsers", "run_remote"]


def run_remote(args: argparse.Namespace) -> int:
    """Run a remote command; its errors go to stderr as `aibridged: ...` and give exit 1."""
    try:
        if args.command == "login":
            return login(args, os.environ)
        client = ApiClient(resolve_credentials(os.environ, _notice))
        if args.command == "interceptions":
            return run_interceptions(args, client, sys.stdout)
        if args.command == "sessions":
            return run_sessions(args, client, sys.stdout)
        if args.command in ("users", "tokens"):
            return run_accounts(args, client)
        return run_providers(args, client, os.environ)
    except RemoteError as exc:
        _report(exc.message, exc.details)
        if isinstance(exc, ApiError) and exc.status == 401:
            _report("log in again with `aibridged login URL`, or check AIBRIDGED_TOKEN", [])
    except AibridgedError as exc:
        _report(str(exc), [])
    return 1


def _notice(line: str) -> None:
    print(line, file=sys.stderr)


def _report(message: str, details: list[str]) -> None:
    print(f"aibridged: {message}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)
