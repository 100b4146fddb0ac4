"""AWS Bedrock providers: Anthropic's Messages API for the client, SigV4-signed AWS upstream.

Clients talk to a `bedrock` provider exactly as to an `anthropic` one (same routes, same
answers, same records). Upstream, per the provider's `protocol`:

- `invoke-model` (the default): bedrock-runtime's InvokeModel. The body is translated
  (`body.py`) and posted to `/model/<model id>/invoke`, or `/invoke-with-response-stream` when
  the client asked for a stream; that answer's AWS event stream is transcoded back into
  Anthropic SSE (`stream.py`). Blocking answers are Messages JSON already and go as they are.
- `mantle`: bedrock-mantle's native Messages API at `<base>/v1/messages`. The body and the SSE
  answer go as they are; only the signature is added.

There are no API keys (and so no key failover): every attempt is signed with the provider's AWS
credentials of the moment (`credentials.py`). AWS errors reach the client in Anthropic's
error shapes (`errors.py`). BYOK callers are served with the provider's credentials too:
Bedrock has no per-user key to forward, and the client's own `Authorization`/`X-Api-Key`
never goes to AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aibridged.errors import UpstreamStatusError
from aibridged.intercept.headers import CLIENT_AUTH, IDENTITY_ENCODING
from aibridged.intercept.relay import StreamTranscoder
from aibridged.intercept.routes import Api, UpstreamCall, encode_path
from aibridged.intercept.upstream import UpstreamRequest
from aibridged.intercept.wire import WireFormat
from aibridged.providers.bedrock.body import beta_flags, invoke_model_request, load_json, map_model
from aibridged.providers.bedrock.errors import anthropic_error, shape_error
from aibridged.providers.bedrock.settings import BedrockSettings, Protocol, bedrock_settings
from aibridged.providers.bedrock.signing import AwsKeys, signed_headers
from aibridged.providers.bedrock.stream import EVENT_STREAM_MEDIA_TYPE, EventStreamTranscoder
from aibridged.providers.family import Credential, Passthrough, ProviderFamily

if TYPE_CHECKING:
    from aibridged.providers.pool import Provider

_JSON = b"application/json"
_WRITE = frozenset({"POST"})
# Headers of the client's that never go to AWS: its credentials, and what the gateway sets
# itself (the content type it signed, the AWS signing headers a client could try to smuggle).
_NEVER_FORWARDED = CLIENT_AUTH | {b"content-type", b"accept"}
# InvokeModel reads no Anthropic header: the version and betas are in the translated body.
_ANTHROPIC_HEADER = b"anthropic-"


@dataclass(frozen=True, slots=True)
class AwsCredential(Credential):
    """A Bedrock attempt's credential: the keys to sign with (None: none are available)."""

    keys: AwsKeys | None = None


