"""`aibridged providers list|show|create|update|enable|disable|delete` over the management API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from aibridged.errors import InvalidInput
from aibridged.remote.client import ApiClient, RemoteError, printable
from aibridged.remote.inputs import confirm, parse_settings, read_keys

PROVIDERS = "/api/v2/ai/providers"


def run_providers(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> int:
    actions: dict[str, Callable[[argparse.Namespace, ApiClient, Mapping[str, str]], None]] = {
        "list": _list,
        "show": _show,
        "create": _create,
        "update": _update,
        "enable": _set_enabled,
        "disable": _set_enabled,
        "delete": _delete,
    }
    actions[args.action](args, client, env)
    return 0


def provider_path(ref: str) -> str:
    if not ref:
        raise InvalidInput("a provider name or id is needed")
    # A name cannot hold "/" or "?", but an argument can: quote it so it stays one segment.
    return f"{PROVIDERS}/{quote(ref, safe='')}"


def _list(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    providers = client.get(PROVIDERS)
    if not isinstance(providers, list) or not all(isinstance(p, dict) for p in providers):
        raise _unexpected(client, PROVIDERS)
    if args.format == "json":
        _print_json(providers)
        return
    # Imported here: admin_cli pulls in the daemon, which the other commands never need.
    from aibridged.admin_cli import print_rows

    print_rows([_list_row(p) for p in providers], "table")


def _list_row(provider: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": provider.get("name"),
        "type": provider.get("type"),
        "status": provider.get("status"),
        "base url": provider.get("effective_base_url"),
        "keys": ",".join(str(k.get("hint", "")) for k in _keys_of(provider)),
        "reason": provider.get("status_reason"),
    }


def _show(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    _print_provider(_get(client, args.provider), args.format)


def _create(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    body: dict[str, Any] = {"type": args.type, "name": args.name}
    if args.display_name is not None:
        body["display_name"] = args.display_name
    if args.base_url is not None:
        body["base_url"] = args.base_url
    if args.disabled:
        body["enabled"] = False
    if settings := parse_settings(
        args.setting, from_env=args.setting_env, from_files=args.setting_file
    ):
        body["settings"] = settings
    if keys := read_keys(args.key_sources, env):
        body["api_keys"] = keys
    _print_provider(_expect_provider(client, PROVIDERS, client.post(PROVIDERS, body)), args.format)


def _update(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    fields = (
        ("name", args.new_name),
        ("display_name", args.display_name),
        ("base_url", args.base_url),
    )
    body: dict[str, Any] = {field: value for field, value in fields if value is not None}
    if settings := parse_settings(
        args.setting, args.unset_setting, from_env=args.setting_env, from_files=args.setting_file
    ):
        body["settings"] = settings
    path, keys = _key_update(args, client, env)
    if keys is not None:
        body["api_keys"] = keys
    if not body:
        raise InvalidInput("nothing to change: see `aibridged providers update --help`")
    _print_provider(_expect_provider(client, path, client.patch(path, body)), args.format)


def _key_update(
    args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]
) -> tuple[str, list[Any] | None]:
    """Where to send the PATCH, and the new `api_keys` (None: leave the keys alone)."""
    new_keys: list[Any] = list(read_keys(args.key_sources, env))
    if args.keep_keys and not (new_keys or args.remove_key):
        raise InvalidInput("--keep-keys goes with --key-env, --key-file or --key-stdin")
    if not (args.keep_keys or args.remove_key):
        return provider_path(args.provider), new_keys or None
    current = _get(client, args.provider)
    # The id, not the argument: the PATCH must reach the provider whose keys were read.
    path = provider_path(str(current.get("id", args.provider)))
    return path, [*_kept_keys(current, args.remove_key), *new_keys]


def _kept_keys(provider: dict[str, Any], removed: list[str]) -> list[dict[str, str]]:
    existing = [str(k.get("id")) for k in _keys_of(provider)]
    unknown = [key_id for key_id in removed if key_id not in existing]
    if unknown:
        name = provider.get("name")
        raise InvalidInput(f"provider {name} has no key {', '.join(unknown)}")
    return [{"id": key_id} for key_id in existing if key_id not in removed]


def _set_enabled(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    path = provider_path(args.provider)
    enabled = args.action == "enable"
    provider = _expect_provider(client, path, client.patch(path, {"enabled": enabled}))
    name = provider.get("name", args.provider)
    print(f"provider {name} is {'enabled' if enabled else 'disabled'}")
    if enabled and provider.get("status") == "error":
        # Enabled, yet it will not serve: say why now rather than at the first failed request.
        reason = printable(str(provider.get("status_reason", "")))
        print(f"aibridged: warning: provider {name} cannot serve: {reason}", file=sys.stderr)


def _delete(args: argparse.Namespace, client: ApiClient, env: Mapping[str, str]) -> None:
    path = provider_path(args.provider)
    name = args.provider
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInput(f"not deleting provider {args.provider} without --yes")
        provider = _get(client, args.provider)
        name = str(provider.get("name", args.provider))
        path = provider_path(str(provider.get("id", args.provider)))
        keys = len(_keys_of(provider))
        prompt = f"delete provider {name} ({provider.get('type')}, {keys} keys)? type its name: "
        if not confirm(prompt, name):
            raise InvalidInput(f"provider {name} not deleted")
    client.delete(path)
    print(f"provider {name} deleted")


def _get(client: ApiClient, ref: str) -> dict[str, Any]:
    path = provider_path(ref)
    return _expect_provider(client, path, client.get(path))


def _expect_provider(client: ApiClient, path: str, answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise _unexpected(client, path)
    return answer


def _unexpected(client: ApiClient, path: str) -> RemoteError:
    return RemoteError(f"{client.credentials.url}{path} answered something that is not a provider")


def _keys_of(provider: dict[str, Any]) -> list[dict[str, Any]]:
    keys = provider.get("api_keys")
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def _print_provider(provider: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        _print_json(provider)
        return
    width = max((len(field) for field in provider), default=0) + 1
    for field, value in provider.items():
        print(f"{field + ':':<{width}} {_render(field, value)}".rstrip())


def _render(field: str, value: Any) -> str:
    if field == "api_keys" and isinstance(value, list):
        # The id is shown because `update --remove-key` takes it.
        return ", ".join(f"{k.get('hint')} ({k.get('id')})" for k in value if isinstance(k, dict))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return printable(str(value))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))
