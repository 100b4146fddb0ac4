"""`aibridged interceptions list`: recorded interceptions exported over the management API.

The export pages through the API itself (1,000 a page, the cursor is the last id), writing each
page as it arrives, so memory stays flat however many there are. `--format json` is one JSON
array; if the export stops early (an error, Ctrl-C) the array is still closed, so what was
written parses, and the exit code (1, or 130 for an interrupt) says it is incomplete.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlencode

from aibridged.remote.client import ApiClient, RemoteError, printable

PATH = "/api/v2/aibridge/interceptions"
PAGE = 1000  # the API's largest page
FILTERS = (
    ("initiator", "initiator"),
    ("provider", "provider"),
    ("provider_name", "provider_name"),
    ("model", "model"),
    ("client", "client"),
    ("session_id", "session_id"),
    ("started_after", "started_after"),
    ("started_before", "started_before"),
)
CSV_COLUMNS = (
    "id", "started_at", "ended_at", "initiator_id", "initiator_username", "provider",
    "provider_name", "model", "client", "session_id", "thread_root_id", "credential_kind",
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens",
    "tool_calls", "prompt",
)  # fmt: skip
TABLE_COLUMNS = ("id", "started_at", "initiator_username", "provider_name", "model", "client",
                 "input_tokens", "output_tokens", "tool_calls")  # fmt: skip


def add_interceptions_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("interceptions", help="export recorded interceptions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list interceptions, newest first")
    add_filter_options(listing, cursor="--after-id")


def add_filter_options(listing: argparse.ArgumentParser, *, cursor: str) -> None:
    """The filters, the cursor, --limit and --format of a `list` command."""
    listing.description = "Filters combine; times are RFC 3339 (2026-12-01T09:30:00Z)."
    listing.add_argument("--initiator", metavar="USER", help="a user id, a username or 'me'")
    listing.add_argument("--started-after", metavar="TIME")
    listing.add_argument("--started-before", metavar="TIME")
    listing.add_argument("--provider", metavar="TYPE", help="openai or anthropic (the wire format)")
    listing.add_argument("--provider-name", metavar="NAME")
    listing.add_argument("--model", metavar="MODEL")
    listing.add_argument("--client", metavar="CLIENT", help='e.g. "Claude Code"')
    listing.add_argument("--session-id", metavar="ID")
    listing.add_argument(cursor, metavar="ID", help="start after this one")
    listing.add_argument(
        "--limit", type=_positive, default=100, metavar="N",
        help="how many at most (default 100; above 1000 pages through the API)",
    )  # fmt: skip
    listing.add_argument("--format", choices=["json", "jsonl", "csv", "table"], default="json")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def query(args: argparse.Namespace) -> str:
    """The API's `q` from the filter options (values quoted when they need it)."""
    terms = []
    for option, key in FILTERS:
        value = getattr(args, option)
        if value is not None:
            terms.append(f"{key}:{_quoted(value)}")
    return " ".join(terms)


