"""Route classification per provider family (paths and methods), without a server."""

from __future__ import annotations

import pytest

from aibridged.intercept.routes import Api
from aibridged.providers.anthropic import ANTHROPIC
from aibridged.providers.family import ProviderFamily
from aibridged.providers.openai import OPENAI


@pytest.mark.parametrize(
    ("fmt", "method", "path", "api", "upstream", "pattern"),
    [
        (
            OPENAI,
            "POST",
            "/v1/chat/completions",
            Api.CHAT_COMPLETIONS,
            "/chat/completions",
            "/v1/chat/completions",
        ),
        (OPENAI, "POST", "/v1/responses", Api.RESPONSES, "/responses", "/v1/responses"),
        (
            OPENAI,
            "GET",
            "/v1/responses/resp_1",
            Api.PASSTHROUGH,
            "/responses/resp_1",
            "/v1/responses/",
        ),
        (OPENAI, "GET", "/v1/models", Api.PASSTHROUGH, "/models", "/v1/models"),
        (OPENAI, "GET", "/v1/models/gpt-5", Api.PASSTHROUGH, "/models/gpt-5", "/v1/models/"),
        (
            OPENAI,
            "POST",
            "/v1/conversations",
            Api.PASSTHROUGH,
            "/conversations",
            "/v1/conversations",
        ),
        (ANTHROPIC, "POST", "/v1/messages", Api.MESSAGES, "/v1/messages", "/v1/messages"),
        (
            ANTHROPIC,
            "POST",
            "/v1/messages/count_tokens",
            Api.PASSTHROUGH,
            "/v1/messages/count_tokens",
            "/v1/messages/count_tokens",
        ),
        (
            ANTHROPIC,
            "POST",
            "/api/event_logging/batch",
            Api.PASSTHROUGH,
            "/api/event_logging/batch",
            "/api/event_logging/",
        ),
    ],
)
def test_known_routes(
    fmt: ProviderFamily, method: str, path: str, api: Api, upstream: str, pattern: str
) -> None:
    route = fmt.route(method, path)
    assert route is not None
    assert (route.api, route.upstream_path, route.pattern) == (api, upstream, pattern)


@pytest.mark.parametrize(
    ("fmt", "method", "path"),
    [
        (
            OPENAI,
            "POST",
            "/v1/completions",
        ),  # legacy completions are deliberately not passed through
        (OPENAI, "GET", "/v1/chat/completions"),  # intercepted routes are POST only
        (OPENAI, "GET", "/v1/models/"),
        (OPENAI, "GET", "/v1/models/../files"),
        (OPENAI, "GET", "/v1//models"),
        (OPENAI, "POST", "/v1/messages"),  # an Anthropic route on an OpenAI provider
        (ANTHROPIC, "POST", "/v1/chat/completions"),
        (ANTHROPIC, "GET", "/v1/files"),
        (ANTHROPIC, "POST", "/messages"),
    ],
)
def test_everything_else_is_not_supported(fmt: ProviderFamily, method: str, path: str) -> None:
    assert fmt.route(method, path) is None


@pytest.mark.parametrize(
    ("fmt", "method", "path"),
    [
        (OPENAI, "DELETE", "/v1/models/ft:gpt-4o:org:x"),  # deleting a fine-tuned model
        (OPENAI, "POST", "/v1/models/gpt-5"),
        (OPENAI, "PUT", "/v1/models/gpt-5"),
        (OPENAI, "PATCH", "/v1/responses/resp_1"),
        (ANTHROPIC, "DELETE", "/v1/models/claude"),
        (ANTHROPIC, "GET", "/v1/messages/count_tokens"),
        (ANTHROPIC, "PUT", "/api/event_logging/batch"),
    ],
)
def test_passthrough_allows_only_the_methods_its_route_needs(
    fmt: ProviderFamily, method: str, path: str
) -> None:
    assert fmt.route(method, path) is None


@pytest.mark.parametrize(
    ("fmt", "method", "path"),
    [
        (OPENAI, "HEAD", "/v1/models"),
        (OPENAI, "DELETE", "/v1/responses/resp_1"),
        (OPENAI, "DELETE", "/v1/conversations/conv_1"),
        (ANTHROPIC, "HEAD", "/v1/models/claude"),
    ],
)
def test_reads_and_the_writes_a_route_needs_pass(
    fmt: ProviderFamily, method: str, path: str
) -> None:
    route = fmt.route(method, path)
    assert route is not None and route.api is Api.PASSTHROUGH