class BedrockFamily(ProviderFamily):
    wire_format = WireFormat.ANTHROPIC
    intercepted = {"/v1/messages": Api.MESSAGES}
    # Mantle serves these natively; InvokeModel has no such routes (answered 404 below).
    passthrough = (
        Passthrough("/v1/models"),
        Passthrough("/v1/models/"),
        Passthrough("/v1/messages/count_tokens", _WRITE),
    )

    def settings_problem(
        self,
        provider_id: uuid.UUID,
        base_url: str,
        settings: Mapping[str, Any],
        secrets: Mapping[str, str],
    ) -> str:
        try:
            bedrock_settings(provider_id, base_url, settings, secrets)
        except ValueError as exc:
            return str(exc)
        return ""

    def recorded_model(self, provider: Provider, requested: str) -> str:
        """InvokeModel calls the mapped model: that is what is recorded, as in Coder's gateway
        (a Mantle request names its model itself)."""
        settings = settings_of(provider)
        if settings.protocol is Protocol.MANTLE:
            return requested
        return map_model(requested, settings)

    def credential(self, provider: Provider, call: UpstreamCall) -> Credential:
        keys = current_keys(provider)
        hint = keys.hint if keys is not None else ""
        return AwsCredential("centralized", None, hint, keys=keys)

    def build_request(
        self, provider: Provider, call: UpstreamCall, credential: Credential
    ) -> UpstreamRequest:
        settings = settings_of(provider)
        keys = credential.keys if isinstance(credential, AwsCredential) else None
        if keys is None:
            raise _refused(
                503,
                "api_error",
                f'the AWS credentials of provider "{provider.name}" are not available;'
                " the gateway's log says why",
            )
        if settings.protocol is Protocol.MANTLE:
            return self._mantle(provider, call, settings, keys)
        if not call.route.intercepted:
            raise _refused(
                404,
                "not_found_error",
                f"{call.route.pattern} is not available through Bedrock InvokeModel"
                ' (a provider with protocol "mantle" serves it)',
            )
        return self._invoke_model(provider, call, settings, keys)

    def transcoder(self, provider: Provider, call: UpstreamCall) -> StreamTranscoder | None:
        if (
            call.route.api is Api.MESSAGES
            and settings_of(provider).protocol is Protocol.INVOKE_MODEL
        ):
            return EventStreamTranscoder()
        return None

    def _invoke_model(
        self, provider: Provider, call: UpstreamCall, settings: BedrockSettings, keys: AwsKeys
    ) -> UpstreamRequest:
        betas = beta_flags(value for name, value in call.headers if name == b"anthropic-beta")
        translated = invoke_model_request(load_json(call.body), betas, settings)
        action = "invoke-with-response-stream" if translated.stream else "invoke"
        # An inference profile ARN's "/" is escaped: the model id is one path segment.
        target = f"/model/{quote(translated.model_id, safe=':')}/{action}"
        accept = EVENT_STREAM_MEDIA_TYPE.encode() if translated.stream else _JSON
        headers = [(k, v) for k, v in _forwarded(call) if not k.startswith(_ANTHROPIC_HEADER)]
        headers += [(b"content-type", _JSON), (b"accept", accept)]
        return self._signed(provider, settings, keys, "POST", target, headers, _JSON,
                            translated.body)  # fmt: skip

    def _mantle(
        self, provider: Provider, call: UpstreamCall, settings: BedrockSettings, keys: AwsKeys
    ) -> UpstreamRequest:
        query = call.query.decode("latin-1")
        target = encode_path(call.route.upstream_path) + ("?" + query if query else "")
        content_type = next((v for k, v in call.headers if k == b"content-type"), None)
        headers = _forwarded(call)
        if content_type is not None:
            headers.append((b"content-type", content_type))
        accept = next((v for k, v in call.headers if k == b"accept"), None)
        if accept is not None:
            headers.append((b"accept", accept))
        return self._signed(provider, settings, keys, call.method, target, headers,
                            content_type, call.body)  # fmt: skip

    @staticmethod
    def _signed(
        provider: Provider,
        settings: BedrockSettings,
        keys: AwsKeys,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        content_type: bytes | None,
        body: bytes,
    ) -> UpstreamRequest:
        assert provider.origin is not None  # providers in status "error" are never served
        headers += signed_headers(
            keys,
            service=settings.protocol.signing_name,
            region=settings.region,
            method=method,
            origin=provider.origin,
            target=target,
            content_type=content_type,
            body=body,
        )
        headers.append(IDENTITY_ENCODING)
        return UpstreamRequest(method, provider.origin, target, headers, body, shape_error)


def settings_of(provider: Provider) -> BedrockSettings:
    """The provider's Bedrock settings (checked when it was built: cannot fail here)."""
    return bedrock_settings(provider.id, provider.base_url, provider.settings, provider.secrets)


def current_keys(provider: Provider) -> AwsKeys | None:
    """The keys to sign with now (None: there are none; the holder has logged why)."""
    holder = provider.aws_credentials
    if holder is not None:
        return holder.current()
    settings = settings_of(provider)
    if settings.static_keys and not settings.role_arn:  # no lookup needed: sign with them
        return AwsKeys(settings.access_key, settings.access_key_secret)
    return None  # a snapshot built without the credential cache (tools, tests)


def _forwarded(call: UpstreamCall) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, value in call.headers
        if name not in _NEVER_FORWARDED and not name.startswith((b"x-amz-", b"x-amzn-"))
    ]


def _refused(status: int, error_type: str, message: str) -> UpstreamStatusError:
    """An answer made before any upstream call, in Anthropic's shape."""
    headers = [(b"content-type", _JSON)]
    return UpstreamStatusError(status, anthropic_error(error_type, message), headers, message)


BEDROCK = BedrockFamily()
