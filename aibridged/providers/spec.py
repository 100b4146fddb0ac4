"""What a provider may be: checking a create or change request field by field.

Every problem is collected with its field (`InvalidInput.validations`), so an API client or the
dashboard can show each next to its input, instead of the first one alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aibridged.errors import InvalidInput
from aibridged.intercept.upstream import Origin
from aibridged.providers.pool import NAME_RE, RESERVED_NAMES
from aibridged.providers.sealed import open_secret_settings, seal_key, seal_secret_settings
from aibridged.providers.types import MAX_KEYS, TYPES, Keys, ProviderType
from aibridged.secretbox import SecretBox
from aibridged.store.providers import ProviderWrite, StoredKey, StoredProvider

MAX_NAME = 63
MAX_DISPLAY_NAME = 200
MAX_KEY_CHARS = 4096
MAX_VALIDATIONS = 50
_CREATE_FIELDS = frozenset(
    {"type", "name", "display_name", "enabled", "base_url", "settings", "api_keys"}
)


@dataclass(slots=True)
class _Problems:
    found: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, detail: str) -> None:
        self.found.append((name, detail))

    def raise_any(self) -> None:
        if self.found:  # a bounded answer, whatever the body held
            raise InvalidInput("invalid provider", self.found[:MAX_VALIDATIONS])


def new_provider(body: Any, box: SecretBox, *, source: str = "api") -> ProviderWrite:
    """The provider a POST body describes; InvalidInput naming every bad field otherwise."""
    problems = _Problems()
    if not isinstance(body, dict):
        raise InvalidInput("invalid provider", [("", "the body must be a JSON object")])
    _unknown_fields(body, problems)
    ptype = _type(body.get("type"), problems)
    name = _name(body.get("name"), problems)
    display_name = _display_name(body.get("display_name", ""), problems)
    enabled = _enabled(body.get("enabled", True), problems)
    settings, secrets = _settings(ptype, body.get("settings", {}), {}, {}, problems)
    base_url = _base_url(ptype, body.get("base_url", ""), settings, problems)
    plaintexts = _key_list(ptype, body.get("api_keys", []), problems, allow_ids=False)
    problems.raise_any()
    assert ptype is not None
    provider_id = uuid.uuid4()
    keys = tuple(seal_key(box, text) for text in plaintexts if isinstance(text, str))
    _need_keys(ptype, keys, problems)
    problems.raise_any()
    return ProviderWrite(
        id=provider_id,
        type=ptype.name,
        name=name,
        display_name=display_name or name,
        enabled=enabled,
        base_url=base_url,
        settings=settings,
        secret_settings=seal_secret_settings(box, provider_id, secrets),
        keys=keys,
        source=source,
    )


def changed_provider(body: Any, current: StoredProvider, box: SecretBox) -> ProviderWrite:
    """`current` with a PATCH body applied (fields left out stay as they are)."""
    problems = _Problems()
    if not isinstance(body, dict):
        raise InvalidInput("invalid provider", [("", "the body must be a JSON object")])
    _unknown_fields(body, problems)
    ptype = TYPES[current.type]
    if "type" in body and body["type"] != current.type:
        problems.add("type", "the type of a provider cannot change: create a new provider")
    name = _name(body["name"], problems) if "name" in body else current.name
    display_name = current.display_name
    if "display_name" in body:
        display_name = _display_name(body["display_name"], problems) or name
    enabled = _enabled(body["enabled"], problems) if "enabled" in body else current.enabled
    settings, secrets = dict(current.settings), open_secret_settings(box, current)
    if "settings" in body:
        settings, secrets = _settings(ptype, body["settings"], settings, secrets, problems)
    base_url = current.base_url
    if "base_url" in body or "settings" in body:
        base_url = _base_url(ptype, body.get("base_url", current.base_url), settings, problems)
    keys = current.keys
    if "api_keys" in body:
        keys = _changed_keys(ptype, body["api_keys"], current, box, problems)
    problems.raise_any()
    _need_keys(ptype, keys, problems)
    problems.raise_any()
    return ProviderWrite(
        id=current.id,
        type=current.type,
        name=name,
        display_name=display_name,
        enabled=enabled,
        base_url=base_url,
        settings=settings,
        secret_settings=seal_secret_settings(box, current.id, secrets),
        keys=keys,
        source=current.source,
    )


def _unknown_fields(body: Mapping[str, Any], problems: _Problems) -> None:
    for name in body:
        if name not in _CREATE_FIELDS:
            problems.add(str(name), "unknown field")


def _type(value: Any, problems: _Problems) -> ProviderType | None:
    if value is None:
        problems.add("type", "required")
        return None
    ptype = TYPES.get(value) if isinstance(value, str) else None
    if ptype is None:
        problems.add("type", f"unknown provider type; one of {', '.join(TYPES)}")
    return ptype


def _name(value: Any, problems: _Problems) -> str:
    if value is None:
        problems.add("name", "required")
    elif not isinstance(value, str) or not NAME_RE.fullmatch(value):
        problems.add("name", "use lowercase letters, digits and single dashes, e.g. openai-prod")
    elif _looks_like_id(value):
        problems.add("name", "a name cannot have the form of an id (a UUID)")
    elif len(value) > MAX_NAME:
        problems.add("name", f"at most {MAX_NAME} characters")
    elif value in RESERVED_NAMES:
        problems.add("name", f'"{value}" is reserved for the management API')
    else:
        return value
    return ""


def _looks_like_id(name: str) -> bool:
    """Providers are looked up by id or by name: a name that parses as a UUID is an id."""
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True


def _display_name(value: Any, problems: _Problems) -> str:
    if not isinstance(value, str):
        problems.add("display_name", "must be a string")
    elif len(value) > MAX_DISPLAY_NAME or not value.isprintable():
        problems.add("display_name", f"at most {MAX_DISPLAY_NAME} printable characters")
    else:
        return value.strip()
    return ""


def _enabled(value: Any, problems: _Problems) -> bool:
    if not isinstance(value, bool):
        problems.add("enabled", "must be true or false")
        return False
    return value


def _base_url(
    ptype: ProviderType | None, value: Any, settings: Mapping[str, Any], problems: _Problems
) -> str:
    if not isinstance(value, str):
        problems.add("base_url", "must be a string")
        return ""
    url = value.strip().rstrip("/")
    if not url.isprintable():
        problems.add("base_url", "holds control characters")
        return ""
    if not url:
        if ptype is not None and not ptype.base_url_for(settings):
            problems.add("base_url", f"required for type {ptype.name} (it has no default)")
        return ""
    try:
        Origin.from_url(url)
    except ValueError as exc:
        problems.add("base_url", _without_userinfo(str(exc), url))
        return ""
    return url


def _without_userinfo(message: str, url: str) -> str:
    """`message` without the URL's user:password part (never echo a password back)."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    if "@" not in authority:
        return message
    shown = f"{scheme}{sep}***@{authority.rpartition('@')[2]}{rest[len(authority) :]}"
    return message.replace(url, shown)