def _quoted(value: str) -> str:
    if value and not any(c.isspace() or c in '"\\' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pages(
    client: ApiClient,
    q: str,
    limit: int,
    after: str | None,
    *,
    path: str = PATH,
    results: str = "results",
    cursor: str = "after_id",
) -> Iterator[list[Any]]:
    """Pages of at most 1,000 rows of `path` until `limit` rows or the end; the cursor is the
    last row's id."""
    left = limit
    while left > 0:
        want = min(PAGE, left)
        params = {"q": q, "limit": str(want)}
        if after:
            params[cursor] = after
        answer = client.get(f"{path}?{urlencode(params)}")
        rows = answer.get(results) if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise RemoteError(f"{client.credentials.url}{path} answered without {results}")
        if not rows:
            return
        yield rows
        left -= len(rows)
        after = str(rows[-1]["id"])
        if len(rows) < want:
            return  # a short page is the last one


def run_interceptions(args: argparse.Namespace, client: ApiClient, out: IO[str]) -> int:
    rows = pages(client, query(args), args.limit, args.after_id)
    return export(rows, _WRITERS[args.format], out, noun="interceptions")


def export(rows: Iterator[list[Any]], make: Any, out: IO[str], *, noun: str) -> int:
    """Write pages as they come; on an interrupt or an error, close what was written (a JSON
    array stays one document) and say it is incomplete. Nothing is written before the first
    answer: a refused query prints only its error."""
    writer: Any = None
    progress = _Progress(sys.stderr, noun)
    try:
        for page in rows:
            writer = writer or make(out)
            writer.write(page)
            progress.add(len(page))
    except KeyboardInterrupt:
        _finish(writer, progress)
        print(f"aibridged: interrupted after {progress.count} {noun}: the export is "
              "incomplete", file=sys.stderr)  # fmt: skip
        return 130
    except BaseException:
        _finish(writer, progress)
        raise
    _finish(writer or make(out), progress)
    return 0


def _finish(writer: Any, progress: _Progress) -> None:
    if writer is not None:
        writer.close()
    progress.done()


class _Progress:
    """`exported N interceptions` on one line of stderr, only when it is a terminal."""

    def __init__(self, stream: IO[str], noun: str) -> None:
        self.stream, self.noun, self.count, self._shown = stream, noun, 0, False
        self._tty = stream.isatty()

    def add(self, rows: int) -> None:
        self.count += rows
        if self._tty and self.count > PAGE:
            self.stream.write(f"\rexported {self.count} {self.noun}")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\n")


_PLAIN = ("id", "started_at", "ended_at", "provider", "provider_name", "model", "client",
          "session_id", "thread_root_id", "credential_kind")  # fmt: skip
_TOKENS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """One interception as a flat row (its usages summed, its last prompt)."""
    usages = row.get("token_usages") or []
    prompts = row.get("user_prompts") or []
    initiator = row.get("initiator") or {}
    flattened = {key: row.get(key) for key in _PLAIN}
    flattened["initiator_id"] = initiator.get("id")
    flattened["initiator_username"] = initiator.get("username")
    for key in _TOKENS:
        flattened[key] = sum(int(u.get(key) or 0) for u in usages)
    flattened["tool_calls"] = len(row.get("tool_usages") or [])
    flattened["prompt"] = prompts[-1]["prompt"] if prompts else ""
    return flattened


class JsonWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out, self.first, self.closed = out, True, False
        out.write("[")

    def write(self, page: list[Any]) -> None:
        for row in page:
            self.out.write("\n" if self.first else ",\n")
            self.out.write(json.dumps(row, ensure_ascii=False))
            self.first = False
        self.out.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.write("]\n" if self.first else "\n]\n")
            self.out.flush()


class JsonLinesWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, page: list[Any]) -> None:
        for row in page:
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class CsvWriter:
    """A header, then one flattened row per record."""

    def __init__(self, out: IO[str], columns: tuple[str, ...] = CSV_COLUMNS,
                 flatten: Any = None) -> None:  # fmt: skip
        self.out, self.flatten = out, flatten or flat
        self.writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, page: list[Any]) -> None:
        self.writer.writerows(self.flatten(row) for row in page)
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class TableWriter:
    """Aligned columns: the rows are kept until the end to size them (meant for a screenful)."""

    def __init__(self, out: IO[str], columns: tuple[str, ...] = TABLE_COLUMNS,
                 flatten: Any = None) -> None:  # fmt: skip
        self.out, self.columns, self.flatten = out, columns, flatten or flat
        self.rows: list[dict[str, Any]] = []

    def write(self, page: list[Any]) -> None:
        self.rows += [self.flatten(row) for row in page]

    def close(self) -> None:
        if not self.rows:
            return
        cols = self.columns
        widths = {c: max(len(c), *(len(printable(str(r[c] or ""))) for r in self.rows))
                  for c in cols}  # fmt: skip
        lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip()]
        lines += ["  ".join(printable(str(r[c] or "")).ljust(widths[c]) for c in cols).rstrip()
                  for r in self.rows]  # fmt: skip
        self.out.write("\n".join(lines) + "\n")
        self.rows = []


_WRITERS: dict[str, Any] = {
    "json": JsonWriter,
    "jsonl": JsonLinesWriter,
    "csv": CsvWriter,
    "table": TableWriter,
}
