"""SigV4 signatures for Bedrock requests, made by botocore's own signer (`SigV4Auth`).

Signed: the method, the path exactly as it goes on the wire, the query, the body's SHA-256, and
the headers `host`, `content-type`, `x-amz-date` (and `x-amz-security-token` for temporary
credentials). The client's other headers go unsigned: a header a proxy on the way adds or
rewrites cannot break the signature, and none of them changes what Bedrock does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from aibridged.intercept.upstream import Origin
from aibridged.safe import mask_secret

_SIGNING_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


@dataclass(frozen=True, slots=True)
class AwsKeys:
    """One set of AWS credentials, as signing uses them."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # wall-clock seconds; None: does not expire

    @property
    def hint(self) -> str:
        return mask_secret(self.access_key)


def signed_headers(
    keys: AwsKeys,
    *,
    service: str,
    region: str,
    method: str,
    origin: Origin,
    target: str,
    content_type: bytes | None,
    body: bytes,
) -> list[tuple[bytes, bytes]]:
    """The headers that sign this request (Authorization, X-Amz-Date, the session token)."""
    host = origin.host_header.decode("ascii")
    url = f"{origin.scheme.decode()}://{host}{origin.base_path}{target}"
    headers = {"host": host}
    if content_type is not None:
        headers["content-type"] = content_type.decode("latin-1")
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    credentials = ReadOnlyCredentials(keys.access_key, keys.secret_key, keys.token)
    SigV4Auth(credentials, service, region).add_auth(request)
    out = []
    for name in _SIGNING_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            out.append((name.lower().encode(), value.encode("latin-1")))
    return out
