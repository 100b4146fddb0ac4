"""API token format: `<10-char id>-<22-char secret>`, as Coder's API keys.

Only SHA-256 of the secret is stored. The secret carries ~131 bits of randomness, so an unsalted
fast hash is the right tool (a slow KDF would only slow down the data plane).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 10
SECRET_LENGTH = 22
_TOKEN_RE = re.compile(r"^([A-Za-z0-9]{10})-([A-Za-z0-9]{22})$")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    id: str
    secret: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"ParsedToken(id={self.id!r})"


def generate_token() -> tuple[str, str]:
    """A new (id, secret) pair."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return token_id, secret


def format_token(token_id: str, secret: str) -> str:
    return f"{token_id}-{secret}"


def parse_token(text: str) -> ParsedToken | None:
    """Split a presented token; None when it is not of our format."""
    match = _TOKEN_RE.match(text)
    if match is None:
        return None
    return ParsedToken(match[1], match[2])


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def secret_matches(secret: str, hashed: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), hashed)
