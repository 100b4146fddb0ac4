"""libpq connection strings for the native connections (store/native.py): built from the
daemon's database URL, with the session's name and settings, host names resolved off the event
loop, and a scrubber that takes the password out of messages."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aibridged.errors import StoreUnavailable


def native_conninfo(dsn: str, application_name: str, settings: dict[str, str]) -> str:
    """libpq's connection string for `dsn` (a URL or key=value), naming the session and
    setting `settings` at connect (no round trip of its own). ValueError if unparsable."""
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise ValueError(str(exc)) from exc
    options = [str(given["options"])] if given.get("options") else []
    # Times are read and written in UTC whatever the server's default (as asyncpg does).
    for key, value in {"TimeZone": "UTC", **settings}.items():
        options.append(f"-c {_option(key)}={_option(value)}")
    return make_conninfo(
        dsn,
        application_name=application_name,
        client_encoding="UTF8",
        options=" ".join(options),
    )


async def resolve_host(conninfo: str, shown: str) -> str:
    """`conninfo` with its host name's addresses as `hostaddr`: libpq would look the name up
    inside `connect_start`, blocking the thread (and so every task) until DNS answers. trio
    looks it up in a worker thread. Socket paths, addresses and lists of hosts go as they are."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "")
    if not host or params.get("hostaddr") or "," in host or host[0] in "/@" or _is_address(host):
        return conninfo
    port = str(params.get("port") or "5432")
    try:
        found = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot connect to database {shown}: cannot resolve {host}: {exc}"
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        return conninfo
    return make_conninfo(
        conninfo, host=",".join([host] * len(addresses)), hostaddr=",".join(addresses)
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def secret_scrubber(conninfo: str) -> Callable[[str], str]:
    """A function taking the connection's secrets (its password) out of a message."""
    secrets = [
        str(value)
        for key, value in conninfo_to_dict(conninfo).items()
        if key in ("password", "sslpassword") and value
    ]

    def scrub(message: str) -> str:
        for secret in secrets:
            message = message.replace(secret, "***")
        return message

    return scrub


def _option(text: str) -> str:
    # libpq splits `options` at spaces; a backslash escapes the next character.
    return text.replace("\\", "\\\\").replace(" ", "\\ ")
