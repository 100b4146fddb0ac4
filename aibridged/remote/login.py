"""`aibridged login URL`: check a token against the gateway, then save both for later commands."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from aibridged.remote.client import ApiClient, ApiError, Credentials, RemoteError, printable
from aibridged.remote.credentials import (
    check_token,
    credentials_path,
    normalize_url,
    save_credentials,
)
from aibridged.remote.inputs import read_token

ME = "/api/v2/users/me"


def login(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = normalize_url(args.url)
    source = f"--token-file {args.token_file}" if args.token_file else "stdin"
    credentials = Credentials(url, check_token(read_token(args.token_file, url), source))
    try:
        me = ApiClient(credentials).get(ME)
    except ApiError as exc:
        if exc.status == 401:
            raise RemoteError(
                f"{url} did not accept the token ({exc.message}); nothing saved"
            ) from exc
        raise
    if not isinstance(me, dict) or not isinstance(me.get("username"), str):
        raise RemoteError(f"{url}{ME} did not answer with a user: is this an aibridged gateway?")
    save_credentials(credentials_path(env), credentials)
    username, role = printable(me["username"]), printable(str(me.get("role", "")))
    print(f"logged in to {url} as {username} ({role})")
    return 0
