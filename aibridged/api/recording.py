"""Recording one interception: its start before the upstream call, its records beside the relay,
its end whatever ends it.

The data plane calls `open_recording` once the request is checked: it submits the start to the
group commit and returns at once. The upstream client awaits `Recording.committed` just before
the request's first byte goes out (a start that cannot be committed fails the request with 500
`failed to record interception`, and nothing is sent). The relay gets the recording as its
observer, and the finisher calls `end` exactly once, on every path (also before the commit is
done: the end then waits for it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from aibridged.errors import Rejected, StoreError
from aibridged.intercept.extract import Extractor, RequestFacts, extractor_for
from aibridged.intercept.routes import Api, UpstreamCall
from aibridged.intercept.sse import SSEEvent
from aibridged.intercept.wire import WireFormat
from aibridged.recorder import PendingStart, Recorder
from aibridged.records import Extracted, InterceptionEnd, InterceptionStart, PromptUsage

log = structlog.get_logger("aibridged.recorder")

MAX_PROMPT_CHARS = 64 * 1024  # of a recorded prompt; the rest is cut
_WIRE_NAMES = {WireFormat.OPENAI: "openai", WireFormat.ANTHROPIC: "anthropic"}


@dataclass(slots=True)
class Recording:
    """What is recorded of one interception; also the relay's observer."""

    recorder: Recorder
    pending: PendingStart
    extractor: Extractor | None = None
    failures: int = 0
    prompted: bool = False  # a non-empty prompt was recorded
    is_committed: bool = False  # `committed` returned

    @property
    def start(self) -> InterceptionStart:
        """The start (with its thread once committed)."""
        return self.pending.record

    async def wait_sent(self) -> None:
        """Until the start's commit is on its way (the request's work then overlaps it)."""
        await self.pending.wait_sent()

    async def committed(self) -> None:
        """Once the start is committed; Rejected(500) if it cannot be."""
        try:
            await self.pending.committed()
        except StoreError as exc:
            log.error("recorder.start_failed", interception_id=str(self.start.id), error=str(exc))
            raise Rejected(500, "failed to record interception", "record_failed") from exc
        self.is_committed = True

    def on_event(self, event: SSEEvent) -> None:
        try:
            if self.extractor is not None:
                self.extractor.on_event(event)
        except Exception:  # an extractor bug must never reach the relay
            self._failed()

    def on_body(self, body: bytes) -> None:
        try:
            if self.extractor is not None:
                self.extractor.on_body(body)
        except Exception:
            self._failed()

    def emit(self, record: Extracted) -> None:
        self.pending.add(record)

    def end(self, status: str, error: str, credential_hint: str, *, answered: bool) -> None:
        if self.pending.failed:
            return  # nothing was started, so nothing ends
        if self.prompted:
            self.recorder.count_prompt(self.start, answered=answered)
        try:
            if self.extractor is not None:
                self.extractor.finish()
        except Exception:
            self._failed()
        self.pending.end(
            InterceptionEnd(
                id=self.start.id,
                started_at=self.start.started_at,
                ended_at=datetime.now(UTC),
                credential_hint=credential_hint,
                status=status,
                error=error,
            )
        )

    def _failed(self) -> None:
        self.failures += 1
        if self.failures == 1:
            log.exception("recorder.extraction_failed", interception_id=str(self.start.id))


def open_recording(
    recorder: Recorder,
    *,
    interception_id: uuid.UUID,
    api: Api,
    stream: bool,
    facts: RequestFacts,
    fields: dict[str, Any],
) -> Recording:
    """Submit the start (its thread found from the tool call the request answers) and hand
    over the prompt; never waits."""
    start = InterceptionStart(
        id=interception_id,
        thread_parent_id=None,
        thread_root_id=None,
        started_at=datetime.now(UTC),
        correlating_call_id=facts.correlating_call_id,
        **fields,
    )
    recording = Recording(recorder, recorder.submit(start))
    recording.extractor = extractor_for(api, stream=stream, emit=recording.emit)
    if facts.prompt:
        # Bounded: a 30 MiB prompt would cost the database and the event loop (its encoding
        # runs in the writer, on this thread) more than it tells anyone.
        recording.pending.add(PromptUsage(prompt=facts.prompt[:MAX_PROMPT_CHARS]))
        recording.prompted = True
    return recording


def start_fields(
    call: UpstreamCall,
    *,
    initiator_id: uuid.UUID,
    api_key_id: str,
    provider_name: str,
    wire_format: WireFormat,
    model: str,
    client: str,
    client_session_id: str | None,
    credential_kind: str,
    credential_hint: str,
) -> dict[str, Any]:
    user_agent = next((v for n, v in call.headers if n == b"user-agent"), b"")
    return {
        "initiator_id": initiator_id,
        "api_key_id": api_key_id,
        "provider": _WIRE_NAMES[wire_format],
        "provider_name": provider_name,
        "model": model,
        "client": client,
        "client_session_id": client_session_id,
        "user_agent": user_agent.decode("latin-1")[:512],
        "credential_kind": credential_kind,
        "credential_hint": credential_hint,
    }
