"""Keys and secret settings between their plaintext and their sealed rows.

Each sealed value is bound to its row (the key's id, the provider's id) by the associated data,
so a sealed value copied onto another row does not open.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

from aibridged.errors import SecretsError
from aibridged.safe import mask_secret
from aibridged.secretbox import SecretBox
from aibridged.store.providers import StoredKey, StoredProvider, key_context, settings_context


def seal_key(box: SecretBox, plaintext: str) -> StoredKey:
    key_id = uuid.uuid4()
    sealed = box.seal(plaintext.encode(), context=key_context(key_id))
    return StoredKey(key_id, sealed, mask_secret(plaintext))


def open_keys(box: SecretBox, stored: StoredProvider) -> tuple[str, ...]:
    return tuple(box.open(key.sealed, context=key_context(key.id)).decode() for key in stored.keys)


def seal_secret_settings(
    box: SecretBox, provider_id: uuid.UUID, secrets: Mapping[str, str]
) -> bytes | None:
    if not secrets:
        return None
    text = json.dumps(dict(secrets), sort_keys=True).encode()
    return box.seal(text, context=settings_context(provider_id))


def open_secret_settings(box: SecretBox, stored: StoredProvider) -> dict[str, str]:
    if stored.secret_settings is None:
        return {}
    text = box.open(stored.secret_settings, context=settings_context(stored.id))
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SecretsError("stored secret settings are not JSON") from exc
    if not isinstance(value, dict):
        raise SecretsError("stored secret settings are not an object")
    return {str(k): str(v) for k, v in value.items()}
