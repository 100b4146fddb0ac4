"""The data plane's error matrix, limits, header rules and stream lifecycle, over raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from structlog.testing import capture_logs

from aibridged.intercept.sse import SSEParser
from tests.fakes import FakeUpstream
from tests.gateway import OPENAI_KEY, Gateway, start_gateway
from tests.logs import watch_logs

CHAT = {"model": "gpt-demo", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def gateway_with(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> StartGateway:
    """Start a gateway with extra settings: `await gateway_with(flags={...})`."""

    async def start(**settings: Any) -> Gateway:
        return await start_gateway(
            nursery, database_url=database_url, state_dir=tmp_path, **settings
        )

    return start


@pytest.fixture
async def gateway(gateway_with: StartGateway) -> Gateway:
    return await gateway_with(
        extra_toml=(
            "[ai_gateway]\n"
            'max_body_size = "64KiB"\n'
            'upstream_timeout = "1s"\n'
            'stream_ping_interval = "200ms"\n'
        ),
    )


@pytest.fixture
async def http() -> Any:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


def _chat_url(gw: Gateway, provider: str = "openai") -> str:
    return gw.base(provider) + "/v1/chat/completions"


def _msg_url(gw: Gateway) -> str:
    return gw.base("anthropic") + "/v1/messages"


def _auth(gw: Gateway) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token}"}


def _openai_error(response: httpx2.Response) -> str:
    body = response.json()
    assert set(body["error"]) >= {"message", "type"}
    return str(body["error"]["message"])


def _anthropic_error(response: httpx2.Response) -> str:
    body = response.json()
    assert body["type"] == "error" and "type" in body["error"]
    return str(body["error"]["message"])


async def test_missing_token_is_400_in_provider_shape(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(_chat_url(gateway), json=CHAT)
    assert r.status_code == 400 and _openai_error(r) == "no authentication key provided"
    r = await http.post(_msg_url(gateway), json=MSG)
    assert r.status_code == 400 and _anthropic_error(r) == "no authentication key provided"


@pytest.mark.parametrize("token", ["garbage", "AAAAAAAAAA-" + "b" * 22])
async def test_bad_token_is_403(gateway: Gateway, http: httpx2.AsyncClient, token: str) -> None:
    r = await http.post(_chat_url(gateway), json=CHAT, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 403 and _openai_error(r) == "unauthorized"
    assert gateway.upstream.requests.maxlen is not None and len(gateway.upstream.requests) == 0


async def test_token_in_x_api_key_authenticates_and_never_goes_upstream(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(_chat_url(gateway), json=CHAT, headers={"x-api-key": gateway.token})
    assert r.status_code == 200
    sent = dict(gateway.upstream.requests[-1].headers)
    assert sent["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in sent


async def test_suspended_user_is_403_within_the_cache_ttl(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    from aibridged.store import open_store
    from aibridged.store import users as u

    async with open_store(gateway.config.database.url, pool_size=1, connect_timeout_s=5) as store:
        await u.create_user(store, username="erin")
        _, token = await u.create_token(store, "erin")
        r = await http.post(
            _chat_url(gateway), json=CHAT, headers={"authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200
        await u.set_user_status(store, "erin", "suspended")
    with trio.fail_after(8):
        while True:
            r = await http.post(
                _chat_url(gateway), json=CHAT, headers={"authorization": f"Bearer {token}"}
            )
            if r.status_code == 403:
                break
            await trio.sleep(0.25)
    assert _openai_error(r) == "unauthorized"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v2/aibridge/nope/v1/chat/completions"),
        ("POST", "/api/v2/aibridge/openai/v1/completions"),
        ("GET", "/api/v2/aibridge/openai/v1/files"),
        ("GET", "/api/v2/ai-gateway/anthropic/v1/complete"),
        ("GET", "/api/v2/aibridge/openai/v1/models/../../admin"),
    ],
)
async def test_unknown_provider_or_route_is_404_route_not_supported(
    gateway: Gateway, http: httpx2.AsyncClient, method: str, path: str
) -> None:
    r = await http.request(method, gateway.url + path, headers=_auth(gateway), json=CHAT)
    assert r.status_code == 404
    assert r.text.startswith(f"route not supported: {method} ")


async def test_disabled_provider_is_503(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    r = await http.post(_chat_url(gateway, "switched-off"), json=CHAT, headers=_auth(gateway))
    assert r.status_code == 503
    assert _openai_error(r) == 'provider_disabled: AI provider "switched-off" is disabled'


async def test_oversize_body_is_413_without_reading_it_all(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    big = {"model": "x", "messages": [{"role": "user", "content": "a" * 100_000}]}
    r = await http.post(_chat_url(gateway), json=big, headers=_auth(gateway))
    assert r.status_code == 413
    assert "maximum allowed request body size is 64KiB" in _openai_error(r)

    async def chunks() -> Any:  # no content-length: the limit applies while reading
        for _ in range(100):
            yield b"x" * 1024

    r = await http.post(
        _msg_url(gateway),
        content=chunks(),
        headers={**_auth(gateway), "content-type": "application/json"},
    )
    assert r.status_code == 413 and "64KiB" in _anthropic_error(r)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"{not json", "not valid JSON"), (b"[1,2]", "JSON object"), (b"\xff\xfe{}", "UTF-8")],
)
async def test_malformed_body_is_400(
    gateway: Gateway, http: httpx2.AsyncClient, body: bytes, fragment: str
) -> None:
    r = await http.post(
        _msg_url(gateway),
        content=body,
        headers={**_auth(gateway), "content-type": "application/json"},
    )
    assert r.status_code == 400 and fragment in _anthropic_error(r)


async def test_wrong_content_type_is_415(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    r = await http.post(
        _chat_url(gateway),
        content=json.dumps(CHAT),
        headers={**_auth(gateway), "content-type": "text/plain"},
    )
    assert r.status_code == 415 and "application/json" in _openai_error(r)


async def test_background_responses_are_501(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    r = await http.post(
        gateway.base("openai") + "/v1/responses",
        json={"model": "m", "input": "x", "background": True},
        headers=_auth(gateway),
    )
    assert r.status_code == 501 and "background requests" in _openai_error(r)


@pytest.mark.parametrize("status", [400, 401, 429, 500, 529])
async def test_upstream_error_before_streaming_is_relayed_with_its_status(
    gateway: Gateway, http: httpx2.AsyncClient, status: int
) -> None:
    gateway.upstream.fail_next(status)
    r = await http.post(_msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway))
    assert r.status_code == status
    assert _anthropic_error(r)
    gateway.upstream.fail_next(
        status, b"<html>bad gateway</html>", (("content-type", "text/html"),)
    )
    r = await http.post(_chat_url(gateway), json=CHAT, headers=_auth(gateway))
    assert r.status_code == status and "bad gateway" in _openai_error(r)


async def test_unreachable_upstream_is_502(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = (
        f'[[providers]]\ntype = "anthropic"\nname = "dead"\n'
        f'base_url = "http://127.0.0.1:{dead_port}"\nkey_env = "TEST_ANTHROPIC_KEY"\n'
    )
    gw = await gateway_with(extra_toml=dead)
    r = await http.post(gw.base("dead") + "/v1/messages", json=MSG, headers=_auth(gw))
    assert r.status_code == 502
    assert "upstream request failed" in _anthropic_error(r)


async def test_upstream_that_never_answers_is_504(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    gw = await gateway_with(
        extra_toml='[ai_gateway]\nupstream_timeout = "300ms"\n',
        upstream=FakeUpstream(first_byte_delay_s=5),
    )
    with trio.fail_after(3):
        r = await http.post(_chat_url(gw), json=CHAT, headers=_auth(gw))
    assert r.status_code == 504 and "timed out" in _openai_error(r)


async def _sse(response: httpx2.Response) -> list[Any]:
    parser = SSEParser()
    events = []
    async for chunk in response.aiter_raw():
        events.extend(parser.feed(chunk))
    return events


async def test_upstream_reset_mid_stream_becomes_an_error_event(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    gateway.upstream.reset_mid_stream_next(after_events=3)
    async with http.stream(
        "POST", _msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway)
    ) as r:
        assert r.status_code == 200
        events = await _sse(r)
    assert events[-1].event == "error"
    assert events[-1].json()["error"]["type"] == "api_error"
    gateway.upstream.reset_mid_stream_next(after_events=2)
    async with http.stream(
        "POST", _chat_url(gateway), json={**CHAT, "stream": True}, headers=_auth(gateway)
    ) as r:
        events = await _sse(r)
    assert "error" in events[-1].json()


async def test_upstream_silence_mid_stream_times_out_into_an_error_event(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    gateway.upstream.stall_next(3)  # upstream_timeout is 1 s in this gateway
    async with http.stream(
        "POST", _chat_url(gateway), json={**CHAT, "stream": True}, headers=_auth(gateway)
    ) as r:
        events = await _sse(r)
    assert "timed out" in events[-1].json()["error"]["message"]


async def test_anthropic_streams_get_pings_during_long_silences(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    gateway.upstream.stall_next(0.7)  # ping interval is 200 ms in this gateway
    async with http.stream(
        "POST", _msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway)
    ) as r:
        events = await _sse(r)
    names = [e.event for e in events]
    assert names.count("ping") >= 2
    assert names[-1] == "message_stop"


async def test_finished_stream_is_not_logged_as_a_client_disconnect(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    with capture_logs() as logs:
        async with http.stream(
            "POST", _msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway)
        ) as r:
            await r.aread()
    # The line is written before the response's last byte leaves: no waiting needed.
    [line] = [e for e in logs if e["event"] == "interception.finished"]
    assert line["client_gone"] is False and line["status"] == 200 and line["events"] > 5


async def test_client_disconnect_cancels_the_upstream_within_100ms(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    upstream: FakeUpstream = gateway.upstream
    upstream.hold_stream_open(interval_s=0.01)
    with watch_logs() as logs:
        async with http.stream(
            "POST", _msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway)
        ) as r:
            async for _ in r.aiter_raw():
                break
        left_at = trio.current_time()  # the response is closed: the client has gone
        with trio.fail_after(2):
            await upstream.disconnected.wait()
            [line] = await logs.wait_for("interception.finished")
    assert upstream.disconnect_times[-1] - left_at < 0.1
    assert line["client_gone"] is True and line["error"] is None
    value = gateway.registry.get_sample_value(
        "coder_aibridged_interceptions_total",
        {
            "provider": "anthropic",
            "model": "claude-demo",
            "status": "cancelled",
            "route": "messages",
            "method": "POST",
            "client": "Unknown",
        },
    )
    assert value == 1


async def test_byok_sends_the_users_own_key_and_can_be_disabled(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    gw = await gateway_with()
    headers = {"x-coder-ai-governance-token": gw.token, "authorization": "Bearer sk-users-own-key"}
    r = await http.post(_chat_url(gw), json=CHAT, headers=headers)
    assert r.status_code == 200
    sent = dict(gw.upstream.requests[-1].headers)
    assert sent["authorization"] == "Bearer sk-users-own-key"
    assert "x-coder-ai-governance-token" not in sent


async def test_byok_disabled_is_403(gateway_with: StartGateway, http: httpx2.AsyncClient) -> None:
    gw = await gateway_with(
        flags={"ai_gateway.allow_byok": "false"},
    )
    r = await http.post(_chat_url(gw), json=CHAT, headers={"x-coder-ai-governance-token": gw.token})
    assert (
        r.status_code == 403
        and _openai_error(r) == "Bring Your Own Key (BYOK) mode is not enabled."
    )


async def test_rate_limit_is_429_with_retry_after(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    """Ten requests with a limit of 1/s: however the 1 s windows fall, most are refused (the
    window arithmetic itself is tested exactly in test_limits.py)."""
    gw = await gateway_with(flags={"ai_gateway.rate_limit": "1"})
    answers = [await http.post(_chat_url(gw), json=CHAT, headers=_auth(gw)) for _ in range(10)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert refused[0].headers["retry-after"] == "1"
    assert "rate limited" in _openai_error(refused[0])


async def test_max_concurrency_is_503(gateway_with: StartGateway, http: httpx2.AsyncClient) -> None:
    gw = await gateway_with(
        flags={"ai_gateway.max_concurrency": "1"},
    )
    gw.upstream.hold_stream_open(interval_s=0.05)
    async with http.stream(
        "POST", _msg_url(gw), json={**MSG, "stream": True}, headers=_auth(gw)
    ) as held:
        assert held.status_code == 200
        r = await http.post(_msg_url(gw), json=MSG, headers=_auth(gw))
        assert r.status_code == 503 and "at capacity" in _anthropic_error(r)


async def test_passthrough_models_injects_the_provider_key(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.get(gateway.base("openai") + "/v1/models", headers=_auth(gateway))
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert dict(gateway.upstream.requests[-1].headers)["authorization"] == f"Bearer {OPENAI_KEY}"
    r = await http.post(
        gateway.base("anthropic") + "/v1/messages/count_tokens",
        json=MSG,
        headers={"x-api-key": gateway.token},
    )
    assert r.status_code == 200 and "input_tokens" in r.json()


async def test_gateway_disabled_serves_no_provider_routes(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    gw = await gateway_with(
        flags={"ai_gateway.enabled": "false"},
    )
    r = await http.post(_chat_url(gw), json=CHAT, headers=_auth(gw))
    assert r.status_code == 404
    assert len(gw.upstream.requests) == 0
    assert (await http.get(gw.url + "/readyz")).status_code == 200


async def test_messages_beta_query_and_beta_headers_reach_upstream(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(
        _msg_url(gateway) + "?beta=true",
        json=MSG,
        headers={**_auth(gateway), "anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert r.status_code == 200
    sent = gateway.upstream.requests[-1]
    assert sent.path == "/v1/messages" and "beta=true" in str(sent.query)
    assert dict(sent.headers)["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_chat_n_is_forced_to_one_and_other_fields_are_kept(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(
        _chat_url(gateway), json={**CHAT, "n": 3, "temperature": 0.2}, headers=_auth(gateway)
    )
    assert r.status_code == 200
    sent = json.loads(gateway.upstream.requests[-1].body)
    assert sent["n"] == 1 and sent["temperature"] == 0.2 and sent["messages"] == CHAT["messages"]


async def test_hop_by_hop_forwarding_and_gateway_headers_are_stripped(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(
        _chat_url(gateway),
        json=CHAT,
        headers={
            **_auth(gateway),
            "x-forwarded-for": "10.0.0.1",
            "forwarded": "for=10.0.0.1",
            "x-coder-ai-governance-request-id": "abc",
            "x-custom": "kept",
            "user-agent": "claude-cli/2.1.0",
        },
    )
    assert r.status_code == 200
    sent = dict(gateway.upstream.requests[-1].headers)
    for name in ("x-forwarded-for", "forwarded", "x-coder-ai-governance-request-id"):
        assert name not in sent
    assert sent["x-custom"] == "kept" and sent["user-agent"] == "claude-cli/2.1.0"
    assert "x-ai-bridge-actor-id" not in sent


async def test_actor_headers_are_sent_when_enabled(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    gw = await gateway_with(
        flags={"ai_gateway.send_actor_headers": "true"},
    )
    assert (await http.post(_chat_url(gw), json=CHAT, headers=_auth(gw))).status_code == 200
    sent = dict(gw.upstream.requests[-1].headers)
    assert sent["x-ai-bridge-actor-metadata-username"] == "admin"
    assert len(sent["x-ai-bridge-actor-id"]) == 36
    # Passthrough requests never carry actor headers (as Coder's AI Gateway does).
    await http.get(gw.base("openai") + "/v1/models", headers=_auth(gw))
    assert "x-ai-bridge-actor-id" not in dict(gw.upstream.requests[-1].headers)


async def test_claude_code_client_and_session_are_classified(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    with capture_logs() as logs:
        r = await http.post(
            _msg_url(gateway),
            json=MSG,
            headers={
                **_auth(gateway),
                "user-agent": "claude-cli/2.1.90 (external, cli)",
                "x-claude-code-session-id": "sess-123",
            },
        )
    assert r.status_code == 200
    [line] = [e for e in logs if e["event"] == "interception.finished"]
    assert (line["client"], line["client_session_id"]) == ("Claude Code", "sess-123")


async def test_metrics_count_interceptions_passthrough_and_rejections(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    def value(name: str, **labels: str) -> float:
        return gateway.registry.get_sample_value(f"coder_aibridged_{name}", labels) or 0.0

    await http.post(
        _chat_url(gateway), json=CHAT, headers={**_auth(gateway), "user-agent": "codex_cli_rs/0.1"}
    )
    gateway.upstream.fail_next(500)
    await http.post(_chat_url(gateway), json=CHAT, headers=_auth(gateway))
    await http.get(gateway.base("openai") + "/v1/models", headers=_auth(gateway))
    await http.post(_chat_url(gateway), json=CHAT)
    await http.post(_chat_url(gateway), json=CHAT, headers={"authorization": "Bearer nope"})
    # Every handler counts before its response's last byte: all counted by now.
    common = {
        "provider": "openai",
        "model": "gpt-demo",
        "route": "chat_completions",
        "method": "POST",
    }
    assert value("interceptions_total", status="completed", client="Codex", **common) == 1
    assert value("interceptions_total", status="failed", client="Unknown", **common) == 1
    assert (
        value(
            "interceptions_inflight", provider="openai", model="gpt-demo", route="chat_completions"
        )
        == 0
    )
    assert value("interceptions_duration_seconds_count", provider="openai", model="gpt-demo") == 2
    assert value("passthrough_total", provider="openai", route="/v1/models", method="GET") == 1
    assert value("requests_rejected_total", reason="no_token") == 1
    assert value("requests_rejected_total", reason="unauthorized") == 1
    assert (
        value(
            "provider_info", provider_name="switched-off", provider_type="openai", status="disabled"
        )
        == 1
    )


def test_model_labels_are_admitted_only_after_a_2xx_and_capped_per_provider() -> None:
    from prometheus_client import CollectorRegistry

    from aibridged.metrics import MODEL_LABEL_CHARS, MODELS_PER_PROVIDER, Metrics

    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    assert metrics.model_label("p", "junk-1") == "other"  # never answered with a 2xx
    labels = {metrics.admit_model("p", f"m{i}") for i in range(MODELS_PER_PROVIDER + 50)}
    assert len(labels) == MODELS_PER_PROVIDER + 1 and "other" in labels
    assert metrics.model_label("p", "m0") == "m0" and metrics.admit_model("p", "m0") == "m0"
    assert metrics.model_label("q", "") == "unknown"
    long = metrics.admit_model("q", "x" * 100_000)
    assert len(long) == MODEL_LABEL_CHARS
    assert metrics.admit_model("q", "\ud800bad") == "?bad"


async def test_blocking_response_keeps_its_length_and_a_cut_body_is_not_passed_off_as_whole(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.post(_msg_url(gateway), json=MSG, headers=_auth(gateway))
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(r.content))
    assert "transfer-encoding" not in r.headers
    gateway.upstream.reset_mid_stream_next(after_events=1)
    with pytest.raises(httpx2.RemoteProtocolError):
        await http.post(_msg_url(gateway), json=MSG, headers=_auth(gateway))
    # The gateway is fine afterwards.
    assert (await http.post(_msg_url(gateway), json=MSG, headers=_auth(gateway))).status_code == 200


async def test_streams_are_marked_unbuffered(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    async with http.stream(
        "POST", _msg_url(gateway), json={**MSG, "stream": True}, headers=_auth(gateway)
    ) as r:
        await r.aread()
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["content-type"].startswith("text/event-stream")


async def test_head_passthrough_keeps_the_connection_usable(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    r = await http.head(gateway.base("openai") + "/v1/models", headers=_auth(gateway))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0  # the GET body's length, as the upstream said
    assert (
        await http.get(gateway.base("openai") + "/v1/models", headers=_auth(gateway))
    ).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/%252e%252e/files",  # would be decoded twice upstream
        "/v1/models/gpt-4%3Fx%3D1",  # would turn into a query upstream
        "/v1/models/a%00b",
        "/v1/models/%ff",
        "/v1/models/..%2Ffiles",
    ],
)
async def test_encoded_path_tricks_are_refused(
    gateway: Gateway, http: httpx2.AsyncClient, path: str
) -> None:
    r = await http.get(gateway.base("openai") + path, headers=_auth(gateway))
    assert r.status_code == 404 and r.text.startswith("route not supported")
    assert len(gateway.upstream.requests) == 0


async def test_passthrough_path_is_re_encoded_for_the_upstream(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await http.get(
        gateway.base("openai") + "/v1/models/ft:gpt-4o:org:x%20y", headers=_auth(gateway)
    )
    sent = gateway.upstream.requests[-1]
    assert (sent.path, sent.raw_path) == (
        "/v1/models/ft:gpt-4o:org:x y",
        "/v1/models/ft:gpt-4o:org:x%20y",
    )


async def test_lone_surrogate_in_a_rewritten_body_is_kept_escaped(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    raw = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x\\ud800y"}]}'
    r = await http.post(
        _chat_url(gateway),
        content=raw,
        headers={**_auth(gateway), "content-type": "application/json"},
    )
    assert r.status_code == 200
    sent = gateway.upstream.requests[-1].body
    assert b"\\ud800" in sent and b'"include_usage":true' in sent


async def test_a_stalled_request_body_gets_408_and_frees_its_slot(
    gateway_with: StartGateway, http: httpx2.AsyncClient
) -> None:
    gw = await gateway_with(
        flags={"ai_gateway.max_concurrency": "1"},
        extra_toml='[ai_gateway]\nrequest_body_timeout = "300ms"\n',
    )
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /api/v2/aibridge/anthropic/v1/messages HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n"
            + f"x-api-key: {gw.token}\r\n\r\n".encode()
            + b'{"model":'
        )
        with trio.fail_after(3):
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some()
    assert answer.startswith(b"HTTP/1.1 408")
    assert (await http.post(_msg_url(gw), json=MSG, headers=_auth(gw))).status_code == 200


async def test_unknown_http_methods_are_refused_before_any_work(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    for method in ("BREW", "FOO" * 3000):
        r = await http.request(
            method, gateway.base("openai") + "/v1/models", headers=_auth(gateway)
        )
        assert r.status_code == 404 and r.text.startswith("route not supported: ")
        assert len(r.text) < 700  # a 9,000-character method is not echoed whole
    assert len(gateway.upstream.requests) == 0
    value = gateway.registry.get_sample_value(
        "coder_aibridged_requests_rejected_total", {"reason": "route_not_supported"}
    )
    assert value == 2


async def test_upstream_connections_are_reused_for_blocking_and_streamed_answers(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    """Bodies framed by Content-Length are read to their end, so the pooled connection goes back
    to the pool instead of being closed (8 pool shards: at most 8 connections for 40 calls)."""
    for stream in (False, True) * 20:
        r = await http.post(
            _msg_url(gateway), json={**MSG, "stream": stream}, headers=_auth(gateway)
        )
        assert r.status_code == 200
    peers = {request.peer for request in list(gateway.upstream.requests)[-40:]}
    assert 1 <= len(peers) <= 8
