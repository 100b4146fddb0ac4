"""The two upstream wire formats. Every provider type speaks one of them."""

from __future__ import annotations

import enum


class WireFormat(enum.StrEnum):
    OPENAI = "openai"  # Chat Completions + Responses
    ANTHROPIC = "anthropic"  # Messages
