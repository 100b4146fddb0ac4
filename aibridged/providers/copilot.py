"""GitHub Copilot providers: always the caller's own GitHub token, never a key of ours.

Chat Completions and Responses are intercepted at the provider's root (Copilot base URLs have no
`/v1`), and Messages at `/v1/messages` (answered in Anthropic's format, errors included). Editor
headers (`Editor-Version`, `Copilot-Integration-Id`) go upstream like every other client header.
One provider per plan: individual, business and enterprise each have their own host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aibridged.errors import Rejected
from aibridged.intercept.routes import Api, UpstreamCall
from aibridged.intercept.wire import WireFormat
from aibridged.providers.family import Credential, Passthrough, ProviderFamily
from aibridged.safe import mask_secret

if TYPE_CHECKING:
    from aibridged.providers.pool import Provider

PLAN_HOSTS = {
    "individual": "https://api.individual.githubcopilot.com",
    "business": "https://api.business.githubcopilot.com",
    "enterprise": "https://api.enterprise.githubcopilot.com",
}


class CopilotFamily(ProviderFamily):
    wire_format = WireFormat.OPENAI
    intercepted = {
        "/chat/completions": Api.CHAT_COMPLETIONS,
        "/responses": Api.RESPONSES,
        "/v1/messages": Api.MESSAGES,
    }
    route_formats = {Api.MESSAGES: WireFormat.ANTHROPIC}
    passthrough = (
        Passthrough("/models"),
        Passthrough("/models/"),
        Passthrough("/agents/"),
        Passthrough("/mcp/"),
        Passthrough("/.well-known/"),
    )

    def admit(self, call: UpstreamCall) -> None:
        if not call.byok or self.byok_secret(call) is None:
            raise Rejected(
                401,
                "Copilot providers use the caller's own GitHub token: send it in Authorization"
                " and the gateway token in X-Coder-AI-Governance-Token",
                "missing_credential",
            )

    def credential(self, provider: Provider, call: UpstreamCall) -> Credential:
        own = self.byok_secret(call)
        assert own is not None  # admit() refused calls without one
        return Credential("byok", None, mask_secret(own))


COPILOT = CopilotFamily()
