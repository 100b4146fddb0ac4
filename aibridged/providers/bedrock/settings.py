"""A Bedrock provider's settings, read once and checked: region, protocol, models, credentials.

A provider whose settings cannot work (one half of a static key pair, no region to sign for, a
role ARN that is not one) is put in status "error" when it is built, with the reason; nothing is
found out on the first request.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Coder's defaults (its legacy CODER_AIBRIDGE_BEDROCK_* variables), cross-region profiles.
DEFAULT_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
DEFAULT_SMALL_FAST_MODEL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"

# The region is in the endpoint's host: bedrock-runtime.us-east-1.amazonaws.com,
# bedrock-runtime-fips.us-east-1.amazonaws.com, bedrock-mantle.eu-west-1.api.aws.
_HOST_REGION = re.compile(r"bedrock-(?:runtime|mantle)(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")


class Protocol(enum.StrEnum):
    INVOKE_MODEL = "invoke-model"  # bedrock-runtime's InvokeModel: the body is translated
    MANTLE = "mantle"  # bedrock-mantle's native Messages API: the body goes as it is

    @property
    def signing_name(self) -> str:
        """The service name in the SigV4 scope (botocore's `signingName` for bedrock-runtime
        is `bedrock`; the Mantle endpoint signs as `bedrock-mantle`)."""
        return "bedrock" if self is Protocol.INVOKE_MODEL else "bedrock-mantle"


@dataclass(frozen=True, slots=True)
class BedrockSettings:
    region: str
    protocol: Protocol
    model: str
    small_fast_model: str
    role_arn: str = ""
    external_id: str = ""  # sent with AssumeRole; derived from the provider's id
    access_key: str = field(default="", repr=False)
    access_key_secret: str = field(default="", repr=False)

    @property
    def static_keys(self) -> bool:
        return bool(self.access_key)


def default_base_url(settings: Mapping[str, Any]) -> str:
    """The endpoint of the provider's protocol in its region ("" without a region)."""
    region = settings.get("region")
    if not region:
        return ""
    if settings.get("protocol") == Protocol.MANTLE:
        return f"https://bedrock-mantle.{region}.api.aws/anthropic"
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def external_id_for(provider_id: uuid.UUID) -> str:
    """The External ID this gateway sends when it assumes a provider's role.

    Generated per provider and never settable, as in Coder's AI Gateway: it is the provider's own
    id, so it stays the same across renames and reloads, and a new one comes only with a new
    provider. Put it in the role's trust policy (`sts:ExternalId`).
    """
    return f"aibridged-{provider_id}"


def bedrock_settings(
    provider_id: uuid.UUID, base_url: str, settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> BedrockSettings:
    """The provider's settings; ValueError saying what to fix when they cannot work."""
    access_key = secrets.get("access_key", "")
    access_key_secret = secrets.get("access_key_secret", "")
    if bool(access_key) != bool(access_key_secret):
        raise ValueError(
            "bedrock static credentials need both access_key and access_key_secret (or neither,"
            " for the AWS default credential chain)"
        )
    region = str(settings.get("region") or _region_of(base_url))
    if not region:
        raise ValueError(
            "bedrock needs a region: set the region setting, or a base URL on"
            " bedrock-runtime.<region>.amazonaws.com"
        )
    role_arn = str(settings.get("role_arn") or "")
    if role_arn and _ROLE_ARN.fullmatch(role_arn) is None:
        raise ValueError("role_arn is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    model = str(settings.get("model") or DEFAULT_MODEL)
    small_fast_model = str(settings.get("small_fast_model") or DEFAULT_SMALL_FAST_MODEL)
    for name, value in (("model", model), ("small_fast_model", small_fast_model)):
        if value in (".", "..") or not value.isprintable() or " " in value:
            raise ValueError(f"{name} {value!r} is not a Bedrock model id or inference profile ARN")
    return BedrockSettings(
        region=region,
        protocol=Protocol(settings.get("protocol") or Protocol.INVOKE_MODEL),
        model=model,
        small_fast_model=small_fast_model,
        role_arn=role_arn,
        external_id=external_id_for(provider_id) if role_arn else "",
        access_key=access_key,
        access_key_secret=access_key_secret,
    )


def _region_of(base_url: str) -> str:
    match = _HOST_REGION.match(urlsplit(base_url).hostname or "")
    return match[1] if match else ""
