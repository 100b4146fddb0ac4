"""The InvokeModel translation of a Messages request, as Coder's AI Gateway makes it.

Bedrock's InvokeModel takes the Messages body without `model` and `stream` (they are in the URL)
and with `anthropic_version: bedrock-2023-05-31`; betas go in the body (`anthropic_beta`), not
a header, and only those Bedrock knows, for the models that take them. In order:

1. the model: a requested name with `haiku` in it gets the provider's small fast model, any
   other its model;
2. adaptive thinking, for models that cannot think adaptively, becomes enabled thinking with
   `budget_tokens = max_tokens * ratio` (effort low 0.2, medium 0.5, high or none 0.8, max
   0.95); under 1024 tokens thinking is disabled instead of starving the answer;
3. `anthropic-beta` flags are filtered to Bedrock's allow-list, minus the model-gated ones the
   model does not take;
4. fields Bedrock refuses ("Extra inputs are not permitted") are removed: always `metadata`,
   `service_tier`, `container`, `inference_geo`; `output_config` and `context_management`
   unless the beta that enables them survived step 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from aibridged.providers.bedrock.settings import BedrockSettings

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
MIN_THINKING_BUDGET = 1024

# Bedrock's allow-list (model-parameters-anthropic-claude-messages-request-response): any other
# flag is a 400 "invalid beta flag".
SUPPORTED_BETAS = frozenset(
    {
        "computer-use-2025-01-24",
        "token-efficient-tools-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "dev-full-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
    }
)
EFFORT_BETA = "effort-2025-11-24"
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
# Flags only some models take: the model id must contain one of these.
_MODEL_GATED_BETAS = {
    EFFORT_BETA: ("anthropic.claude-opus-4-5",),
    CONTEXT_MANAGEMENT_BETA: ("anthropic.claude-sonnet-4-5", "anthropic.claude-haiku-4-5"),
}
_UNSUPPORTED_FIELDS = ("metadata", "service_tier", "container", "inference_geo")
_BETA_GATED_FIELDS = {"output_config": EFFORT_BETA, "context_management": CONTEXT_MANAGEMENT_BETA}
# Models that think adaptively on Bedrock (the Claude 4.6 family and later): no conversion.
_ADAPTIVE_MODELS = (
    "anthropic.claude-opus-4-6",
    "anthropic.claude-sonnet-4-6",
    "anthropic.claude-opus-4-7",
    "anthropic.claude-opus-4-8",
    "anthropic.claude-sonnet-5",
)
_EFFORT_RATIOS = {"low": 0.2, "medium": 0.5, "high": 0.8, "max": 0.95}
_DEFAULT_EFFORT_RATIO = 0.8  # "high" is the default effort


@dataclass(frozen=True, slots=True)
class InvokeModelRequest:
    model_id: str  # the Bedrock model id (or inference profile ARN) for the URL
    stream: bool
    body: bytes


def map_model(requested: str, settings: BedrockSettings) -> str:
    """The Bedrock model for a requested Anthropic model name."""
    return settings.small_fast_model if "haiku" in requested else settings.model


def beta_flags(header_values: Iterable[bytes]) -> list[str]:
    """The flags of every `anthropic-beta` header, comma-separated or one a header, in order."""
    flags: list[str] = []
    for value in header_values:
        for flag in value.decode("latin-1").split(","):
            if (flag := flag.strip()) and flag not in flags:
                flags.append(flag)
    return flags


def bedrock_betas(flags: Iterable[str], model_id: str) -> list[str]:
    """The flags Bedrock takes for `model_id`, in the client's order."""
    kept = []
    for flag in flags:
        if flag not in SUPPORTED_BETAS:
            continue
        models = _MODEL_GATED_BETAS.get(flag)
        if models is not None and not any(name in model_id for name in models):
            continue
        kept.append(flag)
    return kept


def supports_adaptive_thinking(model_id: str) -> bool:
    return any(name in model_id for name in _ADAPTIVE_MODELS)


def converted_thinking(body: dict[str, Any]) -> dict[str, Any] | None:
    """The `thinking` that replaces an adaptive one, or None to leave it as it is."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "adaptive":
        return None
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        return None  # Bedrock answers the missing max_tokens itself, in its own words
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    ratio = _EFFORT_RATIOS.get(effort if isinstance(effort, str) else "", _DEFAULT_EFFORT_RATIO)
    budget = int(max_tokens * ratio)
    if budget < MIN_THINKING_BUDGET:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": budget}


def invoke_model_request(
    body: dict[str, Any], betas: list[str], settings: BedrockSettings
) -> InvokeModelRequest:
    """The InvokeModel request for a parsed Messages body and the client's beta flags."""
    requested = body.get("model")
    model_id = map_model(requested if isinstance(requested, str) else "", settings)
    out = dict(body)
    stream = out.pop("stream", False) is True
    out.pop("model", None)
    if not supports_adaptive_thinking(model_id):
        thinking = converted_thinking(out)
        if thinking is not None:
            out["thinking"] = thinking
    in_body = out.pop("anthropic_beta", None)
    if isinstance(in_body, list):  # the Bedrock spelling, should a client send it already
        betas = betas + [flag for flag in in_body if isinstance(flag, str) and flag not in betas]
    kept = bedrock_betas(betas, model_id)
    for name in _UNSUPPORTED_FIELDS:
        out.pop(name, None)
    for name, beta in _BETA_GATED_FIELDS.items():
        if beta not in kept:
            out.pop(name, None)
    out["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    if kept:
        out["anthropic_beta"] = kept
    return InvokeModelRequest(model_id, stream, dump_json(out))


def load_json(raw: bytes) -> Any:
    """The body the data plane already checked (so this cannot fail on it); the standard
    library takes what orjson refuses (lone surrogates, NaN), as the data plane's check did."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"))


def dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates: kept as sent
        return json.dumps(value, separators=(",", ":")).encode()
