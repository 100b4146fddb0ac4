"""Span names, attribute keys and the GenAI semantic-convention values the gateway emits.

Span names and the plain attribute keys are Coder's AI Gateway's (SPEC §10, the reference's
tracing section), so traces read the same as the original's. On the upstream span the gateway
also follows the OpenTelemetry GenAI semantic conventions, pinned to one version: they are still
in development and renamed things between releases (`gen_ai.system` → `gen_ai.provider.name`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# The GenAI conventions followed (attribute names and meanings as of this release).
GENAI_SEMCONV_VERSION = "1.40.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{GENAI_SEMCONV_VERSION}"
INSTRUMENTATION_NAME = "aibridged"

# -- span names (Coder's) ------------------------------------------------------------------------
INTERCEPT = "Intercept"
CREATE_INTERCEPTOR = "Intercept.CreateInterceptor"
PROCESS_REQUEST = "Intercept.ProcessRequest"
UPSTREAM = "Intercept.ProcessRequest.Upstream"
RECORD_INTERCEPTION = "Intercept.RecordInterception"
RECORD_PROMPT_USAGE = "Intercept.RecordPromptUsage"
RECORD_TOKEN_USAGE = "Intercept.RecordTokenUsage"
RECORD_TOOL_USAGE = "Intercept.RecordToolUsage"
RECORD_MODEL_THOUGHT = "Intercept.RecordModelThought"
RECORD_INTERCEPTION_ENDED = "Intercept.RecordInterceptionEnded"
PASSTHROUGH = "Passthrough"

# -- Coder's attribute keys ----------------------------------------------------------------------
REQUEST_PATH = "request_path"
INTERCEPTION_ID = "interception_id"
USER_ID = "user_id"
API_KEY_ID = "api_key_id"  # the token's public id, never its secret
PROVIDER = "provider"  # the provider's name (its route segment)
MODEL = "model"
STREAMING = "streaming"
IS_BEDROCK = "aws_bedrock"
PASSTHROUGH_URL = "passthrough_url"
PASSTHROUGH_UPSTREAM_URL = "passthrough_upstream_url"
PASSTHROUGH_METHOD = "passthrough_method"
# Ours, beside Coder's: the client detected from the request headers.
CLIENT = "client"
CLIENT_GONE = "client_gone"

# -- OpenTelemetry general and GenAI attribute keys ----------------------------------------------
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_CONVERSATION = "gen_ai.conversation.id"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"  # all input, cached included (the convention)
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"

# Chat Completions, Responses and Messages are all "chat" in the conventions.
OPERATION_CHAT = "chat"

# Provider type → gen_ai.provider.name: the convention's well-known values where one applies;
# other types go by their own name. An openai-compat server is "openai" by the convention's
# rule for products reached through OpenAI's API.
_GENAI_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "openai",
        "openai-compat": "openai",
        "anthropic": "anthropic",
        "azure": "azure.ai.openai",
        "google": "gcp.gen_ai",
        "bedrock": "aws.bedrock",
    }
)


def genai_provider(provider_type: str) -> str:
    return _GENAI_PROVIDERS.get(provider_type, provider_type)
