"""contrib/systemd/sealgate.service is a unit systemd accepts, and a locked-down one.

`systemd-analyze verify` parses it as systemd would (unknown keys, bad values,
a missing ExecStart binary); `systemd-analyze security --offline` scores its
sandboxing, and the threshold keeps a later edit from quietly loosening it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "sealgate.service"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (apt-get install systemd)")
    text = UNIT.read_text()
    # Point ExecStart at this checkout's command, so verify can check the binary exists.
    sealgate = Path(sys.executable).with_name("sealgate")
    assert sealgate.exists()
    copy = tmp_path / "sealgate.service"
    copy.write_text(text.replace("/opt/sealgate/bin/sealgate", str(sealgate)))
    return copy


def test_systemd_accepts_the_unit(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "sealgate.service" not in result.stderr, result.stderr


def test_the_unit_is_sandboxed(unit: Path) -> None:
    text = unit.read_text()
    for line in (
        "User=sealgate",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text.splitlines(), line
    # Exposure 0 (locked down) .. 10 (unprotected); 2.5 and above fails.
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout
