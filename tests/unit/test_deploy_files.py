"""The systemd units in deploy/systemd are units systemd takes, with room for cin's
connections."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from common.config import Config

UNITS = REPO / "deploy" / "systemd"
INSTALLED_CIN = "/opt/cin/bin/cin"


def _settings(unit: Path, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines()
            if line.startswith(f"{name}=")]


def _setting(unit: Path, name: str) -> str:
    (value,) = _settings(unit, name)
    return value


@pytest.mark.parametrize("unit", ["cin-coordinator.service", "cin-edge@.service"])
def test_a_unit_opens_more_files_than_cin_wants(unit: str) -> None:
    # cin warns at start below max_connections plus 256 (cin/serve.py).
    assert int(_setting(UNITS / unit, "LimitNOFILE")) >= Config.max_connections + 256
    assert _setting(UNITS / unit, "Restart") == "on-failure"
    assert "/etc/cin/cin.env" in _settings(UNITS / unit, "EnvironmentFile")


def test_systemd_verifies_the_units(tmp_path: Path) -> None:
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("no systemd-analyze here")
    # This venv's cin stands in for the installed one, which systemd checks exists.
    cin = str(Path(sys.executable).with_name("cin"))
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_CIN, cin))
    done = subprocess.run([verify, "verify", "--man=no", str(tmp_path / "cin-coordinator.service"),
                           str(tmp_path / "cin-edge@eu-west-1.service")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
