"""The `aibridged` command line. `main(argv) -> exit code`; trio.run happens here and only here."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from aibridged import __version__
from aibridged.config import (
    Config,
    add_config_flags,
    flags_from_args,
    load_config,
    spell_out_bool_flags,
)
from aibridged.errors import AibridgedError, InvalidInput
from aibridged.log import LogTargets, configure_logging
from aibridged.remote import REMOTE_COMMANDS, add_remote_parsers, run_remote
from aibridged.remote.accounts import wants_remote

T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibridged", description="Self-hosted AI Gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            help="TOML file (default: $AIBRIDGED_CONFIG or /etc/aibridged/aibridged.toml)",
        )
        add_config_flags(p)
        return p

    # The same options after an action's name (`aibridged secrets rotate --config F`).
    after_action = argparse.ArgumentParser(add_help=False)
    after_action.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML file")
    add_config_flags(after_action, suppress=True)

    def actions(p: argparse.ArgumentParser) -> Any:
        return p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, help=help, parents=[after_action])
        return parser

    serve = with_config(sub.add_parser("serve", help="run the gateway"))
    serve.add_argument(
        "--demo",
        action="store_true",
        help="add the built-in demo-openai / demo-anthropic providers",
    )
    with_config(sub.add_parser("check-config", help="validate the configuration and exit"))
    with_config(sub.add_parser("migrate", help="apply database migrations and exit"))

    # Users and tokens: the local database, or a gateway's API with --remote (or AIBRIDGED_URL).
    remote_flag = argparse.ArgumentParser(add_help=False)
    remote_flag.add_argument(
        "--remote",
        action="store_true",
        default=argparse.SUPPRESS,
        help="through a gateway's API (AIBRIDGED_URL + AIBRIDGED_TOKEN, or `aibridged login`)",
    )

    def account_action(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, help=help, parents=[after_action, remote_flag]
        )
        return parser

    users = with_config(sub.add_parser(
        "users", help="manage users (the local database, or a gateway's API with --remote)",
        parents=[remote_flag]))  # fmt: skip
    users_sub = actions(users)
    create = account_action(users_sub, "create", "create a user")
    create.add_argument("username")
    create.add_argument("--role", default="member", choices=["owner", "admin", "auditor", "member"])
    create.add_argument("--name", default="")
    create.add_argument("--email", default="")
    _add_format(account_action(users_sub, "list", "list users"))
    account_action(
        users_sub, "suspend", "suspend a user (their tokens stop working within 5 s)"
    ).add_argument("username")
    account_action(users_sub, "activate", "re-activate a suspended user").add_argument("username")

    tokens = with_config(sub.add_parser(
        "tokens", help="manage API tokens (the local database, or a gateway's API with --remote)",
        parents=[remote_flag]))  # fmt: skip
    tokens_sub = actions(tokens)
    tcreate = account_action(tokens_sub, "create", "create a token and print it once")
    tcreate.add_argument("--user", required=True)
    tcreate.add_argument("--name", default="")
    tcreate.add_argument("--lifetime", help="e.g. 30d; default: no expiry")
    tlist = _add_format(account_action(tokens_sub, "list", "list tokens (never their secrets)"))
    tlist.add_argument("--user")
    revoke = account_action(tokens_sub, "revoke", "revoke a token by id")
    revoke.add_argument("token_id")
    revoke.add_argument("--user", help="whose token (remote: found among the visible ones)")

    secrets = with_config(sub.add_parser("secrets", help="the key ring sealing provider keys"))
    secrets_sub = actions(secrets)
    action(secrets_sub, "rotate", "put a new key first in the key file, seal every secret again")
    action(secrets_sub, "prune", "drop the old keys from the key file once nothing uses them")

    proxy = with_config(sub.add_parser(
        "proxy", help="run aibridgeproxyd, the CONNECT proxy (docs/proxy.md)"))  # fmt: skip
    proxy_sub = proxy.add_subparsers(dest="action", metavar="ACTION")
    ca = proxy_sub.add_parser("ca", help="the proxy's MITM certificate authority")
    ca_create = actions(ca).add_parser(
        "create", help="write a new CA (key mode 0600); never overwrites", parents=[after_action]
    )
    ca_create.add_argument("--cert", type=Path, help="default: proxy.ca_cert_file")
    ca_create.add_argument("--key", type=Path, help="default: proxy.ca_key_file")
    ca_create.add_argument("--common-name", default="aibridged proxy CA")

    sub.add_parser("version", help="print the version")
    add_remote_parsers(sub)
    return parser


def _add_format(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--format", choices=["table", "json"], default="table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(spell_out_bool_flags(given))
    if args.command == "version":
        print(__version__)
        return 0
    try:
        if args.command in REMOTE_COMMANDS or (
            args.command in ("users", "tokens") and wants_remote(args, os.environ)
        ):
            # They talk to a gateway over HTTP: no configuration file, no database.
            return run_remote(args)
        config = load_config(path=args.config, env=os.environ, flags=flags_from_args(args))
        if args.command == "check-config":
            print(f"configuration is valid ({config.source or 'defaults, environment and flags'})")
            return 0
        configure_logging(LogTargets(config.log.human, config.log.json, config.log.level))
        if args.command == "proxy":
            return _proxy(config, args)
        if args.command == "serve":
            from aibridged.daemon import run_daemon

            _run(lambda: run_daemon(config, demo=args.demo))
            return 0
        from aibridged import admin_cli

        return _run(lambda: admin_cli.run(config, args))
    except AibridgedError as exc:
        print(f"aibridged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aibridged providers list | head`: the reader left, not an error
        # Python flushes stdout again at exit: point it at /dev/null so that is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _proxy(config: Config, args: argparse.Namespace) -> int:
    if args.action is None:
        from aibridged.proxyd import run_proxy_daemon

        _run(lambda: run_proxy_daemon(config))
        return 0
    from aibridged.proxy.certs import create_ca

    cert = args.cert or config.proxy.ca_cert_file
    key = args.key or config.proxy.ca_key_file
    if cert is None or key is None:
        raise InvalidInput("give --cert and --key (or set proxy.ca_cert_file, proxy.ca_key_file)")
    create_ca(cert, key, common_name=args.common_name)
    print(f"CA certificate: {cert}\nCA key (mode 0600): {key}")
    print("Clients trust the certificate (never the key): NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, ...")
    return 0


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """trio.run, with single errors unwrapped from the exception groups nurseries produce."""

    async def call() -> T:
        return await fn()

    try:
        return trio.run(call)
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        real = [e for e in errors if isinstance(e, AibridgedError)]
        if real and len(real) == len(errors):
            raise real[0] from None
        raise


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
