"""The provider forms turned into the management API's bodies, and the files a wheel must ship
for the dashboard."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aibridged.dashboard.provider_forms import change_body, create_body, field_errors
from aibridged.providers.types import TYPES
from aibridged.store.providers import StoredKey, StoredProvider

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 2, tzinfo=UTC)
KEPT, DROPPED = uuid.uuid4(), uuid.uuid4()


def _stored(ptype: str, settings: dict[str, str]) -> StoredProvider:
    return StoredProvider(
        id=uuid.uuid4(), type=ptype, name="p", display_name="p", enabled=True, base_url="",
        settings=settings, secret_settings=None, source="api", created_at=NOW, updated_at=NOW,
        keys=(StoredKey(KEPT, b"", "sk-a...aaaa"), StoredKey(DROPPED, b"", "sk-b...bbbb")),
    )  # fmt: skip


def test_the_create_form_sends_only_what_its_type_takes() -> None:
    form = {"name": " openai-prod ", "base_url": "", "new_keys": "sk-1\n\n  sk-2  \n",
            "settings.region": "ignored: openai has no settings"}  # fmt: skip
    assert create_body(TYPES["openai"], form) == {
        "type": "openai", "name": "openai-prod", "display_name": "", "base_url": "",
        "enabled": False, "settings": {}, "api_keys": ["sk-1", "sk-2"],
    }  # fmt: skip
    bedrock = create_body(TYPES["bedrock"], {"settings.region": "eu-west-1", "enabled": "on"})
    assert bedrock["settings"] == {"region": "eu-west-1"} and "api_keys" not in bedrock
    assert bedrock["enabled"] is True


def test_the_edit_form_keeps_blank_secrets_removes_blank_settings_and_rotates_keys() -> None:
    current = _stored("bedrock", {"region": "eu-west-1", "model": "m"})
    form = {"name": "p", "settings.region": "us-east-1", "settings.model": "",
            "settings.access_key": "", "enabled": "on"}  # fmt: skip
    body = change_body(TYPES["bedrock"], current, form, kept=[])
    assert body["settings"] == {"region": "us-east-1", "model": None}  # access_key: kept
    assert "api_keys" not in body  # bedrock signs with AWS credentials, it has no keys
    openai = change_body(
        TYPES["openai"], _stored("openai", {}), {"new_keys": "sk-new"}, kept=[str(KEPT)]
    )
    assert openai["api_keys"] == [{"id": str(KEPT)}, "sk-new"] and "settings" not in openai


def test_each_validation_goes_to_its_input() -> None:
    validations = [("name", "bad"), ("api_keys[1]", "not a key"), ("api_keys", "too many"),
                   ("settings.region", "not a region"), ("", "the body")]  # fmt: skip
    assert field_errors(validations) == {
        "name": "bad", "new_keys": "not a key", "settings.region": "not a region", "": "the body"
    }  # fmt: skip


def test_a_wheel_ships_every_template_and_static_file_of_the_dashboard() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["aibridged"]
    package = REPO / "aibridged"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    needed = {
        path
        for folder in ("templates", "static")
        for path in (package / "dashboard" / folder).rglob("*")
        if path.is_file()
    }
    assert needed and needed <= shipped, sorted(str(p) for p in needed - shipped)
