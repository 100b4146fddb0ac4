"""Secrets at rest: AES-256-GCM under a key ring kept in a file (`<state_dir>/secrets.key`).

The file holds one key per line (`aibridged-secrets-v1:<base64>`), the newest first; `#` lines
are comments. New secrets are sealed with the first key; any key of the ring opens what it
sealed, so a rotation can add a key first and re-seal everything after (`aibridged secrets
rotate`).

A sealed value is `0x01 | key id (8 bytes) | nonce (12) | ciphertext and tag`. The key id is the
start of the key's SHA-256, so a value sealed under a key the ring does not hold is told apart
from a value that was tampered with, and the error can say which. The associated data binds a
value to its place (a provider's key cannot be copied onto another provider).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aibridged.errors import SecretsError, UnknownSecretsKey

_PREFIX = "aibridged-secrets-v1:"
_VERSION = 1
_KEY_BYTES = 32
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = 1 + _ID_BYTES + _NONCE_BYTES


@dataclass(frozen=True, slots=True)
class _Key:
    id: bytes
    aead: AESGCM = field(repr=False)


def _key_id(material: bytes) -> bytes:
    return hashlib.sha256(material).digest()[:_ID_BYTES]


class SecretBox:
    """Seals and opens secrets with a key ring; the first key seals."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretsError("the secrets key ring is empty")
        self._materials = list(keys)
        self._keys = {_key_id(k): _Key(_key_id(k), AESGCM(k)) for k in keys}
        self._current = self._keys[_key_id(keys[0])]

    @classmethod
    def generate(cls) -> SecretBox:
        return cls([AESGCM.generate_key(bit_length=256)])

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(_key_id(k).hex() for k in self._materials)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, plaintext, context)
        return bytes([_VERSION]) + self._current.id + nonce + sealed

    def open(self, blob: bytes, *, context: bytes) -> bytes:
        if len(blob) < _HEADER + 16 or blob[0] != _VERSION:
            raise SecretsError("a stored secret is malformed")
        key = self._keys.get(blob[1 : 1 + _ID_BYTES])
        if key is None:
            raise UnknownSecretsKey(
                f"a stored secret was sealed with secrets key {blob[1 : 1 + _ID_BYTES].hex()},"
                f" which the key file does not hold (it holds {', '.join(self.key_ids)}):"
                " the key file is not the one this database was set up with"
            )
        try:
            return key.aead.decrypt(blob[1 + _ID_BYTES : _HEADER], blob[_HEADER:], context)
        except InvalidTag as exc:
            raise SecretsError("a stored secret does not decrypt: it was altered") from exc

    def sealed_by_current(self, blob: bytes) -> bool:
        return blob[1 : 1 + _ID_BYTES] == self._current.id

    def rotated(self) -> SecretBox:
        """A ring with a fresh key first and every key of this one after it."""
        return SecretBox([AESGCM.generate_key(bit_length=256), *self._materials])

    def only_current(self) -> SecretBox:
        return SecretBox(self._materials[:1])

    def file_text(self) -> str:
        lines = [
            "# aibridged secrets key ring: the first key seals, every key opens. Keep it private",
            "# and backed up: without it the provider keys in the database cannot be read.",
        ]
        lines += [_PREFIX + base64.b64encode(k).decode() for k in self._materials]
        return "\n".join(lines) + "\n"


def parse_key_file(text: str, source: str) -> SecretBox:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(_PREFIX):
            raise SecretsError(f"{source} line {number}: not an aibridged secrets key")
        try:
            material = base64.b64decode(line[len(_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SecretsError(f"{source} line {number}: the key is not valid base64") from exc
        if len(material) != _KEY_BYTES:
            raise SecretsError(f"{source} line {number}: a key must be {_KEY_BYTES} bytes")
        keys.append(material)
    if not keys:
        raise SecretsError(f"{source} holds no key")
    return SecretBox(keys)


def _keep_owner(path: Path, fd: int) -> None:
    """A rewritten key file keeps its owner: `sudo aibridged secrets rotate` must not leave a
    file the service user cannot read."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return
    if os.geteuid() == 0 and (current.st_uid, current.st_gid) != (0, 0):
        os.fchown(fd, current.st_uid, current.st_gid)


def load_secret_box(path: Path, *, create: bool) -> SecretBox:
    """The key ring in `path`; with `create`, a new one (mode 0600) when it is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not create:
            raise SecretsError(f"secrets key file {path} does not exist") from None
        write_key_file(path, SecretBox.generate(), exclusive=True)
        return load_secret_box(path, create=False)  # another process may have won the race
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError(f"cannot read secrets key file {path}: {exc}") from exc
    return parse_key_file(text, str(path))


def write_key_file(path: Path, box: SecretBox, *, exclusive: bool = False) -> None:
    """Write the ring to `path` with mode 0600, atomically (a crash leaves the old or the new)."""
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")  # one per writer
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(box.file_text())
            file.flush()
            _keep_owner(path, file.fileno())
            os.fsync(file.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if another process created it meanwhile
            temporary.unlink()
        else:
            os.replace(temporary, path)
    except FileExistsError:
        temporary.unlink(missing_ok=True)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SecretsError(f"cannot write secrets key file {path}: {exc.strerror}") from exc
