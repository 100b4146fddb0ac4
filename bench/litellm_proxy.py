"""LiteLLM's proxy as the comparison point, run like the gateway: one process pinned to the
gateway's CPU, pointed at the same fake upstream.

The pinned version lives in a venv of its own, ``bench/.venv-litellm/`` (git-ignored), created the
first time the bench needs it (``pip install 'litellm[proxy]==<LITELLM_VERSION>'``). One worker,
no database (DATABASE_URL / REDIS_* are removed from its environment), telemetry off, no
callbacks, no retries, the local cost map, log level ERROR. ``start`` never raises for LiteLLM's
sake: when it cannot be installed or started, the returned ``LiteLLM`` says why (``error``) and the
bench goes on without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import payloads
from bench.procs import Proc, free_port, pinned, wait_http_ok

LITELLM_VERSION = "1.100.5"
_KNOWN_BAD = frozenset({"1.82.7", "1.82.8"})  # never install these
VENV = Path(__file__).resolve().parent / ".venv-litellm"
MASTER_KEY = "sk-bench-1234"
UPSTREAM_KEY = "sk-fake"
INSTALL_TIMEOUT_S = 1200
START_TIMEOUT_S = 180
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
}
_DROPPED_ENV_PREFIXES = ("DATABASE_URL", "REDIS_", "DIRECT_URL")


@dataclass(slots=True)
class LiteLLM:
    """The LiteLLM process (or why there is none)."""

    proc: Proc | None = None
    port: int = 0
    version: str | None = None
    config_text: str = ""
    startup_s: float = 0.0
    install_s: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.alive()


def installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def ensure_installed(log_path: Path) -> tuple[str | None, str | None, float]:
    """(installed version, error, seconds spent installing); installs the pinned version."""
    if LITELLM_VERSION in _KNOWN_BAD:
        return None, f"refusing to install litellm {LITELLM_VERSION}", 0.0
    version = installed_version()
    if version == LITELLM_VERSION:
        return version, None, 0.0
    started = time.monotonic()
    print(
        f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (found {version}) ...",
        flush=True,
    )
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
    ]
    with open(log_path, "wb") as log:
        for step in steps:
            try:
                code = subprocess.run(
                    step, stdout=log, stderr=log, timeout=INSTALL_TIMEOUT_S, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
            if code != 0:
                tail = log_path.read_text(errors="replace")[-800:]
                return None, f"`{' '.join(step[-3:])}` failed ({code}): {tail}", 0.0
    version = installed_version()
    if version != LITELLM_VERSION:
        return None, f"litellm {version} installed instead of {LITELLM_VERSION}", 0.0
    return version, None, time.monotonic() - started


def config_text(upstream_port: int) -> str:
    base = f"http://127.0.0.1:{upstream_port}"
    models = (
        (payloads.OPENAI_MODEL, "openai", f"{base}/v1"),
        (payloads.RESPONSES_MODEL, "openai", f"{base}/v1"),
        (payloads.ANTHROPIC_MODEL, "anthropic", base),
    )
    lines = ["model_list:"]
    for name, provider, api_base in models:
        lines += [
            f"  - model_name: {name}",
            f"    litellm_params: {{model: {provider}/{name}, api_base: {api_base!r}, "
            f"api_key: {UPSTREAM_KEY}}}",
        ]
    lines += [
        f"general_settings: {{master_key: {MASTER_KEY}}}",
        "litellm_settings: {callbacks: [], num_retries: 0, request_timeout: 30, telemetry: false}",
    ]
    return "\n".join(lines) + "\n"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    return {**env, **ENV}


def start(work: Path, upstream_port: int, *, cpu: int | None, nofile: int) -> LiteLLM:
    """Install if needed, start pinned to ``cpu``, wait until it answers; never raises."""
    out = LiteLLM()
    version, error, out.install_s = ensure_installed(work / "litellm-install.log")
    out.version = version
    if error is not None:
        out.error = f"LiteLLM could not be installed: {error}"
        return out
    out.port = free_port()
    out.config_text = config_text(upstream_port)
    config_path = work / "litellm.yaml"
    config_path.write_text(out.config_text)
    cmd = [
        str(VENV / "bin" / "litellm"),
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(out.port),
        "--num_workers",
        "1",
        "--telemetry",
        "False",
    ]
    started = time.monotonic()
    try:
        out.proc = Proc(
            "litellm",
            pinned(cmd, cpu),
            env=_env(),
            log_path=work / "litellm.log",
            cwd=work,
            nofile=nofile,
        )
        wait_http_ok(
            f"http://127.0.0.1:{out.port}/health/liveliness",
            timeout_s=START_TIMEOUT_S,
            proc=out.proc,
        )
    except (OSError, RuntimeError) as exc:
        out.error = f"LiteLLM did not start: {exc}"
        stop(out)
        return out
    out.startup_s = time.monotonic() - started
    return out


def stop(litellm: LiteLLM) -> int | None:
    """Stop LiteLLM by its PID (SIGTERM, then SIGKILL); its exit code."""
    if litellm.proc is None:
        return None
    return litellm.proc.stop(timeout_s=30)
