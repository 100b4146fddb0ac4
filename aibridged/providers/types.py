"""Vendor facts per provider type: its family (wire format, routes, auth) and default base URL."""

from __future__ import annotations

from dataclasses import dataclass

from aibridged.intercept.wire import WireFormat
from aibridged.providers.anthropic import ANTHROPIC
from aibridged.providers.family import ProviderFamily
from aibridged.providers.openai import OPENAI


@dataclass(frozen=True, slots=True)
class ProviderType:
    name: str
    family: ProviderFamily
    default_base_url: str  # "" = the operator must set one
    supported: bool = True  # False: a known type not implemented by this build
    why_unsupported: str = ""

    @property
    def wire_format(self) -> WireFormat:
        return self.family.wire_format


TYPES: dict[str, ProviderType] = {
    t.name: t
    for t in (
        ProviderType("openai", OPENAI, "https://api.openai.com/v1/"),
        ProviderType("anthropic", ANTHROPIC, "https://api.anthropic.com/"),
        ProviderType("azure", OPENAI, ""),
        ProviderType("google", OPENAI, ""),
        ProviderType("openrouter", OPENAI, "https://openrouter.ai/api/v1"),
        ProviderType("vercel", OPENAI, "https://ai-gateway.vercel.sh/v1"),
        ProviderType("openai-compat", OPENAI, ""),
        ProviderType(
            "copilot",
            OPENAI,
            "https://api.individual.githubcopilot.com",
            supported=False,
            why_unsupported="copilot providers are not supported by this build yet",
        ),
        ProviderType(
            "bedrock",
            ANTHROPIC,
            "",
            supported=False,
            why_unsupported="bedrock providers (SigV4) are not supported by this build yet",
        ),
    )
}
