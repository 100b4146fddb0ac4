"""The provider forms: what each type's form shows, and a submitted form turned into the
management API's request body (so the API's own validation names the bad fields).

Field names are the API's: `name`, `display_name`, `base_url`, `settings.<name>`, and
`new_keys` (one key a line) with `keep_key` (the ids of the stored keys to keep) for
`api_keys`. A validation's field is mapped back to the input it belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aibridged.providers.types import TYPES, Keys, ProviderType, Setting
from aibridged.store.providers import StoredProvider

FormData = Mapping[str, str]  # the first value of each field


@dataclass(frozen=True, slots=True)
class TypeForm:
    """What the form of one provider type shows."""

    name: str
    default_base_url: str  # "" = the operator must give one
    keys: str  # "required", "optional" or "none"
    settings: tuple[Setting, ...]


def type_forms() -> list[TypeForm]:
    return [type_form(ptype) for ptype in TYPES.values()]


def type_form(ptype: ProviderType) -> TypeForm:
    return TypeForm(
        ptype.name,
        ptype.base_url_for({}) if ptype.name != "bedrock" else "",
        ptype.keys.value,
        ptype.settings,
    )


def create_body(ptype: ProviderType, form: FormData) -> dict[str, Any]:
    """The POST body of the create form of `ptype`."""
    body: dict[str, Any] = {
        "type": ptype.name,
        "name": form.get("name", "").strip(),
        "display_name": form.get("display_name", "").strip(),
        "base_url": form.get("base_url", "").strip(),
        "enabled": form.get("enabled") == "on",
    }
    settings = {s.name: form.get(f"settings.{s.name}", "").strip() for s in ptype.settings}
    body["settings"] = {name: value for name, value in settings.items() if value}
    if ptype.keys is not Keys.NONE:
        body["api_keys"] = _lines(form.get("new_keys", ""))
    return body


def change_body(
    ptype: ProviderType, current: StoredProvider, form: FormData, kept: Iterable[str]
) -> dict[str, Any]:
    """The PATCH body of the edit form: a blank secret setting keeps the stored one, a blank
    plain setting removes it; unticked stored keys go, new lines become new keys."""
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "display_name": form.get("display_name", "").strip(),
        "base_url": form.get("base_url", "").strip(),
        "enabled": form.get("enabled") == "on",
    }
    settings: dict[str, str | None] = {}
    for spec in ptype.settings:
        value = form.get(f"settings.{spec.name}", "").strip()
        if value:
            settings[spec.name] = value
        elif not spec.secret and spec.name in current.settings:
            settings[spec.name] = None
    if settings:
        body["settings"] = settings
    if ptype.keys is not Keys.NONE:
        keep = set(kept)
        stored = [{"id": str(key.id)} for key in current.keys if str(key.id) in keep]
        body["api_keys"] = [*stored, *_lines(form.get("new_keys", ""))]
    return body


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def field_errors(validations: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each validation under the form input it belongs to (the first one wins per input)."""
    errors: dict[str, str] = {}
    for field, detail in validations:
        where = "new_keys" if field.startswith("api_keys") else field
        errors.setdefault(where, detail)
    return errors
