"""Vendor facts per provider type: wire format, default base URL, route layout."""

from __future__ import annotations

from dataclasses import dataclass

from aibridged.intercept.wire import WireFormat


@dataclass(frozen=True, slots=True)
class ProviderType:
    name: str
    wire_format: WireFormat
    default_base_url: str  # "" = the operator must set one
    supported: bool = True  # False: known to SPEC, not implemented by this build
    why_unsupported: str = ""

    @property
    def route_has_v1(self) -> bool:
        """OpenAI-format base URLs include /v1, so the client-facing prefix does too."""
        return self.wire_format is WireFormat.OPENAI


TYPES: dict[str, ProviderType] = {
    t.name: t
    for t in (
        ProviderType("openai", WireFormat.OPENAI, "https://api.openai.com/v1/"),
        ProviderType("anthropic", WireFormat.ANTHROPIC, "https://api.anthropic.com/"),
        ProviderType("azure", WireFormat.OPENAI, ""),
        ProviderType("google", WireFormat.OPENAI, ""),
        ProviderType("openrouter", WireFormat.OPENAI, "https://openrouter.ai/api/v1"),
        ProviderType("vercel", WireFormat.OPENAI, "https://ai-gateway.vercel.sh/v1"),
        ProviderType("openai-compat", WireFormat.OPENAI, ""),
        ProviderType(
            "copilot",
            WireFormat.OPENAI,
            "https://api.individual.githubcopilot.com",
            supported=False,
            why_unsupported="copilot providers are not supported by this build yet",
        ),
        ProviderType(
            "bedrock",
            WireFormat.ANTHROPIC,
            "",
            supported=False,
            why_unsupported="bedrock providers (SigV4) are not supported by this build yet",
        ),
    )
}
