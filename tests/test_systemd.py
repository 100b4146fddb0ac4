from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).parent.parent / "systemd"
UNIT = SYSTEMD / "aibridged.service"
PROXY_UNIT = SYSTEMD / "aibridgeproxyd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("source", [UNIT, PROXY_UNIT], ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, source: Path) -> None:
    # The unit names the installed path; point it at this venv's console script so verify can
    # check that the command exists.
    binary = Path(sys.executable).parent / "aibridged"
    unit = tmp_path / source.name
    unit.write_text(source.read_text().replace("/usr/local/bin/aibridged", str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if source.name in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.parametrize("source", [UNIT, PROXY_UNIT], ids=lambda p: p.name)
def test_unit_is_a_notify_service_with_reload_and_hardening(source: Path) -> None:
    text = source.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=aibridged",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ):
        assert line in text.splitlines(), line
