"""OpenAI-format providers: openai, azure, google, openrouter, vercel, openai-compat.

Chat Completions and Responses are intercepted; the base URL includes `/v1`, so the client-facing
prefix does too. Keys go in `Authorization: Bearer`; in BYOK mode the caller's own
`Authorization` (an OpenAI key, a ChatGPT OAuth token) goes instead.
"""

from __future__ import annotations

from aibridged.intercept.routes import Api
from aibridged.intercept.wire import WireFormat
from aibridged.providers.family import READ, Passthrough, ProviderFamily


class OpenAIFamily(ProviderFamily):
    wire_format = WireFormat.OPENAI
    prefix_in_base_url = "/v1"
    intercepted = {"/v1/chat/completions": Api.CHAT_COMPLETIONS, "/v1/responses": Api.RESPONSES}
    # The legacy /v1/completions is deliberately absent. Reads only, but for the conversation
    # state Responses clients create and delete, and deleting a stored response.
    passthrough = (
        Passthrough("/v1/models"),
        Passthrough("/v1/models/"),
        Passthrough("/v1/conversations", READ | {"POST"}),
        Passthrough("/v1/conversations/", READ | {"POST", "DELETE"}),
        Passthrough("/v1/responses/", READ | {"DELETE"}),
    )


OPENAI = OpenAIFamily()
