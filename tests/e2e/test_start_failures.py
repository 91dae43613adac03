"""A node that cannot start as configured says why in one line and exits 2, as for a
config error: its address is taken, or a TLS file is missing or is not a certificate."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import config_data, write_config

pytestmark = pytest.mark.e2e


def run_cin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cin", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_an_address_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data["coordinator"]["listen"] = f"127.0.0.1:{port}"
        path = write_config(data, tmp_path / "cin.yaml")
        done = run_cin("coordinator", "-c", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cin: cannot start: coordinator: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"], done.stderr


def test_cin_dev_with_a_pop_address_in_use_starts_nothing(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data["pops"][-1]["listen"] = f"127.0.0.1:{port}"
        path = write_config(data, tmp_path / "cin.yaml")
        done = run_cin("dev", "-c", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    name = data["pops"][-1]["name"]
    # Not the coordinator's and the other POP's start and stop first.
    assert done.stderr.strip().splitlines() == [
        f"cin: cannot start: pop {name}: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"], done.stderr
    assert done.stdout == ""


def test_a_missing_tls_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    cert, key = tmp_path / "pop.crt", tmp_path / "pop.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    data["pops"][0]["tls"] = {"cert": str(cert), "key": str(key)}  # no key file
    path = write_config(data, tmp_path / "cin.yaml")
    name = data["pops"][0]["name"]
    done = run_cin("edge", "-c", str(path), "--pop", name)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cin: cannot start: pop {name}: tls.key {key}: No such file or directory"]


def test_a_tls_file_that_is_no_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    cert, key = tmp_path / "pop.crt", tmp_path / "pop.key"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    data["pops"][0]["tls"] = {"cert": str(cert), "key": str(key)}
    path = write_config(data, tmp_path / "cin.yaml")
    name = data["pops"][0]["name"]
    done = run_cin("edge", "-c", str(path), "--pop", name)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cin: cannot start: pop {name}: tls: {cert} and {key} are not "
                               "a certificate and its key in PEM ("), lines[0]
