"""The management API's shapes, for its OpenAPI document (`/api/v2/openapi.json`).

quart-schema builds the document from these pydantic models and from the `document_*`
decorators on each route. The routes keep validating their own input (one error shape, every
bad field named at once, docs/management-api.md); the models describe it, and
tests/test_openapi.py calls every documented route and checks each answer against the document,
so it cannot drift from what the API does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Validation(Shape):
    field: str
    detail: str


class Error(Shape):
    """Every error: what failed, why, and each bad field."""

    message: str
    detail: str
    validations: list[Validation]


# -- users and keys ------------------------------------------------------------------------------

Role = Literal["owner", "admin", "auditor", "member"]
Status = Literal["active", "suspended"]


class User(Shape):
    id: str
    username: str
    name: str
    email: str
    role: Role
    status: Status
    created_at: str


class UserCreate(Shape):
    username: str = Field(description="lowercase letters, digits, _ . -")
    name: str | None = None
    email: str | None = None
    role: Role | None = Field(None, description="default member")


class UserChange(Shape):
    role: Role | None = None
    status: Status | None = None


class Key(Shape):
    id: str
    user_id: str
    username: str
    name: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class KeyCreate(Shape):
    name: str | None = None
    lifetime: str | None = Field(None, description="a duration such as 30d or 12h")


class KeyCreated(Key):
    key: str = Field(description="the secret: shown in this answer only")


# -- providers -----------------------------------------------------------------------------------


class KeyHint(Shape):
    id: str
    hint: str


class Provider(Shape):
    id: str
    type: str
    name: str
    display_name: str
    enabled: bool
    status: Literal["enabled", "disabled", "error"]
    status_reason: str
    base_url: str
    effective_base_url: str
    settings: dict[str, Any]
    api_keys: list[KeyHint]
    source: Literal["api", "seed", "demo"]
    created_at: str
    updated_at: str


class KeptKey(Shape):
    id: str


class ProviderCreate(Shape):
    type: str
    name: str
    display_name: str | None = None
    enabled: bool | None = None
    base_url: str | None = None
    settings: dict[str, Any] | None = None
    api_keys: list[str] | None = Field(None, description="plaintext keys, tried in order")


class ProviderChange(Shape):
    name: str | None = None
    display_name: str | None = None
    enabled: bool | None = None
    base_url: str | None = None
    settings: dict[str, Any] | None = Field(None, description="merged; null removes a key")
    api_keys: list[str | KeptKey] | None = Field(
        None, description="the whole new list: a string adds a key, {id} keeps one"
    )


# -- recordings ----------------------------------------------------------------------------------


class ListingQuery(Shape):
    q: str | None = Field(None, description="space-separated key:value filters")
    limit: int | None = Field(None, ge=1, le=1000, description="default 100")
    offset: int | None = Field(None, ge=0)
    after_id: str | None = Field(None, description="the cursor: the last id of the page before")


class SessionsQuery(Shape):
    q: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)
    offset: int | None = Field(None, ge=0)
    after_session_id: str | None = None


class ThreadsQuery(Shape):
    limit: int | None = Field(None, ge=1, le=200, description="default 50")
    after_id: str | None = None
    before_id: str | None = None


class ValuesQuery(Shape):
    limit: int | None = Field(None, ge=1, le=1000)


class Initiator(Shape):
    id: str
    username: str
    name: str


class TokenUsage(Shape):
    id: str
    interception_id: str
    provider_response_id: str
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int
    metadata: dict[str, Any]
    created_at: str


class UserPrompt(Shape):
    id: str
    interception_id: str
    provider_response_id: str
    prompt: str
    metadata: dict[str, Any]
    created_at: str


class ToolUsage(Shape):
    id: str
    interception_id: str
    provider_response_id: str
    provider_tool_call_id: str
    server_url: str | None
    tool: str
    input: str
    injected: bool
    invocation_error: str | None
    metadata: dict[str, Any]
    created_at: str


class Thought(Shape):
    text: str
    metadata: dict[str, Any]
    created_at: str


class Interception(Shape):
    id: str
    api_key_id: str
    initiator: Initiator
    provider: str
    provider_name: str
    model: str
    client: str
    client_session_id: str | None
    session_id: str
    thread_parent_id: str | None
    thread_root_id: str | None
    credential_kind: Literal["centralized", "byok"]
    credential_hint: str
    metadata: dict[str, Any]
    started_at: str
    ended_at: str | None
    token_usages: list[TokenUsage]
    user_prompts: list[UserPrompt]
    tool_usages: list[ToolUsage]
    model_thoughts: list[Thought]


class Interceptions(Shape):
    count: int = Field(description="exact up to 10,000; past it 10,000 with count_capped true")
    count_capped: bool
    results: list[Interception]


class UsageSummary(Shape):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int


class SessionInitiator(Initiator):
    avatar_url: str


class SessionFields(Shape):
    id: str
    initiator: SessionInitiator
    providers: list[str]
    models: list[str]
    client: str
    metadata: dict[str, Any]
    started_at: str
    ended_at: str | None
    token_usage_summary: UsageSummary
    last_prompt: str | None
    last_active_at: str


class Session(SessionFields):
    threads: int


class Sessions(Shape):
    count: int
    sessions: list[Session]


class ToolCall(Shape):
    id: str
    interception_id: str
    provider_response_id: str
    server_url: str | None
    tool: str
    injected: bool
    input: str
    metadata: dict[str, Any]
    created_at: str


class ThinkingText(Shape):
    text: str


class AgenticAction(Shape):
    interception_id: str
    model: str
    client: str = Field(description="not in Coder's API")
    started_at: str = Field(description="not in Coder's API")
    ended_at: str | None = Field(description="not in Coder's API; null while it runs")
    prompt: str | None = Field(description="the interception's user prompt; not in Coder's API")
    token_usage: UsageSummary
    thinking: list[ThinkingText]
    tool_calls: list[ToolCall]


class Thread(Shape):
    id: str
    prompt: str | None
    model: str
    provider: str
    provider_name: str
    credential_kind: str
    credential_hint: str
    started_at: str
    ended_at: str | None
    token_usage: UsageSummary
    agentic_actions: list[AgenticAction]


class SessionDetail(SessionFields):
    threads: list[Thread]  # the page of threads (a listed session gives their count)
    page_started_at: str | None
    page_ended_at: str | None


class Models(Shape):
    models: list[str]


class Clients(Shape):
    clients: list[str]


# -- usage ---------------------------------------------------------------------------------------


class UsageQuery(Shape):
    start_time: str | None = Field(None, description="RFC 3339; default end_time - 24h")
    end_time: str | None = Field(None, description="RFC 3339, not included; default now")
    group_by: Literal["user", "model", "client"] | None = Field(None, description="default model")
    top: int | None = Field(None, ge=1, le=20, description="groups kept apart (default 5)")
    user: str | None = Field(None, description="a user id, username or me")


class UsageCounts(UsageSummary):
    interceptions: int


class UsageSeries(Shape):
    key: str | None = Field(description="the user id, model or client; null for other")
    label: str
    usage: list[UsageCounts] = Field(description="one per bucket, in the order of buckets")


class UserUsage(UsageCounts):
    initiator: Initiator


class ModelUsage(UsageCounts):
    model: str


class Usage(Shape):
    start_time: str
    end_time: str
    interval: Literal["hour", "day"]
    group_by: Literal["user", "model", "client"]
    buckets: list[str] = Field(description="each bucket's start (UTC)")
    series: list[UsageSeries]
    totals: UsageCounts
    by_user: list[UserUsage]
    by_model: list[ModelUsage]
