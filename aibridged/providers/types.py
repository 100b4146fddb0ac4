"""Vendor facts per provider type: its family (wire format, routes, auth), its default base URL,
whether it takes keys, and the settings it accepts."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aibridged.intercept.wire import WireFormat
from aibridged.providers.anthropic import ANTHROPIC
from aibridged.providers.bedrock.family import BEDROCK
from aibridged.providers.bedrock.settings import default_base_url
from aibridged.providers.copilot import COPILOT, PLAN_HOSTS
from aibridged.providers.family import ProviderFamily
from aibridged.providers.google import GOOGLE
from aibridged.providers.openai import OPENAI

MAX_KEYS = 5


class Keys(enum.Enum):
    REQUIRED = "required"  # at least one
    OPTIONAL = "optional"  # e.g. a local Ollama
    NONE = "none"  # the type authenticates otherwise (the caller's token, AWS signing)


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    secret: bool = False  # sealed at rest, shown as a masked hint
    choices: tuple[str, ...] = ()  # "" = any non-empty string
    pattern: str = ""  # a regular expression the whole value must match, "" = any


@dataclass(frozen=True, slots=True)
class ProviderType:
    name: str
    family: ProviderFamily
    default_base_url: str  # "" = the operator must set one
    keys: Keys = Keys.REQUIRED
    settings: tuple[Setting, ...] = ()

    @property
    def wire_format(self) -> WireFormat:
        return self.family.wire_format

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)

    def base_url_for(self, settings: Mapping[str, Any]) -> str:
        """The default base URL given the provider's settings (Copilot's plan picks its host)."""
        if self.name == "copilot":
            return PLAN_HOSTS[settings.get("plan") or "individual"]
        if self.name == "bedrock":
            return default_base_url(settings)  # by region and protocol
        return self.default_base_url


_BEDROCK_SETTINGS = (
    Setting("region", pattern=r"[a-z]{2}(-[a-z]+)+-[0-9]+"),
    Setting("model"),
    Setting("small_fast_model"),
    Setting("protocol", choices=("invoke-model", "mantle")),
    Setting("role_arn"),
    Setting("access_key", secret=True),
    Setting("access_key_secret", secret=True),
)

TYPES: dict[str, ProviderType] = {
    t.name: t
    for t in (
        ProviderType("openai", OPENAI, "https://api.openai.com/v1/"),
        ProviderType("anthropic", ANTHROPIC, "https://api.anthropic.com/"),
        ProviderType("azure", OPENAI, ""),
        ProviderType("google", GOOGLE, ""),
        ProviderType("openrouter", OPENAI, "https://openrouter.ai/api/v1"),
        ProviderType("vercel", OPENAI, "https://ai-gateway.vercel.sh/v1"),
        ProviderType("openai-compat", OPENAI, "", keys=Keys.OPTIONAL),
        ProviderType(
            "copilot",
            COPILOT,
            PLAN_HOSTS["individual"],
            keys=Keys.NONE,
            settings=(Setting("plan", choices=tuple(PLAN_HOSTS)),),
        ),
        ProviderType("bedrock", BEDROCK, "", keys=Keys.NONE, settings=_BEDROCK_SETTINGS),
    )
}
