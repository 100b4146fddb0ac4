"""The processes under test and the API surfaces every path is driven through.

``running_stack`` starts the bench's PostgreSQL (``bench.database``, CPU 0 by default), the fake
upstream (CPU 0), a local OTLP collector (``bench.otlp_sink``, CPU 0), three ``aibridged serve``
processes (CPU 1) on that database: one recording (the default, ``ai_gateway.recording = true``),
one with recording off, one recording with tracing on (exporting to the local collector), and,
when asked for, a fourth of another commit's code (``baseline``, the defaults). Unless told not
to, it also starts LiteLLM's proxy (also CPU 1, see ``bench.litellm_proxy``); it waits for each
to answer and stops them all by PID on the way out, also on errors. ``Api`` describes one request
shape (path, headers, body, auth) as a client sends it on each path ("via"): ``direct`` to the
upstream, through the ``gateway`` (recording on, tracing off), ``gateway_norec`` (recording off),
``gateway_trace`` (tracing on), ``gateway_base`` (the baseline's code) or ``litellm``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench import client_headers, litellm_proxy, otlp_sink, payloads
from bench.database import Database, running_database
from bench.httpclient import Timed, build_request
from bench.litellm_proxy import LiteLLM
from bench.loadgen import LoadSpec
from bench.paced_upstream import Pacing
from bench.procs import (
    Proc,
    Sampled,
    free_port,
    pinned,
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
NOFILE = 65_536  # open-file limit asked for every process the bench starts (and itself)
VIAS = ("direct", "gateway", "gateway_norec", "gateway_trace", "gateway_base", "litellm")
# recording on; recording off; tracing on; the baseline's code
GATEWAYS = ("gateway", "gateway_norec", "gateway_trace", "gateway_base")
PACED_PROVIDER = "anthropic-paced"  # the gateway's provider in front of bench.paced_upstream
STEADY_PROVIDER = "anthropic-steady"  # ... and in front of the steady stream
# The steady stream: its events 20 ms apart, as a provider generating tokens sends them (so each
# arrives on its own, however the requests were scheduled), 8 text deltas (~0.2 s a stream).
STEADY = Pacing(interval_s=0.02, deltas=8)
DELAYED_PROVIDER = "openai-delayed"  # ... and in front of the delayed Chat Completions answer
# The delayed answer: a blocking request answered 20 ms after it arrived, each on its own (a
# provider works on many requests at once; bench.fast_upstream serves one at a time).
DELAYED_S = 0.02


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

    def path(self, via: str) -> str:
        # LiteLLM serves the providers' own paths.
        return self.gateway_path if via in GATEWAYS else self.direct_path

    def spec(self, port: int, *, via: str, token: str) -> LoadSpec:
        auth = self.direct_auth
        if via != "direct":  # a proxy takes its own key in the header the client uses
            auth = (auth[0], f"Bearer {token}" if auth[0] == "authorization" else token)
        return LoadSpec(
            host=HOST,
            port=port,
            path=self.path(via),
            headers=(("content-type", "application/json"), auth, *self.headers),
            body=self.body,
        )

    def raw(self, port: int, *, via: str, token: str) -> bytes:
        spec = self.spec(port, via=via, token=token)
        return build_request("POST", f"{HOST}:{port}", spec.path, spec.headers, spec.body)


def api_surfaces() -> dict[str, Api]:
    chat = Api(
        name="chat",
        direct_path="/v1/chat/completions",
        gateway_path=f"{PREFIX}/openai/v1/chat/completions",
        headers=client_headers.OPENAI_HEADERS,
        body=payloads.openai_chat(stream=False),
        direct_auth=("authorization", f"Bearer {OPENAI_KEY}"),
        stream=False,
    )
    messages = Api(
        name="messages",
        direct_path="/v1/messages",
        gateway_path=f"{PREFIX}/anthropic/v1/messages",
        headers=client_headers.ANTHROPIC_HEADERS,
        body=payloads.anthropic_messages(stream=False),
        direct_auth=("x-api-key", ANTHROPIC_KEY),
        stream=False,
    )
    messages_stream = replace(
        messages, name="messages_stream", body=payloads.anthropic_messages(stream=True), stream=True
    )
    responses = Api(
        name="responses",
        direct_path="/v1/responses",
        gateway_path=f"{PREFIX}/openai/v1/responses",
        headers=client_headers.RESPONSES_HEADERS,
        body=payloads.openai_responses(stream=False),
        direct_auth=("authorization", f"Bearer {OPENAI_KEY}"),
        stream=False,
    )
    return {api.name: api for api in (chat, messages, messages_stream, responses)}


def slow_stream_api() -> Api:
    """The small, slowly answered Messages stream of the many-open-streams scenario."""
    return Api(
        name="slow_stream",
        direct_path="/v1/messages",
        gateway_path=f"{PREFIX}/{PACED_PROVIDER}/v1/messages",
        headers=client_headers.ANTHROPIC_HEADERS,
        body=payloads.slow_stream(),
        direct_auth=("x-api-key", ANTHROPIC_KEY),
        stream=True,
    )


def delayed_chat_api() -> Api:
    """The bench's Chat Completions request (40 KB, blocking) sent to the delayed answer's
    provider."""
    return replace(
        api_surfaces()["chat"],
        name="delayed_chat",
        gateway_path=f"{PREFIX}/{DELAYED_PROVIDER}/v1/chat/completions",
    )


def steady_stream_api() -> Api:
    """The bench's Messages stream request (75 KB) sent to the steady stream's provider."""
    return replace(
        api_surfaces()["messages_stream"],
        name="steady_stream",
        gateway_path=f"{PREFIX}/{STEADY_PROVIDER}/v1/messages",
    )


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
    gateway: Proc  # recording on
    gateway_port: int
    token: str
    config_text: str
    startup_s: float
    litellm: LiteLLM
    paced_port: int
    gateway_norec: Proc  # the same gateway with ai_gateway.recording = false
    gateway_norec_port: int
    norec_config_text: str
    database: Database
    gateway_trace: Proc  # the same gateway with [trace] enable = true
    gateway_trace_port: int
    trace_config_text: str
    sink: Proc  # the local OTLP collector gateway_trace exports to
    sink_port: int
    gateway_base: Proc | None = None  # the baseline commit's code, when asked for
    gateway_base_port: int = 0
    baseline: str = ""  # its git commit
    steady_port: int = 0  # the steady stream (bench.paced_upstream with STEADY)
    delayed_port: int = 0  # the delayed Chat answer (bench.paced_upstream, DELAYED_S)

    @property
    def vias(self) -> tuple[str, ...]:
        """The paths that can be measured: LiteLLM's only when it is up, the baseline's only
        when there is one."""
        missing = {"litellm": not self.litellm.up, "gateway_base": self.gateway_base is None}
        return tuple(v for v in VIAS if not missing.get(v, False))

    def port(self, via: str) -> int:
        return {
            "direct": self.upstream_port,
            "gateway": self.gateway_port,
            "gateway_norec": self.gateway_norec_port,
            "gateway_trace": self.gateway_trace_port,
            "gateway_base": self.gateway_base_port,
        }.get(via, self.litellm.port)

    def key(self, via: str) -> str:
        return litellm_proxy.MASTER_KEY if via == "litellm" else self.token

    def spec(self, api: Api, via: str) -> LoadSpec:
        return api.spec(self.port(via), via=via, token=self.key(via))

    def raw(self, api: Api, via: str) -> bytes:
        return api.raw(self.port(via), via=via, token=self.key(via))

    def proc(self, via: str) -> Proc | None:
        return {
            "direct": self.upstream,
            "gateway": self.gateway,
            "gateway_norec": self.gateway_norec,
            "gateway_trace": self.gateway_trace,
            "gateway_base": self.gateway_base,
        }.get(via, self.litellm.proc)

    def procs(self) -> list[Sampled]:
        """The processes whose CPU is sampled (the database: the postmaster and its backends)."""
        procs: list[Sampled] = [
            self.gateway,
            self.gateway_norec,
            self.gateway_trace,
            self.upstream,
            self.sink,
            self.database.tree(),
        ]
        if self.gateway_base is not None:
            procs.append(self.gateway_base)
        if self.litellm.proc is not None:
            procs.append(self.litellm.proc)
        return procs


def gateway_config(
    state_dir: Path,
    port: int,
    upstream_port: int,
    paced_port: int,
    log_level: str,
    *,
    steady_port: int,
    delayed_port: int = 0,
    database_url: str,
    recording: bool,
    secrets_key_file: Path,
    otlp_endpoint: str = "",
    retention: str = "60d",
    metrics_address: str | None = None,
) -> str:
    # Only the tracing gateway has a [trace] table: a baseline from before tracing would refuse it.
    trace = (
        f'\n[trace]\nenable = true\notlp_endpoint = "{otlp_endpoint}"\n' if otlp_endpoint else ""
    )
    prometheus = f'address = "{metrics_address}"' if metrics_address else "enabled = false"
    delayed = (
        f'\n[[providers]]\ntype = "openai"\nname = "{DELAYED_PROVIDER}"\n'
        f'base_url = "http://{HOST}:{delayed_port}/v1"\nkey_env = "BENCH_OPENAI_KEY"\n'
        if delayed_port
        else ""
    )
    return f"""\
