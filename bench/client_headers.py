"""The headers the coding agents' SDKs send with the bench bodies, besides auth, content-type, host
and content-length (Claude Code, the OpenAI Python SDK, Codex CLI)."""

from __future__ import annotations

ANTHROPIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("user-agent", "claude-cli/2.0.14 (external, cli)"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("x-app", "cli"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "0.60.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.19.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-timeout", "600"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br"),
)
OPENAI_HEADERS: tuple[tuple[str, str], ...] = (
    ("user-agent", "OpenAI/Python 2.8.1"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "2.8.1"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.12.3"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
)
RESPONSES_HEADERS: tuple[tuple[str, str], ...] = (
    ("user-agent", "codex_cli_rs/0.46.0 (Debian 12.0.0; x86_64) xterm-256color"),
    ("originator", "codex_cli_rs"),
    ("openai-beta", "responses=experimental"),
    ("session_id", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
)
