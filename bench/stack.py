"""The processes under test and the API surfaces both paths are driven through.

``running_stack`` starts the fake upstream (CPU 0) and ``aibridged serve`` (CPU 1) with a config
of its own, waits for ``/readyz``, and stops both by PID on the way out, also on errors. ``Api``
describes one request shape (path, headers, body, auth) as a client sends it directly to the
upstream and through the gateway.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench import payloads
from bench.httpclient import Timed, build_request
from bench.loadgen import LoadSpec
from bench.procs import (
    Proc,
    free_port,
    pinned,
    stop_postmaster,
    wait_http_ok,
)

HOST = "127.0.0.1"
GATEWAY_CPU = 1
CLIENT_CPU = 0  # upstream, load generator, measuring client, py-spy
PREFIX = "/api/v2/aibridge"
OPENAI_KEY = "sk-bench-upstream-openai-0000000000"
ANTHROPIC_KEY = "sk-ant-bench-upstream-0000000000"
REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"


@dataclass(frozen=True, slots=True)
class Api:
    """One API surface as a client sees it, on both paths."""

    name: str
    direct_path: str
    gateway_path: str
    headers: tuple[tuple[str, str], ...]  # besides auth and content-type
    body: bytes
    direct_auth: tuple[str, str]
    stream: bool

    def spec(self, port: int, *, gateway: bool, token: str) -> LoadSpec:
        auth = self.direct_auth
        if gateway:  # the gateway takes its own token in the header the client uses
            auth = (auth[0], f"Bearer {token}" if auth[0] == "authorization" else token)
        return LoadSpec(
            host=HOST,
            port=port,
            path=self.gateway_path if gateway else self.direct_path,
            headers=(("content-type", "application/json"), auth, *self.headers),
            body=self.body,
        )

    def raw(self, port: int, *, gateway: bool, token: str) -> bytes:
        spec = self.spec(port, gateway=gateway, token=token)
        return build_request("POST", f"{HOST}:{port}", spec.path, spec.headers, spec.body)


def api_surfaces() -> dict[str, Api]:
    chat = Api(
        name="chat",
        direct_path="/v1/chat/completions",
        gateway_path=f"{PREFIX}/openai/v1/chat/completions",
        headers=payloads.OPENAI_HEADERS,
        body=payloads.openai_chat(stream=False),
        direct_auth=("authorization", f"Bearer {OPENAI_KEY}"),
        stream=False,
    )
    messages = Api(
        name="messages",
        direct_path="/v1/messages",
        gateway_path=f"{PREFIX}/anthropic/v1/messages",
        headers=payloads.ANTHROPIC_HEADERS,
        body=payloads.anthropic_messages(stream=False),
        direct_auth=("x-api-key", ANTHROPIC_KEY),
        stream=False,
    )
    messages_stream = replace(
        messages, name="messages_stream", body=payloads.anthropic_messages(stream=True), stream=True
    )
    return {api.name: api for api in (chat, messages, messages_stream)}


def response_ok(timed: Timed, *, stream: bool) -> bool:
    """200 and a complete body: a JSON object, or a stream ending with message_stop."""
    if timed.status != 200:
        return False
    body = timed.body.rstrip()
    if stream:
        return body.endswith(b"}") and b"event: message_stop" in body[-300:]
    return body.startswith(b"{") and body.endswith(b"}")


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def relative_cmd(cmd: Sequence[str]) -> list[str]:
    return [relative(Path(c)) if c.startswith(str(REPO)) else c for c in cmd]


# --- processes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Stack:
    upstream: Proc
    upstream_port: int
    gateway: Proc
    gateway_port: int
    token: str
    config_text: str
    startup_s: float


def gateway_config(state_dir: Path, port: int, upstream_port: int, log_level: str) -> str:
    return f"""\
[server]
http_address = "{HOST}:{port}"
state_dir = "{state_dir}"

[prometheus]
enabled = false

[log]
level = "{log_level}"

[[providers]]
type = "openai-compat"
name = "openai"
base_url = "http://{HOST}:{upstream_port}/v1"
key_env = "BENCH_OPENAI_KEY"

[[providers]]
type = "anthropic"
name = "anthropic"
base_url = "http://{HOST}:{upstream_port}"
key_env = "BENCH_ANTHROPIC_KEY"
"""


@contextlib.contextmanager
def running_stack(work: Path, *, upstream_kind: str, log_level: str) -> Iterator[Stack]:
    """The upstream (CPU 0) and the gateway (CPU 1), both stopped by PID on the way out."""
    procs: list[Proc] = []
    state_dir = work / "state"
    try:
        upstream_port = free_port()
        upstream_cmd = [sys.executable, "-m", "bench.upstream", "--kind", upstream_kind]
        upstream = Proc(
            "upstream",
            pinned([*upstream_cmd, "--port", str(upstream_port)], CLIENT_CPU),
            log_path=work / "upstream.log",
            stdout_pipe=True,
            cwd=REPO,
        )
        procs.append(upstream)
        line = upstream.read_line(30)
        if not line.startswith("listening "):
            raise RuntimeError(f"upstream said {line!r}:\n{upstream.log_tail()}")

        gateway_port = free_port()
        config_text = gateway_config(state_dir, gateway_port, upstream_port, log_level)
        config_path = work / "aibridged.toml"
        config_path.write_text(config_text)
        aibridged = str(Path(sys.executable).with_name("aibridged"))
        serve = [aibridged, "serve", "--config", str(config_path), "--state-dir", str(state_dir)]
        env = {**os.environ, "BENCH_OPENAI_KEY": OPENAI_KEY, "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY}
        started = time.monotonic()
        gateway = Proc(
            "gateway", pinned(serve, GATEWAY_CPU), env=env, log_path=work / "gateway.log"
        )
        procs.append(gateway)
        wait_http_ok(f"http://{HOST}:{gateway_port}/readyz", timeout_s=120, proc=gateway)
        startup_s = time.monotonic() - started
        token = (state_dir / "admin.token").read_text().strip()
        yield Stack(upstream, upstream_port, gateway, gateway_port, token, config_text, startup_s)
    finally:
        for proc in reversed(procs):
            code = proc.stop(timeout_s=40)
            if proc.name == "gateway" and code != 0:
                print(
                    f"warning: the gateway exited with {code}:\n{proc.log_tail()}", file=sys.stderr
                )
        if stop_postmaster(state_dir / "postgres"):
            print("warning: the embedded PostgreSQL was still running; stopped it", file=sys.stderr)
