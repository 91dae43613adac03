"""`pip install .` gives a working cin: the wheel holds cin's packages and nothing else,
and its `cin dev`, in an empty directory far from any checkout, writes its own config and
runs the dev network."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest
from support import REPO, CinProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PACKAGES = {"cin", "common", "edge", "coordinator", "sdk"}
DEV_PORTS = (8700, 8701, 8702)  # configs/dev.yaml's


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    # From a copy of the sources: setuptools writes build/ and *.egg-info beside them.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "var", "build", "*.egg-info", "*_cache",
        "__pycache__", "cin-dev.yaml"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("cin-*.whl")
    return wheel


def install(wheel: Path, tmp_path: Path) -> Path:
    """A venv holding the wheel alone; its dependencies are the test venv's (a .pth line
    names its site-packages, whose own .pth files, the editable cin's among them, are not
    read), so nothing is downloaded."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                  cwd=tmp_path).strip()
    (Path(purelib) / "test-venv-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        wheel, cwd=tmp_path)
    return venv


def container_healthcheck(python: Path) -> list[str]:
    """The Containerfile's HEALTHCHECK command, run by `python`."""
    text = (REPO / "Containerfile").read_text().replace("\\\n", "")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert match, "the Containerfile has no HEALTHCHECK CMD [...]"
    program, *args = json.loads(match.group(1))
    assert program == "python"
    return [str(python), *args]


def test_the_wheel_installs_a_cin_that_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == PACKAGES, "the wheel installs more (or less) than cin's packages"
    assert "cin/dev.yaml" in names

    venv = install(wheel, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    cin = venv / "bin" / "cin"
    imported = run(venv / "bin" / "python", "-c", "import cin; print(cin.__file__)",
                   cwd=empty, env=env)
    assert imported.startswith(str(venv)), imported  # the wheel's cin, not the checkout's
    version = run(cin, "--version", cwd=empty, env=env)
    assert version == f"cin {wheel.name.split('-')[1]}\n"

    busy = [port for port in DEV_PORTS if port_in_use(port)]
    if busy:
        pytest.skip(f"ports {busy} are taken (is `make dev` running?)")
    network = CinProcess(["dev"], empty, env=env, program=[str(cin)]).wait_ready()
    try:
        assert "cin: wrote cin-dev.yaml" in network.output
        with urllib.request.urlopen("http://127.0.0.1:8701/health", timeout=10) as reply:
            assert reply.status == 200
        # The image's health check, with the installed cin's Python, at the coordinator.
        healthcheck = container_healthcheck(venv / "bin" / "python")
        health_env = {**env, "CIN_HEALTH_URL": "http://127.0.0.1:8700/health"}
        run(*healthcheck, cwd=empty, env=health_env)
    finally:
        assert network.stop() == 0, network.output
    stopped = subprocess.run(healthcheck, cwd=empty, env=health_env, capture_output=True,
                             timeout=60, check=False)
    assert stopped.returncode != 0  # nothing answers: unhealthy
    written = (empty / "cin-dev.yaml").read_text()
    assert written == (REPO / "configs" / "dev.yaml").read_text()
    assert (empty / "var" / "coordinator").is_dir()
