"""Client classification and client session ids (as Coder's AI Gateway does).

Best effort, from the lower-cased ``User-Agent`` plus the ``originator`` and
``x-cursor-client-version`` headers, evaluated in a fixed order where the first match wins (so a
``claude-cli/...`` agent that also sends ``x-cursor-client-version`` is Claude Code). The one
deliberate difference from upstream: ``xum/`` and ``mux/`` agents are reported as ``Mux`` (the name
the docs use), where latest upstream says ``Xum``.

Every function here takes untrusted input and never raises on odd shapes.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping

__all__ = ["Client", "classify_client", "client_session_id"]


class Client(enum.StrEnum):
    """The client application that sent a request; values are the display / stored names."""

    CLAUDE_CODE = "Claude Code"
    CODEX = "Codex"
    ZED = "Zed"
    COPILOT_VSCODE = "GitHub Copilot (VS Code)"
    COPILOT_CLI = "GitHub Copilot (CLI)"
    KILO_CODE = "Kilo Code"
    ROO_CODE = "Roo Code"
    CODER_AGENTS = "Coder Agents"
    CHARM_CRUSH = "Charm Crush"
    CURSOR = "Cursor"
    OPENCODE = "OpenCode"
    JUNIE = "Junie"
    MUX = "Mux"
    UNKNOWN = "Unknown"


def classify_client(headers: Mapping[str, str]) -> Client:
    """Guess the client from request headers (names lower-cased). First matching rule wins."""
    ua = headers.get("user-agent", "").lower()
    originator = headers.get("originator", "")
    # str.startswith with a tuple is one C call per rule.
    if ua.startswith(("xum/", "mux/")):
        return Client.MUX
    if ua.startswith("claude"):
        return Client.CLAUDE_CODE
    if ua.startswith("codex"):
        return Client.CODEX
    if ua.startswith("zed/"):
        return Client.ZED
    if ua.startswith("githubcopilotchat/"):
        return Client.COPILOT_VSCODE
    if ua.startswith("copilot/"):
        return Client.COPILOT_CLI
    if ua.startswith("kilo-code/") or originator == "kilo-code":
        return Client.KILO_CODE
    if ua.startswith("roo-code/") or originator == "roo-code":
        return Client.ROO_CODE
    if ua.startswith("coder-agents/"):
        return Client.CODER_AGENTS
    if ua.startswith(("charm crush/", "charm-crush/")):
        return Client.CHARM_CRUSH
    if headers.get("x-cursor-client-version", ""):
        return Client.CURSOR
    if ua.startswith("opencode/"):
        return Client.OPENCODE
    if ua.startswith("junie:"):
        return Client.JUNIE
    return Client.UNKNOWN


# Headers (lower-cased) holding the session id, tried in order, for clients that only use headers.
_SESSION_HEADERS: dict[Client, tuple[str, ...]] = {
    Client.CODEX: ("session-id", "session_id"),
    Client.MUX: ("x-mux-workspace-id",),
    Client.COPILOT_VSCODE: ("x-interaction-id",),  # not vscode-sessionid: that lives per window
    Client.COPILOT_CLI: ("x-client-session-id",),
    Client.KILO_CODE: ("x-kilocode-taskid",),
    Client.CODER_AGENTS: ("x-coder-chat-id",),
    Client.OPENCODE: ("x-opencode-session", "x-session-affinity"),
}

# Legacy Claude Code metadata.user_id: user_<sha>_account_<id>_session_<uuid>. Go's `$` (no
# multi-line flag) is end of text, which is Python's `\Z`; `.` excludes newlines in both.
_CLAUDE_LEGACY_SESSION = re.compile(r"_session_(.+)\Z")


def _clean(value: object) -> str | None:
    """Trimmed string, or None when missing, not a string, or blank."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def client_session_id(
    client: Client,
    headers: Mapping[str, str],
    body: Mapping[str, object] | None,
) -> str | None:
    """The client's own session / conversation id, if it sends one.

    ``headers`` has lower-cased names; ``body`` is the parsed JSON request body (or None).
    """
    if client is Client.CLAUDE_CODE:
        sid = _clean(headers.get("x-claude-code-session-id"))
        if sid is not None:
            return sid
        return _claude_code_session_from_body(body)
    for name in _SESSION_HEADERS.get(client, ()):
        sid = _clean(headers.get(name))
        if sid is not None:
            return sid
    return None


def _claude_code_session_from_body(body: object) -> str | None:
    if not isinstance(body, Mapping):
        return None
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str):
        return None
    # Current Claude Code: user_id is a JSON-encoded object with `session_id`. When that key
    # exists it decides, even if empty (upstream does not fall back to the legacy format then).
    if user_id.lstrip().startswith("{"):
        try:
            decoded = json.loads(user_id)
        except (ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, dict) and "session_id" in decoded:
            return _clean(_json_scalar_text(decoded["session_id"]))
    match = _CLAUDE_LEGACY_SESSION.search(user_id)
    return _clean(match.group(1)) if match else None


def _json_scalar_text(value: object) -> str | None:
    # gjson's String(): strings as is, numbers and booleans as their JSON text, null as "".
    # Objects and arrays (raw JSON text upstream) are not plausible ids: treated as missing.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None