def _settings(
    ptype: ProviderType | None,
    value: Any,
    settings: dict[str, Any],
    secrets: dict[str, str],
    problems: _Problems,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings after `value` is merged in (`null` removes a setting)."""
    settings, secrets = dict(settings), dict(secrets)
    if not isinstance(value, dict):
        problems.add("settings", "must be an object")
        return settings, secrets
    if ptype is None:
        return settings, secrets
    for name, item in value.items():
        where = f"settings.{name}"
        spec = ptype.setting(name)
        if spec is None:
            takes = ", ".join(s.name for s in ptype.settings) or "none"
            problems.add(where, f"unknown setting for type {ptype.name} (it takes: {takes})")
        elif item is None:
            settings.pop(name, None)
            secrets.pop(name, None)
        elif not isinstance(item, str) or not item.strip() or not item.isprintable():
            problems.add(where, "must be a non-empty string")
        elif spec.choices and item not in spec.choices:
            problems.add(where, f"one of {', '.join(spec.choices)}")
        elif spec.pattern and re.fullmatch(spec.pattern, item.strip()) is None:
            problems.add(where, "not a valid value (e.g. us-east-1)")
        elif spec.secret:
            secrets[name] = item.strip()
        else:
            settings[name] = item.strip()
    return settings, secrets


def _key_list(
    ptype: ProviderType | None, value: Any, problems: _Problems, *, allow_ids: bool
) -> list[Any]:
    """The items of `api_keys` (plaintext strings, and `{"id": ...}` when `allow_ids`)."""
    if not isinstance(value, list):
        problems.add("api_keys", "must be a list")
        return []
    if len(value) > MAX_KEYS:
        problems.add("api_keys", f"at most {MAX_KEYS} keys")
        return []
    if value and ptype is not None and ptype.keys is Keys.NONE:
        why = (
            "each caller's own GitHub token is used"
            if ptype.name == "copilot"
            else ("it signs requests with the AWS credentials in its settings")
        )
        problems.add("api_keys", f"type {ptype.name} takes no API keys: {why}")
        return []
    for index, item in enumerate(value):
        where = f"api_keys[{index}]"
        if isinstance(item, str):
            text = item.strip()
            if not text or len(text) > MAX_KEY_CHARS or not all("!" <= c <= "~" for c in text):
                problems.add(where, "a key is visible ASCII without spaces (an HTTP header value)")
        elif allow_ids and isinstance(item, dict) and set(item) == {"id"}:
            continue
        else:
            expected = 'a key (string) or {"id": "<key id>"}' if allow_ids else "a key (string)"
            problems.add(where, f"must be {expected}")
    return [item.strip() if isinstance(item, str) else item for item in value]


def _changed_keys(
    ptype: ProviderType,
    value: Any,
    current: StoredProvider,
    box: SecretBox,
    problems: _Problems,
) -> tuple[StoredKey, ...]:
    items = _key_list(ptype, value, problems, allow_ids=True)
    existing: dict[uuid.UUID | None, StoredKey] = {key.id: key for key in current.keys}
    keys: list[StoredKey] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            keys.append(seal_key(box, item))
        elif isinstance(item, dict):
            kept = existing.pop(_key_id(item["id"]), None)
            if kept is None:
                problems.add(f"api_keys[{index}]", "no key with this id on this provider")
            else:
                keys.append(kept)
    return tuple(keys)


def _key_id(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _need_keys(ptype: ProviderType, keys: tuple[StoredKey, ...], problems: _Problems) -> None:
    if ptype.keys is Keys.REQUIRED and not keys:
        problems.add("api_keys", f"type {ptype.name} needs at least one API key")
