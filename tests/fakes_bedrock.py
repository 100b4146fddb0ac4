"""A fake AWS Bedrock (runtime and Mantle) and a fake STS, on 127.0.0.1, for the gateway's tests.

`FakeBedrock` is a `FakeUpstream` (so `fail_next`, `fragment_next`, ... script it) that answers
like Bedrock:

    POST /model/<model id>/invoke                       InvokeModel: Messages JSON
    POST /model/<model id>/invoke-with-response-stream  an application/vnd.amazon.eventstream
    POST /anthropic/v1/messages                         Mantle: the native Messages API (SSE)

Every request must carry a SigV4 signature that botocore's own signer, recomputing it from the
known secret, agrees with (service `bedrock` for the runtime, `bedrock-mantle` for Mantle, the
configured region); anything else gets Bedrock's 403 (`x-amzn-ErrorType`, `{"message": ...}`).
InvokeModel bodies are checked as Bedrock checks them: `anthropic_version` required, no `model`
or `stream`, no field Bedrock refuses, beta flags from its allow-list only (a 400
`ValidationException` otherwise). What the demo model answers, with the model id as its model,
is the reply; each stream event goes in a `chunk` event, base64 JSON as Bedrock sends it.

The event-stream frames are encoded here (prelude, headers, payload, CRC32s): encoding in a
test fake is fine; the gateway decodes them with botocore.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from aibridged.demo import DemoResponse, RecordedRequest
from aibridged.demo import anthropic_format as fmt
from aibridged.demo.asgi import Receive, Scope, Send, answer_lifespan, read_request, send_start
from aibridged.demo.reply import dump_json
from aibridged.providers.bedrock.body import SUPPORTED_BETAS
from tests.fakes import FakeUpstream

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake-secret-key/0123456789abcdefghijklmnop"
REGION = "us-east-1"
_JSON = (b"content-type", b"application/json")
_EVENT_STREAM = (b"content-type", b"application/vnd.amazon.eventstream")
_METRICS = {
    "inputTokenCount": 1,
    "outputTokenCount": 1,
    "invocationLatency": 5,
    "firstByteLatency": 2,
}
_REFUSED_FIELDS = ("model", "stream", "metadata", "service_tier", "container", "inference_geo")


# --- event-stream framing -----------------------------------------------------------------------


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    encoded = b""
    for name, value in headers.items():
        raw = value.encode()
        encoded += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_frame(event: Mapping[str, Any]) -> bytes:
    inner = base64.b64encode(json.dumps(event).encode()).decode()
    payload = json.dumps({"bytes": inner, "p": "abcdefghij"}).encode()  # Bedrock pads too
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, payload)


def exception_frame(name: str, message: str) -> bytes:
    headers = {
        ":exception-type": name,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


def bedrock_error(status: int, name: str, message: str) -> DemoResponse:
    error_type = (b"x-amzn-errortype", f"{name}:http://internal.amazon.com/coral/".encode())
    body = json.dumps({"message": message}).encode()
    return DemoResponse(status=status, headers=[_JSON, error_type], body=body)


# --- SigV4 --------------------------------------------------------------------------------------


@dataclass
class Keys:
    """Access key → (secret, session token) the fakes accept; STS adds what it issues."""

    known: dict[str, tuple[str, str | None]] = field(
        default_factory=lambda: {ACCESS_KEY: (SECRET_KEY, None)}
    )


def check_signature(request: RecordedRequest, keys: Keys, service: str, region: str) -> str:
    """Why `request`'s signature is not valid for `service` in `region` ("" when it is)."""
    auth = request.header("authorization") or ""
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "MissingAuthenticationTokenException:Missing Authentication Token"
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(",")
    )
    access_key, date, scope_region, scope_service, _ = fields["Credential"].split("/")
    if access_key not in keys.known:
        return "UnrecognizedClientException:The security token included in the request is invalid."
    secret, token = keys.known[access_key]
    if (scope_region, scope_service) != (region, service):
        return f"InvalidSignatureException:Credential should be scoped to {region}/{service}"
    if token is not None and request.header("x-amz-security-token") != token:
        return "UnrecognizedClientException:The security token included in the request is invalid."
    stamp = request.header("x-amz-date") or ""
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed or not stamp.startswith(date):
        return "IncompleteSignatureException:host and x-amz-date must be signed"
    query = f"?{request.query}" if request.query else ""
    aws = AWSRequest(
        method=request.method,
        url=f"http://{request.header('host')}{request.raw_path}{query}",
        data=request.body,
        headers={name: request.header(name) or "" for name in signed},
    )
    aws.context["timestamp"] = stamp
    signer = SigV4Auth(ReadOnlyCredentials(access_key, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return (
            "InvalidSignatureException:The request signature we calculated does not match the"
            " signature you provided. Check your AWS Secret Access Key and signing method."
        )
    return ""


# --- Bedrock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One request the fake accepted."""

    api: str  # "invoke", "invoke-with-response-stream", "mantle"
    model_id: str
    body: dict[str, Any]
    headers: list[tuple[str, str]]


class FakeBedrock(FakeUpstream):
    def __init__(self, *, keys: Keys | None = None, region: str = REGION, **kw: Any) -> None:
        super().__init__(**kw)
        self.keys = keys or Keys()
        self.region = region
        self.invocations: list[Invocation] = []
        self.refusals: list[str] = []  # why each refused request was refused
        self._exceptions: deque[tuple[int, str, str]] = deque()

    def exception_next(self, after_events: int, name: str, message: str) -> None:
        """The next stream sends `after_events` chunks, then an exception message."""
        self._exceptions.append((after_events, name, message))

    def respond(self, request: RecordedRequest, *, endless: bool = False) -> DemoResponse:
        mantle = request.path.startswith("/anthropic/")
        problem = check_signature(
            request, self.keys, "bedrock-mantle" if mantle else "bedrock", self.region
        )
        if problem:
            name, _, message = problem.partition(":")
            self.refusals.append(name)
            return bedrock_error(403, name, message)
        if mantle:
            native = replace(request, path=request.path.removeprefix("/anthropic"))
            if native.path == "/v1/messages":
                self._accepted("mantle", "", native)
            return super().respond(native, endless=endless)
        parts = request.raw_path.split("/")
        if len(parts) != 4 or parts[1] != "model" or request.method != "POST":
            return bedrock_error(404, "UnknownOperationException", "Unknown operation")
        model_id, action = unquote(parts[2]), parts[3]
        if action not in ("invoke", "invoke-with-response-stream"):
            return bedrock_error(404, "UnknownOperationException", "Unknown operation")
        body = json.loads(request.body)
        refused = _validation_problem(body)
        if refused:
            self.refusals.append("ValidationException")
            return bedrock_error(400, "ValidationException", refused)
        self._accepted(action, model_id, request, body)
        return self._answer(model_id, body, stream=action != "invoke")

    def _accepted(
        self, api: str, model_id: str, request: RecordedRequest, body: Any = None
    ) -> None:
        parsed = json.loads(request.body) if body is None else body
        self.invocations.append(Invocation(api, model_id, parsed, request.headers))

    def _answer(self, model_id: str, body: dict[str, Any], *, stream: bool) -> DemoResponse:
        request = {**body, "model": model_id.split(".")[-1]}  # Bedrock names the model so too
        reply = fmt.messages_reply(
            request, seq=len(self.invocations), stream_chunks=self.stream_chunks
        )
        request_id = (b"x-amzn-requestid", str(uuid.uuid4()).encode())
        if not stream:
            message = dump_json(fmt.message_object(reply, request))
            return DemoResponse(status=200, headers=[_JSON, request_id], body=message)
        events = _frames(fmt.messages_stream(reply, request), self._exceptions)
        return DemoResponse(status=200, headers=[_EVENT_STREAM, request_id], events=events)


def _validation_problem(body: dict[str, Any]) -> str:
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        return "anthropic_version: Field required"
    extra = [name for name in _REFUSED_FIELDS if name in body]
    if extra:
        return f"extraneous key [{extra[0]}] is not permitted"
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or any(flag not in SUPPORTED_BETAS for flag in betas):
        return "invalid beta flag"
    return ""


def _frames(sse: Iterator[bytes], exceptions: deque[tuple[int, str, str]]) -> Iterator[bytes]:
    """Each SSE event of the demo's Messages stream as a chunk frame (pings are SSE-only)."""
    cut = exceptions.popleft() if exceptions else None
    sent = 0
    for raw in sse:
        data = next(line for line in raw.split(b"\n") if line.startswith(b"data: "))
        event = json.loads(data[6:])
        if event["type"] == "ping":
            continue
        if cut is not None and sent == cut[0]:
            yield exception_frame(cut[1], cut[2])
            return
        if event["type"] == "message_stop":
            event["amazon-bedrock-invocationMetrics"] = _METRICS
        yield chunk_frame(event)
        sent += 1


# --- STS ----------------------------------------------------------------------------------------


@dataclass
class AssumeRoleCall:
    role_arn: str
    session_name: str
    external_id: str
    base_access_key: str


class FakeSts:
    """STS AssumeRole (query protocol, XML answers), signed with a key `keys` knows; what it
    issues is added to `keys`, so the fake Bedrock accepts it. `lifetime_s` per credential;
    `external_id` None takes any (the calls record which was sent), else only that one."""

    def __init__(
        self, keys: Keys, *, external_id: str | None = None, lifetime_s: float = 3600.0
    ) -> None:
        self.keys = keys
        self.external_id = external_id
        self.lifetime_s = lifetime_s
        self.calls: list[AssumeRoleCall] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        request = await read_request(scope, receive)
        if request is None:
            return
        status, body = self._answer(request)
        await send_start(send, status, [(b"content-type", b"text/xml")])
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _answer(self, request: RecordedRequest) -> tuple[int, bytes]:
        problem = check_signature(request, self.keys, "sts", REGION)
        if problem:
            return 403, _sts_error("InvalidClientTokenId", problem.partition(":")[2])
        form = dict(parse_qsl(request.body.decode()))
        auth = request.header("authorization") or ""
        base = auth.split("Credential=", 1)[1].split("/", 1)[0]
        self.calls.append(
            AssumeRoleCall(
                form.get("RoleArn", ""),
                form.get("RoleSessionName", ""),
                form.get("ExternalId", ""),
                base,
            )
        )
        wanted = self.external_id
        if form.get("Action") != "AssumeRole" or wanted not in (None, form.get("ExternalId")):
            return 403, _sts_error("AccessDenied", "not authorized to perform sts:AssumeRole")
        access_key = f"ASIA{uuid.uuid4().hex[:16].upper()}"
        secret, token = uuid.uuid4().hex + uuid.uuid4().hex, "token-" + uuid.uuid4().hex
        self.keys.known[access_key] = (secret, token)
        expires = datetime.fromtimestamp(time.time() + self.lifetime_s, UTC)
        return 200, _sts_credentials(access_key, secret, token, expires)


def _sts_credentials(access_key: str, secret: str, token: str, expires: datetime) -> bytes:
    stamp = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
        f"<Credentials><AccessKeyId>{access_key}</AccessKeyId>"
        f"<SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken>"
        f"<Expiration>{stamp}</Expiration></Credentials>"
        "<AssumedRoleUser><AssumedRoleId>AROAFAKE:aibridged</AssumedRoleId>"
        "<Arn>arn:aws:sts::123456789012:assumed-role/bedrock/aibridged</Arn></AssumedRoleUser>"
        "</AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata>"
        "</AssumeRoleResponse>"
    ).encode()


def _sts_error(code: str, message: str) -> bytes:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>fake</RequestId></ErrorResponse>"
    ).encode()


_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS configuration but what the test sets: no variables, no files, no metadata."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
