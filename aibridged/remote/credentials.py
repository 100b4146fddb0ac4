"""Where the remote commands find the gateway URL and token, and how `login` saves them."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aibridged.errors import InvalidInput
from aibridged.remote.client import Credentials, RemoteError

URL_ENV = "AIBRIDGED_URL"
TOKEN_ENV = "AIBRIDGED_TOKEN"
NOT_LOGGED_IN = f"not logged in: run `aibridged login URL`, or set {URL_ENV} and {TOKEN_ENV}"


def credentials_path(env: Mapping[str, str]) -> Path:
    # The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "aibridged" / "credentials.json"


def resolve_credentials(
    env: Mapping[str, str], notice: Callable[[str], None] = lambda line: None
) -> Credentials:
    """The environment's URL and token if both are set, else the saved login.

    A token alone (the demo's instructions export AIBRIDGED_TOKEN for clients such as Codex)
    leaves the saved login in charge, whole, with a `notice` saying so; a URL alone is an
    error. Either way one variable is never paired with the other half of the saved login,
    which could send a token to a URL it was never meant for."""
    url, token = env.get(URL_ENV, ""), env.get(TOKEN_ENV, "")
    if url and token:
        return Credentials(normalize_url(url, URL_ENV), check_token(token, TOKEN_ENV))
    path = credentials_path(env)
    if token and path.exists():
        saved = load_credentials(path)
        notice(f"aibridged: {URL_ENV} is not set: using the saved login for {saved.url} "
               f"({TOKEN_ENV} is ignored)")  # fmt: skip
        return saved
    if url or token:
        # Pairing one variable with the saved file's other half could send a token to a URL
        # it was never meant for.
        have, lack = (URL_ENV, TOKEN_ENV) if url else (TOKEN_ENV, URL_ENV)
        raise InvalidInput(f"{have} is set but {lack} is not: set both, or neither")
    return load_credentials(path)


def load_credentials(path: Path) -> Credentials:
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(NOT_LOGGED_IN) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError:
        saved = None
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("url"), str)
        and isinstance(saved.get("token"), str)
    ):
        raise InvalidInput(f"{path} is not a saved login: run `aibridged login URL` again")
    return Credentials(
        normalize_url(saved["url"], str(path)), check_token(saved["token"], str(path))
    )


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Write the login atomically, readable by the user only: a crash leaves the old file or the
    new one, never a token in a file others can read."""
    text = json.dumps({"url": credentials.url, "token": credentials.token}, indent=2) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir leaves an existing directory as it was; this one holds a token.
        os.chmod(path.parent, 0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    except OSError as exc:
        raise RemoteError(f"cannot save the login in {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise RemoteError(f"cannot save the login to {path}: {exc.strerror}") from exc


def normalize_url(text: str, source: str = "URL") -> str:
    """`http(s)://host[:port][/path]` without a trailing slash, so paths can be appended."""
    url = text.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    usage = "use http://HOST[:PORT] or https://HOST[:PORT]"
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"invalid {source} {text!r}: {usage}")
    if parts.query or parts.fragment or parts.username is not None:
        raise InvalidInput(f"invalid {source} {text!r}: no user, query or fragment; {usage}")
    return url


def check_token(token: str, source: str) -> str:
    # A token with a space or a newline cannot be one of ours, and would break the header.
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise InvalidInput(f"the token from {source} is empty or holds spaces")
    return token
