"""Client classification and client session ids follow Coder's AI Gateway (its latest version)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from aibridged.clients import Client, classify_client, client_session_id

# --------------------------------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # 1. Mux / Xum
        ({"user-agent": "mux/0.9.1 (darwin)"}, Client.MUX),
        ({"user-agent": "xum/1.0.0"}, Client.MUX),
        ({"user-agent": "MUX/0.9.1"}, Client.MUX),
        ({"user-agent": "muxer/1.0"}, Client.UNKNOWN),
        # 2. Claude Code: any UA starting with "claude"
        ({"user-agent": "claude-cli/2.1.86 (external, cli)"}, Client.CLAUDE_CODE),
        ({"user-agent": "Claude-CLI/1.0.0"}, Client.CLAUDE_CODE),
        ({"user-agent": "claude"}, Client.CLAUDE_CODE),
        ({"user-agent": "my claude-cli/1.0"}, Client.UNKNOWN),
        # 3. Codex: any UA starting with "codex"
        ({"user-agent": "codex_cli_rs/0.46.0 (Mac OS 15.6.1; arm64)"}, Client.CODEX),
        ({"user-agent": "codex_exec/0.50.0"}, Client.CODEX),
        ({"user-agent": "Codex/1"}, Client.CODEX),
        # 4. Zed
        ({"user-agent": "Zed/0.205.3 (macos; aarch64)"}, Client.ZED),
        ({"user-agent": "zed"}, Client.UNKNOWN),
        # 5. Copilot (VS Code)
        ({"user-agent": "GitHubCopilotChat/0.31.2"}, Client.COPILOT_VSCODE),
        # 6. Copilot (CLI)
        ({"user-agent": "copilot/0.0.339 (darwin v22.19.0)"}, Client.COPILOT_CLI),
        ({"user-agent": "copilot-language-server/1.0"}, Client.UNKNOWN),
        # 7. Kilo Code: UA or originator
        ({"user-agent": "Kilo-Code/4.96.1"}, Client.KILO_CODE),
        ({"user-agent": "OpenAI/JS 5.12.2", "originator": "kilo-code"}, Client.KILO_CODE),
        ({"user-agent": "", "originator": "kilo-code"}, Client.KILO_CODE),
        ({"originator": "Kilo-Code"}, Client.UNKNOWN),  # the originator match is exact
        # 8. Roo Code: UA or originator
        ({"user-agent": "roo-code/3.28.0"}, Client.ROO_CODE),
        ({"user-agent": "OpenAI/JS 5.12.2", "originator": "roo-code"}, Client.ROO_CODE),
        # 9. Coder Agents
        ({"user-agent": "coder-agents/2.26.0"}, Client.CODER_AGENTS),
        # 10. Charm Crush: both spellings
        ({"user-agent": "Charm Crush/0.10.4"}, Client.CHARM_CRUSH),
        ({"user-agent": "charm-crush/0.11.0"}, Client.CHARM_CRUSH),
        ({"user-agent": "charm/1.0"}, Client.UNKNOWN),
        # 11. Cursor: the header, whatever the UA
        ({"user-agent": "connect-es/1.6.1", "x-cursor-client-version": "1.7.28"}, Client.CURSOR),
        ({"x-cursor-client-version": "1.7.28"}, Client.CURSOR),
        ({"user-agent": "connect-es/1.6.1", "x-cursor-client-version": ""}, Client.UNKNOWN),
        # 12. OpenCode
        ({"user-agent": "opencode/0.15.8 ai-sdk/provider-utils/3.0.10"}, Client.OPENCODE),
        ({"user-agent": "OpenCode/1.0"}, Client.OPENCODE),
        # 13. Junie (colon, not slash)
        ({"user-agent": "junie:IU-252.26830.84"}, Client.JUNIE),
        ({"user-agent": "junie/1.0"}, Client.UNKNOWN),
        # otherwise
        ({}, Client.UNKNOWN),
        ({"user-agent": ""}, Client.UNKNOWN),
        ({"user-agent": "python-httpx/0.28.1"}, Client.UNKNOWN),
        ({"user-agent": "OpenAI/Python 2.8.0"}, Client.UNKNOWN),
        ({"user-agent": " claude-cli/1.0"}, Client.UNKNOWN),  # prefix rules do not trim
    ],
)
def test_classify_client_rules(headers: Mapping[str, str], expected: Client) -> None:
    assert classify_client(headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # The first matching rule wins, in Coder's order.
        ({"user-agent": "claude-cli/2.0", "x-cursor-client-version": "1.7"}, Client.CLAUDE_CODE),
        ({"user-agent": "codex_cli_rs/0.46", "originator": "kilo-code"}, Client.CODEX),
        ({"user-agent": "mux/1.0 claude-cli"}, Client.MUX),
        ({"user-agent": "roo-code/3.0", "originator": "kilo-code"}, Client.KILO_CODE),
        ({"user-agent": "kilo-code/4.0", "originator": "roo-code"}, Client.KILO_CODE),
        ({"user-agent": "coder-agents/1", "originator": "roo-code"}, Client.ROO_CODE),
        ({"user-agent": "opencode/1.0", "x-cursor-client-version": "1.7"}, Client.CURSOR),
        ({"user-agent": "junie:IU", "x-cursor-client-version": "1.7"}, Client.CURSOR),
        ({"user-agent": "charm crush/1", "x-cursor-client-version": "1.7"}, Client.CHARM_CRUSH),
        ({"user-agent": "githubcopilotchat/1", "originator": "kilo-code"}, Client.COPILOT_VSCODE),
        ({"user-agent": "copilot/1", "originator": "roo-code"}, Client.COPILOT_CLI),
        ({"user-agent": "zed/1", "originator": "kilo-code"}, Client.ZED),
    ],
)
def test_classify_client_first_matching_rule_wins(
    headers: Mapping[str, str], expected: Client
) -> None:
    assert classify_client(headers) is expected


def test_client_values_are_the_display_names() -> None:
    assert [c.value for c in Client] == [
        "Claude Code",
        "Codex",
        "Zed",
        "GitHub Copilot (VS Code)",
        "GitHub Copilot (CLI)",
        "Kilo Code",
        "Roo Code",
        "Coder Agents",
        "Charm Crush",
        "Cursor",
        "OpenCode",
        "Junie",
        "Mux",
        "Unknown",
    ]
    assert Client("Claude Code") is Client.CLAUDE_CODE
    assert f"{Client.COPILOT_CLI}" == "GitHub Copilot (CLI)"


# --------------------------------------------------------------------------------------------------
# Session ids

SESSION_UUID = "0199e0a6-1c4e-7a53-9a0b-3c2f1d9e8b77"
LEGACY_USER_ID = (
    "user_4f1c3c9e2b7d8a6e5f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6"
    f"_account_9a8b7c6d-5e4f-3a2b-1c0d-ef9876543210_session_{SESSION_UUID}"
)
JSON_USER_ID = json.dumps(
    {
        "device_id": "4f1c3c9e2b7d8a6e5f0a1b2c3d4e5f60",
        "account_uuid": "9a8b7c6d-5e4f-3a2b-1c0d-ef9876543210",
        "session_id": SESSION_UUID,
    }
)


def claude_body(user_id: object) -> dict[str, object]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "metadata": {"user_id": user_id},
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize(
    ("client", "headers", "body", "expected"),
    [
        # Claude Code: header first
        (
            Client.CLAUDE_CODE,
            {"x-claude-code-session-id": "hdr-session"},
            claude_body(JSON_USER_ID),
            "hdr-session",
        ),
        (Client.CLAUDE_CODE, {"x-claude-code-session-id": "  padded  "}, None, "padded"),
        # ... a blank header falls through to the body
        (
            Client.CLAUDE_CODE,
            {"x-claude-code-session-id": "  "},
            claude_body(JSON_USER_ID),
            SESSION_UUID,
        ),
        # ... metadata.user_id as a JSON-encoded object
        (Client.CLAUDE_CODE, {}, claude_body(JSON_USER_ID), SESSION_UUID),
        (Client.CLAUDE_CODE, {}, claude_body(' {"session_id": " s-1 "}'), "s-1"),
        # ... the legacy user_<sha>_account_<id>_session_<uuid> format
        (Client.CLAUDE_CODE, {}, claude_body(LEGACY_USER_ID), SESSION_UUID),
        (Client.CLAUDE_CODE, {}, claude_body("user_x_session_a_session_b"), "a_session_b"),
        (Client.CLAUDE_CODE, {}, claude_body("user_x_session_ abc \n"), None),  # `.` stops at \n
        (Client.CLAUDE_CODE, {}, claude_body("user_x_session_  "), None),
        (Client.CLAUDE_CODE, {}, claude_body("user_x_session_"), None),
        (Client.CLAUDE_CODE, {}, claude_body("user_abc"), None),
        # ... a JSON object with session_id decides, even when empty (no legacy fallback)
        (Client.CLAUDE_CODE, {}, claude_body('{"session_id": "", "x": "_session_zzz"}'), None),
        (Client.CLAUDE_CODE, {}, claude_body('{"session_id": null}'), None),
        (Client.CLAUDE_CODE, {}, claude_body('{"session_id": 42}'), "42"),
        (Client.CLAUDE_CODE, {}, claude_body('{"session_id": {"nested": 1}}'), None),
        # ... a JSON object without session_id falls back to the legacy pattern
        (Client.CLAUDE_CODE, {}, claude_body('{"device_id": "d"}'), None),
        (Client.CLAUDE_CODE, {}, claude_body('{"note": "_session_legacy"}'), 'legacy"}'),
        # ... invalid JSON that looks like an object falls back to the legacy pattern too
        (Client.CLAUDE_CODE, {}, claude_body("{not json_session_abc"), "abc"),
        (Client.CLAUDE_CODE, {}, claude_body('{"a":' + "[" * 100_000), None),  # RecursionError
        (Client.CLAUDE_CODE, {}, claude_body('["_session_in_array"]'), 'in_array"]'),
        # ... odd shapes never raise
        (Client.CLAUDE_CODE, {}, None, None),
        (Client.CLAUDE_CODE, {}, {}, None),
        (Client.CLAUDE_CODE, {}, {"metadata": None}, None),
        (Client.CLAUDE_CODE, {}, {"metadata": "user_x_session_abc"}, None),
        (Client.CLAUDE_CODE, {}, {"metadata": ["user_id"]}, None),
        (Client.CLAUDE_CODE, {}, {"metadata": {}}, None),
        (Client.CLAUDE_CODE, {}, claude_body(None), None),
        (Client.CLAUDE_CODE, {}, claude_body(12345), None),
        (Client.CLAUDE_CODE, {}, claude_body({"session_id": "not-a-string-user-id"}), None),
        (Client.CLAUDE_CODE, {}, claude_body(""), None),
        # Codex: session-id, then session_id
        (Client.CODEX, {"session-id": "c-1", "session_id": "c-2"}, None, "c-1"),
        (Client.CODEX, {"session_id": "c-2"}, None, "c-2"),
        (Client.CODEX, {"session-id": " ", "session_id": " c-2 "}, None, "c-2"),
        (Client.CODEX, {}, None, None),
        # Codex does not read the Claude Code sources
        (Client.CODEX, {"x-claude-code-session-id": "x"}, claude_body(LEGACY_USER_ID), None),
        # Mux
        (Client.MUX, {"x-mux-workspace-id": "ws-1"}, None, "ws-1"),
        # Copilot VS Code: x-interaction-id, not vscode-sessionid
        (Client.COPILOT_VSCODE, {"x-interaction-id": "i-1", "vscode-sessionid": "w"}, None, "i-1"),
        (Client.COPILOT_VSCODE, {"vscode-sessionid": "w"}, None, None),
        # Copilot CLI
        (Client.COPILOT_CLI, {"x-client-session-id": "cli-1"}, None, "cli-1"),
        # Kilo Code
        (Client.KILO_CODE, {"x-kilocode-taskid": "task-1"}, None, "task-1"),
        # Coder Agents
        (Client.CODER_AGENTS, {"x-coder-chat-id": "chat-1"}, None, "chat-1"),
        # OpenCode: x-opencode-session, then x-session-affinity
        (Client.OPENCODE, {"x-opencode-session": "o-1", "x-session-affinity": "a"}, None, "o-1"),
        (Client.OPENCODE, {"x-session-affinity": " a-1 "}, None, "a-1"),
        (Client.OPENCODE, {"x-opencode-session": "", "x-session-affinity": ""}, None, None),
        # No session id for these, whatever they send
        *[
            (
                client,
                {
                    "x-claude-code-session-id": "x",
                    "session-id": "x",
                    "session_id": "x",
                    "x-mux-workspace-id": "x",
                    "x-interaction-id": "x",
                    "x-client-session-id": "x",
                    "x-kilocode-taskid": "x",
                    "x-coder-chat-id": "x",
                    "x-opencode-session": "x",
                    "x-session-affinity": "x",
                },
                claude_body(LEGACY_USER_ID),
                None,
            )
            for client in (
                Client.ZED,
                Client.ROO_CODE,
                Client.CURSOR,
                Client.CHARM_CRUSH,
                Client.JUNIE,
                Client.UNKNOWN,
            )
        ],
    ],
)
def test_client_session_id_sources(
    client: Client,
    headers: Mapping[str, str],
    body: Mapping[str, object] | None,
    expected: str | None,
) -> None:
    assert client_session_id(client, headers, body) == expected


def test_client_session_id_header_clients_ignore_other_clients_headers() -> None:
    only_mine = {
        Client.MUX: "x-mux-workspace-id",
        Client.COPILOT_VSCODE: "x-interaction-id",
        Client.COPILOT_CLI: "x-client-session-id",
        Client.KILO_CODE: "x-kilocode-taskid",
        Client.CODER_AGENTS: "x-coder-chat-id",
    }
    for client, header in only_mine.items():
        others = {h: "other" for c, h in only_mine.items() if c is not client}
        assert client_session_id(client, others, None) is None
        assert client_session_id(client, {**others, header: "mine"}, None) == "mine"


def test_client_session_id_tolerates_a_non_mapping_body() -> None:
    odd: object = ["not", "a", "mapping"]
    assert client_session_id(Client.CLAUDE_CODE, {}, odd) is None  # type: ignore[arg-type]


def test_end_to_end_classify_then_session_id_for_claude_code() -> None:
    headers = {"user-agent": "claude-cli/2.1.86 (external, cli)", "anthropic-version": "2023-06-01"}
    client = classify_client(headers)
    assert client is Client.CLAUDE_CODE
    assert client_session_id(client, headers, claude_body(JSON_USER_ID)) == SESSION_UUID
