"""The command line as an operator meets it: one clear error line and a non-zero exit on bad input,
and the local user/token administration commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.conftest import process_alive

AIBRIDGED = [sys.executable, "-m", "aibridged"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIBRIDGED_", "CODER_"))}
    return subprocess.run(
        [*AIBRIDGED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server\nhttp_address = 1", "cannot parse"),
        ('[server]\nhtp_address = "127.0.0.1:1"', 'unknown key "server.htp_address"'),
        ('[ai_gateway]\nretention = "5 parsecs"', "invalid duration"),
        ('[ai_gateway]\nmax_concurrency = "many"', "ai_gateway.max_concurrency"),
    ],
)
def test_bad_config_file_gives_one_clear_line(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = run("check-config", "--config", str(path))
    line = _one_error_line(result)
    assert expected in line.lower() or expected in line
    assert str(path) in line


def test_check_config_accepts_the_example_file() -> None:
    example = Path(__file__).parent.parent / "config" / "aibridged.example.toml"
    result = run("check-config", "--config", str(example))
    assert result.returncode == 0, result.stderr


def test_invalid_duration_flag_and_env_are_named(tmp_path: Path) -> None:
    line = _one_error_line(run("check-config", "--ai-gateway-retention", "soon"))
    assert "--ai-gateway-retention" in line
    line = _one_error_line(run("check-config", env={"AIBRIDGED_AI_GATEWAY_RETENTION": "soon"}))
    assert "AIBRIDGED_AI_GATEWAY_RETENTION" in line


def test_unwritable_state_dir_fails_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("serve", "--state-dir", str(blocker / "state"), "--prometheus-enabled", "false")
    line = _one_error_line(result)
    assert "state dir" in line and str(blocker) in line


def _listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("which", ["http", "metrics"])
def test_port_in_use_fails_with_one_line(tmp_path: Path, database_url: str, which: str) -> None:
    sock, port = _listening_socket()
    with sock:
        flag = "--http-address" if which == "http" else "--prometheus-address"
        # The other listener on a free port: a gateway running on this machine (`make run`)
        # must not be the one in the way.
        other = "--prometheus-address" if which == "http" else "--http-address"
        result = run(
            "serve",
            "--state-dir",
            str(tmp_path),
            "--database-url",
            database_url,
            flag,
            f"127.0.0.1:{port}",
            other,
            "127.0.0.1:0",
        )
    line = _one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "address already in use" in line


def test_unreachable_database_fails_fast_with_one_line(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    started = time.monotonic()
    result = run(
        "serve",
        "--state-dir",
        str(tmp_path),
        "--prometheus-enabled",
        "false",
        "--database-url",
        f"postgresql://u:secret@127.0.0.1:{port}/x",
    )
    line = _one_error_line(result)
    assert time.monotonic() - started < 15
    assert "connection refused" in line and "secret" not in result.stderr


def test_users_and_tokens_commands(tmp_path: Path, database_url: str) -> None:
    db = ["--database-url", database_url, "--state-dir", str(tmp_path)]
    created = run("users", *db, "create", "frank", "--role", "admin", "--email", "f@example.com")
    assert created.returncode == 0, created.stderr
    assert "frank" in created.stdout
    listed = run("users", *db, "list", "--format", "json")
    assert '"username": "frank"' in listed.stdout
    token = run("tokens", *db, "create", "--user", "frank", "--name", "ci", "--lifetime", "30d")
    assert token.returncode == 0, token.stderr
    plaintext = token.stdout.strip()
    assert len(plaintext) == 33 and plaintext[10] == "-"
    tokens = run("tokens", *db, "list", "--user", "frank")
    assert plaintext[:10] in tokens.stdout and plaintext[11:] not in tokens.stdout
    revoked = run("tokens", *db, "revoke", plaintext[:10])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    suspended = run("users", *db, "suspend", "frank")
    assert "suspended" in suspended.stdout
    missing = run("users", *db, "suspend", "nobody")
    assert "no user 'nobody'" in _one_error_line(missing)
    bad = run("users", *db, "create", "Not Valid")
    assert "invalid username" in _one_error_line(bad)
    migrate = run("migrate", *db)
    assert migrate.returncode == 0 and "up to date" in migrate.stdout


def test_serve_with_embedded_postgres_is_ready_and_sigterm_exits_0_leaving_no_postgres(
    tmp_path: Path,
) -> None:
    sock, port = _listening_socket()
    sock.close()
    proc = subprocess.Popen(
        [
            *AIBRIDGED,
            "serve",
            "--demo",
            "--state-dir",
            str(tmp_path),
            "--http-address",
            f"127.0.0.1:{port}",
            "--prometheus-enabled",
            "false",
            "--shutdown-grace",
            "5s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready in 90 s"
            time.sleep(0.2)
        token = (tmp_path / "admin.token").read_text().strip()
        reply = httpx2.post(
            f"http://127.0.0.1:{port}/api/v2/aibridge/demo-openai/v1/chat/completions",
            headers={"authorization": f"Bearer {token}"},
            json={"model": "demo", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert reply.status_code == 200 and "demo reply" in reply.text
        postmaster = (tmp_path / "postgres" / "postmaster.pid").read_text().split()
        pg_pid = int(postmaster[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, stderr = proc.communicate()
    assert token not in stderr  # the token is in the file, never in the logs
    assert "ANTHROPIC_BASE_URL=" in stderr and 'wire_api = "responses"' in stderr
    deadline = time.monotonic() + 10
    while process_alive(pg_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(pg_pid), "embedded postgres still running after exit"


def test_config_options_work_before_and_after_an_actions_name() -> None:
    from aibridged.cli import build_parser
    from aibridged.config import flags_from_args

    parser = build_parser()
    after = parser.parse_args(["secrets", "rotate", "--config", "/a.toml", "--state-dir", "/s"])
    before = parser.parse_args(["secrets", "--config", "/a.toml", "--state-dir", "/s", "rotate"])
    for args in (after, before):
        assert str(args.config) == "/a.toml"
        assert flags_from_args(args) == {"server.state_dir": "/s"}
    plain = parser.parse_args(["users", "--state-dir", "/s", "list"])  # not reset by the action
    assert flags_from_args(plain) == {"server.state_dir": "/s"} and plain.config is None


def test_proxy_ca_create_writes_a_private_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    made = run("proxy", "ca", "create", "--cert", str(cert), "--key", str(key))
    assert made.returncode == 0, made.stderr
    assert (key.stat().st_mode & 0o777) == 0o600 and b"BEGIN CERTIFICATE" in cert.read_bytes()
    again = run("proxy", "ca", "create", "--cert", str(cert), "--key", str(key))
    assert _one_error_line(again) == f"aibridged: {cert} exists already: not overwritten"
    # Without paths on the command line, the configuration's proxy.ca_* keys are used.
    env = {"AIBRIDGED_PROXY_CA_CERT_FILE": str(tmp_path / "b.pem"),
           "AIBRIDGED_PROXY_CA_KEY_FILE": str(tmp_path / "b.key")}  # fmt: skip
    assert run("proxy", "ca", "create", env=env).returncode == 0
    assert (tmp_path / "b.key").exists()
    missing = run("proxy", "ca", "create")
    assert "--cert and --key" in _one_error_line(missing)


def test_proxy_without_a_ca_fails_with_one_line(tmp_path: Path, database_url: str) -> None:
    result = run("proxy", "--state-dir", str(tmp_path), "--database-url", database_url)
    assert "proxy.ca_cert_file and proxy.ca_key_file" in _one_error_line(result)


def test_proxy_listen_port_in_use_fails_with_one_line(tmp_path: Path, database_url: str) -> None:
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    assert run("proxy", "ca", "create", "--cert", str(cert), "--key", str(key)).returncode == 0
    sock, port = _listening_socket()
    env = {"AIBRIDGED_PROXY_CA_CERT_FILE": str(cert), "AIBRIDGED_PROXY_CA_KEY_FILE": str(key)}
    with sock:
        result = run(
            "proxy", "--state-dir", str(tmp_path), "--database-url", database_url,
            "--proxy-listen-address", f"127.0.0.1:{port}", "--prometheus-enabled", "false",
            env=env,
        )  # fmt: skip
    line = _one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "address already in use" in line.lower()
