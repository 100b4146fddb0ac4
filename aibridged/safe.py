"""Client-chosen strings made safe for metric labels and log lines.

A model name, a session id or a User-Agent comes from the client: it may be megabytes long or hold
lone surrogates (`"\\ud800"` is valid JSON), which no UTF-8 writer accepts. Every such string is
passed through `bounded_text` before it becomes a label value or a log field.
"""

from __future__ import annotations

MAX_TEXT_CHARS = 256


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to `limit` characters (marked with "…") and encodable as UTF-8."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def mask_secret(secret: str) -> str:
    """A hint that tells keys apart without revealing them (`sk-a...efgh`), as Coder's
    MaskSecret: 4 characters at each end from 20 characters up, 2 from 10, 1 from 5, else none."""
    n = len(secret)
    shown = 4 if n >= 20 else 2 if n >= 10 else 1 if n >= 5 else 0
    return f"{secret[:shown]}...{secret[-shown:]}" if shown else "..."
