"""Google's Gemini behind its OpenAI-compatible endpoint: the thought-signature patch.

Gemini 3 attaches an opaque `thought_signature` to the tool calls it makes (in Chat Completions,
`tool_calls[i].extra_content.google.thought_signature`) and answers 400 "Function call is missing
a thought_signature" when a later request replays the call without it. Most OpenAI clients drop
fields they do not know, so a multi-turn tool loop through them breaks on its second turn.

Before a Chat Completions request goes upstream, every assistant message whose tool calls carry no
signature at all gets Google's documented placeholder for history the client could not keep
(`skip_thought_signature_validator`) on its first tool call, which is the one Gemini validates
per step. Signatures the client kept are never touched, and a request that needs no patch goes
upstream byte for byte; only the `messages` value of one that does is re-encoded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from aibridged.intercept.payload import object_members
from aibridged.intercept.routes import Api, UpstreamCall
from aibridged.intercept.upstream import UpstreamRequest
from aibridged.providers.family import Credential
from aibridged.providers.openai import OpenAIFamily

if TYPE_CHECKING:
    from aibridged.providers.pool import Provider

PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"


class GoogleFamily(OpenAIFamily):
    def build_request(
        self, provider: Provider, call: UpstreamCall, credential: Credential
    ) -> UpstreamRequest:
        request = super().build_request(provider, call, credential)
        if call.route.api is Api.CHAT_COMPLETIONS:
            request.body = add_thought_signatures(request.body)
        return request


def add_thought_signatures(raw: bytes) -> bytes:
    """`raw` with placeholder signatures where assistant tool calls have none (else `raw`)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # the data plane already accepted it; an odd encoding is left as it is
    messages = parsed.get("messages") if isinstance(parsed, dict) else None
    if not isinstance(messages, list) or not _patch(messages):
        return raw
    span = next((s, e) for key, s, e in object_members(raw, raw.index(b"{")) if key == "messages")
    return raw[: span[0]] + orjson.dumps(messages) + raw[span[1] :]


def _patch(messages: list[Any]) -> bool:
    patched = False
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        calls = message.get("tool_calls")
        if not isinstance(calls, list) or not calls or not isinstance(calls[0], dict):
            continue
        if any(_signature(call) for call in calls):
            continue
        extra = calls[0].setdefault("extra_content", {})
        if not isinstance(extra, dict):
            continue  # not Google's shape: left for the upstream to judge
        google = extra.setdefault("google", {})
        if isinstance(google, dict):
            google["thought_signature"] = PLACEHOLDER_SIGNATURE
            patched = True
    return patched


def _signature(call: Any) -> str | None:
    if not isinstance(call, dict):
        return None
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    found = google.get("thought_signature") if isinstance(google, dict) else None
    return found if isinstance(found, str) and found else None


GOOGLE = GoogleFamily()
