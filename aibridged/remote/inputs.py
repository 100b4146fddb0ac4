"""Secrets and values the remote commands read: API keys, settings, the login token.

Keys and tokens never come from a plain argument: argv lands in shell history and in `ps` for
every user of the machine. They come from the environment, a file, or stdin.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibridged.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: str  # "env", "file" or "stdin"
    value: str  # the variable's name, the file's path, "" for stdin


class KeySourceAction(argparse.Action):
    """Appends every --key-env/--key-file/--key-stdin to one list, so keys keep the order in
    which they were given across the three options."""

    def __init__(self, option_strings: Sequence[str], dest: str, kind: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.kind = kind

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = values if isinstance(values, str) else ""
        # A new list each time: argparse shares the default between parses.
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), KeySource(self.kind, value)])


def read_keys(sources: Sequence[KeySource], env: Mapping[str, str]) -> list[str]:
    """The plaintext keys, in the order their sources were given."""
    if sum(s.kind == "stdin" for s in sources) > 1:
        raise InvalidInput("--key-stdin can be given once")
    keys: list[str] = []
    for source in sources:
        if source.kind == "env":
            keys.append(_key_from_env(source.value, env))
        elif source.kind == "file":
            keys.extend(_keys_from_file(Path(source.value)))
        else:
            keys.extend(_keys_from_stdin())
    return keys


def _key_from_env(name: str, env: Mapping[str, str]) -> str:
    key = env.get(name, "").strip()
    if not key:
        raise InvalidInput(f"--key-env {name}: the environment variable is not set or empty")
    return key


def _keys_from_file(path: Path) -> list[str]:
    try:
        keys = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidInput(f"--key-file {path}: cannot read it ({why})") from exc
    if not keys:
        raise InvalidInput(f"--key-file {path}: the file holds no key")
    return keys


def _keys_from_stdin() -> list[str]:
    if sys.stdin.isatty():
        # On a terminal, ask without echo: the keys should not stay on the screen.
        text = getpass.getpass("API keys (separated by spaces): ")
    else:
        text = sys.stdin.read()
    keys = text.split()
    if not keys:
        raise InvalidInput("--key-stdin: no key on stdin")
    return keys


def read_token(token_file: Path | None, url: str) -> str:
    """The login token from --token-file, else stdin (asked for without echo on a terminal)."""
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not text"
            raise InvalidInput(f"--token-file {token_file}: cannot read it ({why})") from exc
    if sys.stdin.isatty():
        return getpass.getpass(f"token for {url}: ").strip()
    return sys.stdin.read().strip()


def parse_settings(pairs: Sequence[str], unset: Sequence[str] = ()) -> dict[str, Any]:
    """`KEY=VALUE` pairs as an object: VALUE as JSON when it is JSON (`42`, `true`, `["a"]`),
    else as the string itself. Each unset key maps to None, which the API takes as "remove"."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        if not equals or not key:
            # The pair is not echoed: it may hold a secret setting's value.
            raise InvalidInput("--setting takes KEY=VALUE")
        settings[key] = _json_or_text(raw)
    for key in unset:
        if key in settings:
            raise InvalidInput(f"setting {key!r} is both set and unset")
        settings[key] = None
    return settings


def _json_or_text(raw: str) -> Any:
    def no_constants(name: str) -> Any:
        # NaN and Infinity parse in Python but are not JSON; the API would refuse the body.
        raise ValueError(name)

    try:
        return json.loads(raw, parse_constant=no_constants)
    except ValueError:
        return raw


def confirm(prompt: str, expected: str) -> bool:
    """True when the user types `expected` on the terminal. The prompt goes to stderr so stdout
    holds only results."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == expected
