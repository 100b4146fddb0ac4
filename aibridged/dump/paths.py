"""Where a dump goes: `<dir>/<provider>/<model>/<unix-ms>-<interception-id>` plus a suffix.

Passthrough requests go to `<dir>/<provider>/passthrough/<unix-ms>-<path>-<interception-id>`,
the path being the upstream URL path with "/" turned into "-". The interception id ties a dump to
the `interception.finished` (or `passthrough.finished`) log line of the same request.

The model name and the passthrough path come from the client. Every part of a path is passed
through `safe_part`, which leaves only characters that cannot name another directory: no "/",
no NUL or control characters, never "." or "..", never empty, and bounded in length. A dump can
therefore never land outside the dump directory, whatever the client sent.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

REQUEST_SUFFIX = ".req.txt"
RESPONSE_SUFFIX = ".resp.txt"
REQUEST_ERROR_SUFFIX = ".req_error.txt"
PASSTHROUGH_DIR = "passthrough"

# A file name may be 255 bytes: a part stays well below, leaving room for the time stamp, the
# id and the suffix.
MAX_PART_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+-]")
_HASH_CHARS = 8


def safe_part(text: str, *, empty: str = "unknown") -> str:
    """`text` as one path component that stays where it is put.

    "/" becomes "-" (as in Coder's dumps, so "openai/gpt-4o" reads as "openai-gpt-4o"); any
    other character outside `[A-Za-z0-9._:@+-]` becomes "_"; a leading "." becomes "_" (no
    "..", no hidden files). A part cut to MAX_PART_CHARS ends with a hash of the whole text, so
    two long names that differ late still go to different places.
    """
    part = _UNSAFE.sub("_", text.replace("/", "-"))
    if part.startswith("."):
        part = "_" + part[1:]
    if len(part) > MAX_PART_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        part = part[: MAX_PART_CHARS - _HASH_CHARS - 1] + "-" + digest[:_HASH_CHARS]
    return part or empty


def interception_stem(
    root: Path, provider: str, model: str, unix_ms: int, interception_id: uuid.UUID
) -> Path:
    """The dump files of an intercepted request, without their suffix."""
    folder = safe_part(model)
    if folder == PASSTHROUGH_DIR:  # a model of that name stays apart from the passthrough dumps
        folder = "_" + folder
    return root / safe_part(provider) / folder / f"{unix_ms}-{interception_id}"


def passthrough_stem(
    root: Path, provider: str, url_path: str, unix_ms: int, interception_id: uuid.UUID
) -> Path:
    """The dump files of a passthrough request, without their suffix."""
    name = safe_part(url_path.strip("/"), empty="root")
    return root / safe_part(provider) / PASSTHROUGH_DIR / f"{unix_ms}-{name}-{interception_id}"


def with_suffix(stem: Path, suffix: str) -> Path:
    # Not Path.with_suffix: the stem holds dots of its own ("gpt-4.1").
    return stem.parent / (stem.name + suffix)