[server]
http_address = "{HOST}:{port}"
state_dir = "{state_dir}"
secrets_key_file = "{secrets_key_file}"

[database]
url = "{database_url}"

[ai_gateway]
recording = {"true" if recording else "false"}
retention = "{retention}"

[prometheus]
{prometheus}

[log]
level = "{log_level}"
{trace}
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

[[providers]]
type = "anthropic"
name = "{PACED_PROVIDER}"
base_url = "http://{HOST}:{paced_port}"
key_env = "BENCH_ANTHROPIC_KEY"

[[providers]]
type = "anthropic"
name = "{STEADY_PROVIDER}"
base_url = "http://{HOST}:{steady_port}"
key_env = "BENCH_ANTHROPIC_KEY"
{delayed}"""


def start_gateway(
    name: str,
    work: Path,
    config_text: str,
    state_dir: Path,
    port: int,
    *,
    code: Path = REPO,
) -> Proc:
    """``aibridged serve`` of the code in ``code`` (this checkout unless told otherwise), pinned,
    ready."""
    config_path = work / f"{name}.toml"
    config_path.write_text(config_text)
    aibridged = str(Path(sys.executable).with_name("aibridged"))
    serve = [aibridged, "serve", "--config", str(config_path), "--state-dir", str(state_dir)]
    pythonpath = os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,  # the gateway runs the code the bench reports on
        "BENCH_OPENAI_KEY": OPENAI_KEY,
        "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY,
    }
    gateway = Proc(
        name, pinned(serve, GATEWAY_CPU), env=env, log_path=work / f"{name}.log", nofile=NOFILE
    )
    wait_http_ok(f"http://{HOST}:{port}/readyz", timeout_s=120, proc=gateway)
    return gateway


@contextlib.contextmanager
def running_stack(
    work: Path,
    *,
    upstream_kind: str,
    log_level: str,
    pacing: Pacing,
    with_litellm: bool,
    database_cpu: int | None = CLIENT_CPU,
    baseline: str = "",
) -> Iterator[Stack]:
    """The database (``database_cpu``), the upstream and the OTLP collector (CPU 0), the gateways
    (CPU 1; a fourth running git ``baseline``'s code when given) and LiteLLM (CPU 1), all stopped
    by PID on the way out. LiteLLM failing to install or start is recorded in
    ``Stack.litellm.error``."""
    procs: list[Proc] = []
    litellm = LiteLLM(error=None if with_litellm else "not asked for (--no-litellm)")
    with running_database(work / "postgres", cpu=database_cpu) as database:
        try:
            upstream_port, paced_port, steady_port = free_port(), free_port(), free_port()
            delayed_port = free_port()
            upstream_cmd = [sys.executable, "-m", "bench.upstream", "--kind", upstream_kind]
            upstream_cmd += ["--paced-port", str(paced_port)]
            upstream_cmd += ["--slow-interval", f"{pacing.interval_s:g}"]
            upstream_cmd += ["--slow-deltas", str(pacing.deltas)]
            upstream_cmd += ["--steady-port", str(steady_port)]
            upstream_cmd += ["--steady-interval", f"{STEADY.interval_s:g}"]
            upstream_cmd += ["--steady-deltas", str(STEADY.deltas)]
            upstream_cmd += ["--delayed-port", str(delayed_port)]
            upstream_cmd += ["--delayed-ms", f"{DELAYED_S * 1000:g}"]
            upstream = Proc(
                "upstream",
                pinned([*upstream_cmd, "--port", str(upstream_port)], CLIENT_CPU),
                log_path=work / "upstream.log",
                stdout_pipe=True,
                cwd=REPO,
                nofile=NOFILE,
            )
            procs.append(upstream)
            line = upstream.read_line(30)
            while line.startswith(("paced ", "steady ", "delayed ")):
                line = upstream.read_line(30)
            if not line.startswith("listening "):
                raise RuntimeError(f"upstream said {line!r}:\n{upstream.log_tail()}")

            sink = Proc(
                "sink",
                pinned([sys.executable, "-m", "bench.otlp_sink", "--port", "0"], CLIENT_CPU),
                log_path=work / "sink.log",
                stdout_pipe=True,
                cwd=REPO,
            )
            procs.append(sink)
            line = sink.read_line(30)
            if not line.startswith(otlp_sink.READY_PREFIX):
                raise RuntimeError(f"the OTLP sink said {line!r}:\n{sink.log_tail()}")
            sink_url = line.removeprefix(otlp_sink.READY_PREFIX).strip()

            configs: dict[str, tuple[str, Path, int]] = {}
            variants = [("gateway", True, ""), ("gateway_norec", False, ""),
                        ("gateway_trace", True, sink_url)]  # fmt: skip
            if baseline:
                variants.append(("gateway_base", True, ""))
            for name, recording, otlp_endpoint in variants:
                state_dir, port = work / f"state-{name}", free_port()
                text = gateway_config(
                    state_dir,
                    port,
                    upstream_port,
                    paced_port,
                    log_level,
                    steady_port=steady_port,
                    delayed_port=delayed_port,
                    database_url=database.dsn("postgres"),
                    recording=recording,
                    secrets_key_file=work / "secrets.key",
                    otlp_endpoint=otlp_endpoint,
                )
                configs[name] = (text, state_dir, port)
            started = time.monotonic()
            # The first one migrates and seeds the database and writes the admin token.
            gateway = start_gateway("gateway", work, *configs["gateway"])
            procs.append(gateway)
            startup_s = time.monotonic() - started
            gateway_norec = start_gateway("gateway_norec", work, *configs["gateway_norec"])
            procs.append(gateway_norec)
            gateway_trace = start_gateway("gateway_trace", work, *configs["gateway_trace"])
            procs.append(gateway_trace)
            gateway_base = None
            if baseline:
                code = _checkout(baseline, work / "baseline")
                gateway_base = start_gateway("gateway_base", work, *configs["gateway_base"],
                                              code=code)  # fmt: skip
                procs.append(gateway_base)
            token = (configs["gateway"][1] / "admin.token").read_text().strip()
            if with_litellm:
                print("starting LiteLLM ...", flush=True)
                litellm = litellm_proxy.start(work, upstream_port, cpu=GATEWAY_CPU, nofile=NOFILE)
                if litellm.error:
                    print(f"warning: {litellm.error}; going on without it", file=sys.stderr)
            yield Stack(
                upstream,
                upstream_port,
                gateway,
                configs["gateway"][2],
                token,
                configs["gateway"][0],
                startup_s,
                litellm,
                paced_port,
                gateway_norec,
                configs["gateway_norec"][2],
                configs["gateway_norec"][0],
                database,
                gateway_trace,
                configs["gateway_trace"][2],
                configs["gateway_trace"][0],
                sink,
                int(sink_url.rpartition(":")[2]),
                gateway_base,
                configs["gateway_base"][2] if baseline else 0,
                _commit_of(baseline) if baseline else "",
                steady_port=steady_port,
                delayed_port=delayed_port,
            )
        finally:
            litellm_proxy.stop(litellm)
            for proc in reversed(procs):
                exit_code = proc.stop(timeout_s=40)
                if proc.name.startswith("gateway") and exit_code != 0:
                    print(
                        f"warning: {proc.name} exited with {exit_code}:\n{proc.log_tail()}",
                        file=sys.stderr,
                    )


def _checkout(ref: str, into: Path) -> Path:
    """The package of git ``ref`` (``aibridged/`` only: the bench is this checkout's), for a
    gateway to run instead of this checkout's code."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "aibridged"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _commit_of(ref: str) -> str:
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()
