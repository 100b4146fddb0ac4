"""The command-line shape of `aibridged login`, `aibridged providers ...`, `aibridged
interceptions list` and `aibridged sessions list|show`."""

from __future__ import annotations

import argparse
from pathlib import Path

from aibridged.remote.inputs import KeySourceAction
from aibridged.remote.interceptions import add_interceptions_parser
from aibridged.remote.sessions import add_sessions_parser

TYPES = "openai, anthropic, azure, google, openrouter, vercel, openai-compat, copilot, bedrock"


def add_remote_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = sub.add_parser(
        "login",
        help="check a token against a gateway and save both for the remote commands",
        description="The token is read from --token-file, else from stdin (asked for without "
        "echo on a terminal); never from an argument.",
    )
    login.add_argument("url", metavar="URL", help="the gateway, e.g. https://gateway.example.com")
    login.add_argument("--token-file", type=Path, metavar="PATH", help="read the token from PATH")

    providers = sub.add_parser(
        "providers", help="manage AI providers through a gateway's management API"
    )
    actions = providers.add_subparsers(dest="action", required=True, metavar="ACTION")
    _with_format(actions.add_parser("list", help="list providers"))
    _with_ref(_with_format(actions.add_parser("show", help="show one provider")))
    _add_create(actions)
    _add_update(actions)
    _with_ref(actions.add_parser("enable", help="enable a provider"))
    _with_ref(actions.add_parser("disable", help="disable a provider (its requests get 503)"))
    delete = _with_ref(actions.add_parser("delete", help="delete a provider and its keys"))
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_interceptions_parser(sub)
    add_sessions_parser(sub)


def _add_create(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = _with_format(actions.add_parser("create", help="create a provider"))
    create.add_argument("--type", required=True, help=f"one of {TYPES}")
    create.add_argument("--name", required=True, help="lowercase letters, digits, single dashes")
    create.add_argument("--display-name", metavar="TEXT")
    create.add_argument("--base-url", metavar="URL", help="default: the type's own")
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    _with_settings(create)
    _with_keys(create)


def _add_update(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = _with_ref(_with_format(actions.add_parser("update", help="change a provider")))
    update.add_argument("--name", dest="new_name", metavar="NEW", help="rename it")
    update.add_argument("--display-name", metavar="TEXT")
    update.add_argument("--base-url", metavar="URL", help='"" for the type\'s default')
    _with_settings(update)
    update.add_argument(
        "--unset-setting", action="append", default=[], metavar="KEY", help="remove a setting"
    )
    _with_keys(update)
    update.add_argument(
        "--keep-keys", action="store_true", help="add the new keys after the existing ones"
    )
    update.add_argument(
        "--remove-key", action="append", default=[], metavar="KEY_ID", help="remove a key by id"
    )


def _with_ref(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("provider", metavar="NAME_OR_ID")
    return p


def _with_format(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--format", choices=["table", "json"], default="table")
    return p


def _with_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting (a string); secret ones only with --setting-env or --setting-file",
    )
    p.add_argument(
        "--setting-env",
        action="append",
        default=[],
        metavar="KEY=VAR",
        help="a setting from the environment variable VAR (for secret settings)",
    )
    p.add_argument(
        "--setting-file",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="a setting from the file PATH (for secret settings)",
    )


def _with_keys(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("API keys (never an argument: they would land in shell history)")
    group.add_argument(
        "--key-env",
        action=KeySourceAction,
        kind="env",
        dest="key_sources",
        default=[],
        metavar="NAME",
        help="a key from the environment variable NAME",
    )
    group.add_argument(
        "--key-file",
        action=KeySourceAction,
        kind="file",
        dest="key_sources",
        default=[],
        metavar="PATH",
        help="keys from PATH, separated by whitespace",
    )
    group.add_argument(
        "--key-stdin",
        action=KeySourceAction,
        kind="stdin",
        dest="key_sources",
        default=[],
        nargs=0,
        help="keys from stdin, separated by whitespace",
    )
