"""Talking to the management API: one blocking JSON request at a time, errors as one clear text.

A CLI waits for its answer anyway, so this is plain `urllib.request`: no trio, no extra package.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any

from aibridged import __version__
from aibridged.errors import AibridgedError

TIMEOUT_S = 10.0


class RemoteError(AibridgedError):
    """A remote command failed: `message` is the `aibridged: ...` line, `details` the indented
    lines under it (one per bad field)."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class ApiError(RemoteError):
    """The gateway answered with an error status."""

    def __init__(self, status: int, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message, details)
        self.status = status


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    token: str

    def __repr__(self) -> str:
        # A traceback or a debug print must never show the token.
        return f"Credentials(url={self.url!r})"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect with the Authorization header, to any host: the token
    would leave for wherever the answer points. Stop instead, and say where it pointed."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class ApiClient:
    def __init__(self, credentials: Credentials, *, timeout_s: float = TIMEOUT_S) -> None:
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer (None for an empty one); RemoteError for anything else."""
        url = self.credentials.url + path
        headers = {
            "Authorization": f"Bearer {self.credentials.token}",
            "Accept": "application/json",
            "User-Agent": f"aibridged-cli/{__version__}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return _decode(url, response.status, response.read())
        except urllib.error.HTTPError as exc:
            raise _error_from_answer(url, exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            # URLError is an OSError; so are refused connections, DNS, TLS and timeouts.
            raise RemoteError(f"cannot reach {url}: {_why(exc, self.timeout_s)}") from exc


def _decode(url: str, status: int, raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise RemoteError(
            f"{url} answered {status} without JSON: is this the URL of an aibridged gateway?"
        ) from None


def _error_from_answer(url: str, exc: urllib.error.HTTPError) -> RemoteError:
    if 300 <= exc.code < 400:
        target = exc.headers.get("Location", "")
        return ApiError(exc.code, f"{url} redirects to {printable(target)}: use that URL instead")
    try:
        body = json.loads(exc.read())
    except (OSError, ValueError, http.client.HTTPException):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        # Not the gateway's error shape: a proxy in front of it, or not a gateway at all.
        return ApiError(exc.code, f"{url} answered {exc.code} {printable(str(exc.reason))}")
    line = printable(body["message"])
    if body.get("detail"):
        line += f": {printable(str(body['detail']))}"
    details = [
        f"{printable(str(v.get('field', '')))}: {printable(str(v.get('detail', '')))}"
        for v in body.get("validations") or []
        if isinstance(v, dict)
    ]
    return ApiError(exc.code, line, details)


def _why(exc: BaseException, timeout_s: float) -> str:
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror})"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return printable(str(reason)) or type(reason).__name__


def printable(text: str) -> str:
    """Text from the server with control characters replaced: an answer must not be able to
    move the cursor or recolour the terminal it is printed on."""
    return "".join(c if c.isprintable() else "?" for c in text)
