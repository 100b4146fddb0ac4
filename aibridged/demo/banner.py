"""What `aibridged serve --demo` prints once ready: ready-to-paste client configuration."""

from __future__ import annotations

from pathlib import Path


def demo_banner(gateway_url: str, token_file: Path) -> str:
    base = gateway_url.rstrip("/") + "/api/v2/aibridge"
    chat = '{"model":"demo","stream":true,"messages":[{"role":"user","content":"hello"}]}'
    messages = (
        '{"model":"claude-demo","max_tokens":256,"messages":[{"role":"user","content":"hello"}]}'
    )
    return f"""
aibridged is serving the demo providers at {base}/demo-openai and {base}/demo-anthropic.
The admin token was written to {token_file} on first boot.

  # The dashboard (providers, users, sessions, usage): sign in with that token
  {gateway_url.rstrip("/")}/

  export AIBRIDGED_TOKEN=$(cat {token_file})

  # curl: OpenAI Chat Completions, streaming
  curl -N {base}/demo-openai/v1/chat/completions \\
       -H "Authorization: Bearer $AIBRIDGED_TOKEN" -H 'Content-Type: application/json' \\
       -d '{chat}'

  # curl: Anthropic Messages
  curl {base}/demo-anthropic/v1/messages \\
       -H "X-Api-Key: $AIBRIDGED_TOKEN" -H 'anthropic-version: 2023-06-01' \\
       -H 'Content-Type: application/json' \\
       -d '{messages}'

  # Claude Code
  ANTHROPIC_BASE_URL={base}/demo-anthropic ANTHROPIC_AUTH_TOKEN=$AIBRIDGED_TOKEN claude

  # Codex: ~/.codex/config.toml, then run `codex` with AIBRIDGED_TOKEN exported
  model_provider = "aibridged"
  [model_providers.aibridged]
  name = "aibridged demo"
  base_url = "{base}/demo-openai/v1"
  env_key = "AIBRIDGED_TOKEN"
  wire_api = "responses"
"""
