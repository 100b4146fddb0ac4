"""Where a Bedrock provider's AWS credentials come from: blocking botocore calls, run in a thread.

- **static keys** (`access_key` + `access_key_secret` settings): used as they are;
- otherwise **botocore's default chain** (environment, shared config and credentials files,
  SSO, web identity / IRSA, container and instance metadata), as the AWS SDKs resolve it;
- with `role_arn`, either of those is only the **base identity**: it calls STS `AssumeRole`
  with the provider's External ID, and the temporary credentials sign the requests.

Every source is a callable that blocks (files, metadata, STS over the network): the holder in
`credentials.py` calls it off the event loop and never on a request's path. botocore's errors
are translated here into `CredentialError`, whose message names no secret.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from aibridged.errors import CredentialError
from aibridged.providers.bedrock.settings import BedrockSettings
from aibridged.providers.bedrock.signing import AwsKeys

ROLE_SESSION_SECONDS = 3600
# STS is one short call: fail it fast, so a dead endpoint costs one refresh, not minutes.
_STS_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})


@dataclass(frozen=True, slots=True)
class Resolved:
    keys: AwsKeys
    # True: the credentials change over time (botocore refreshes them, or they expire), so the
    # holder asks again before they run out; False: they are fixed (static keys, environment).
    changing: bool


Source = Callable[[], Resolved]


def source_for(settings: BedrockSettings, session_name: str) -> Source:
    base: Source
    if settings.static_keys:
        keys = AwsKeys(settings.access_key, settings.access_key_secret)
        base = _Fixed(Resolved(keys, changing=False))
    else:
        base = DefaultChain(settings.region)
    if settings.role_arn:
        return AssumedRole(base, settings, session_name)
    return base


@dataclass(frozen=True, slots=True)
class _Fixed:
    resolved: Resolved

    def __call__(self) -> Resolved:
        return self.resolved


class DefaultChain:
    """botocore's default credential chain, looked up once; botocore refreshes what expires
    (SSO, IMDS, web identity) when asked for the current keys within its refresh window."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._credentials: Credentials | None = None
        self._lock = threading.Lock()  # an abandoned (timed out) call may still be running

    def __call__(self) -> Resolved:
        with self._lock:
            try:
                if self._credentials is None:
                    session = botocore.session.Session()
                    session.set_config_variable("region", self._region)
                    self._credentials = session.get_credentials()
                if self._credentials is None:
                    raise CredentialError(
                        "the AWS default credential chain found no credentials (environment,"
                        " shared files, SSO, web identity, container or instance metadata)"
                    )
                frozen = self._credentials.get_frozen_credentials()
            except (BotoCoreError, ClientError) as exc:
                raise CredentialError(f"the AWS default credential chain failed: {exc}") from exc
        keys = AwsKeys(frozen.access_key, frozen.secret_key, frozen.token)
        return Resolved(keys, changing=isinstance(self._credentials, RefreshableCredentials))


class AssumedRole:
    """Temporary credentials of `role_arn`, assumed with the base identity's keys."""

    def __init__(self, base: Source, settings: BedrockSettings, session_name: str) -> None:
        self._base = base
        self._settings = settings
        self._session_name = session_name
        self._session = botocore.session.Session()
        self._lock = threading.Lock()

    def __call__(self) -> Resolved:
        base = self._base().keys
        settings = self._settings
        with self._lock:
            try:
                sts = self._session.create_client(
                    "sts",
                    region_name=settings.region,
                    aws_access_key_id=base.access_key,
                    aws_secret_access_key=base.secret_key,
                    aws_session_token=base.token,
                    config=_STS_CONFIG,
                )
                answer = sts.assume_role(
                    RoleArn=settings.role_arn,
                    RoleSessionName=self._session_name,
                    ExternalId=settings.external_id,
                    DurationSeconds=ROLE_SESSION_SECONDS,
                )
                found = answer["Credentials"]
                keys = AwsKeys(
                    found["AccessKeyId"],
                    found["SecretAccessKey"],
                    found["SessionToken"],
                    found["Expiration"].timestamp(),
                )
            except (BotoCoreError, ClientError) as exc:
                raise CredentialError(f"assuming {settings.role_arn} failed: {exc}") from exc
            except (KeyError, TypeError, AttributeError) as exc:
                raise CredentialError(
                    f"STS answered AssumeRole without credentials: {exc}"
                ) from exc
        return Resolved(keys, changing=True)
