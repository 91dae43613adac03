"""The README's quickstart, run verbatim against `cin dev -c configs/dev.yaml`, as pasted
into a fresh shell in a checkout after `make dev`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import REPO, CinProcess

pytestmark = pytest.mark.e2e

DEV_PORTS = (8700, 8701, 8702)


def first_sh_block(heading: str) -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"{heading} has no sh block"
    return str(blocks[0])


SDK_SECTION = "Python SDK and `cin upload`"


def first_python_block(heading: str) -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"{heading} has no python block"
    return str(blocks[0])


def quickstart_script() -> str:
    """The quickstart, then the security section, which goes on with its $HANDLE, then
    `cin upload` and friends."""
    return (first_sh_block("Quickstart") + first_sh_block("Securing an app")
            + first_sh_block(SDK_SECTION))


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects in curl's output (its replies end without a newline)."""
    decoder = json.JSONDecoder()
    found, position = [], text.find("{")
    while position != -1:
        value, end = decoder.raw_decode(text, position)
        found.append(value)
        position = text.find("{", end)
    return found


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_readme_quickstart_works_verbatim(tmp_path: Path) -> None:
    busy = [port for port in DEV_PORTS if port_in_use(port)]
    if busy:
        pytest.skip(f"ports {busy} are taken (is `make dev` running?)")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    network = CinProcess(["dev", "-c", "configs/dev.yaml"], tmp_path).wait_ready()
    try:
        assert "cin: apikey DEMOAPIKEY0123456789" in network.output
        assert "cin: pop eu-west-1 at http://127.0.0.1:8702" in network.output
        # A fresh shell in a checkout after `make dev`: a `.venv` beside the configs, and
        # nothing of it on the PATH, so the blocks find `cin` only as they say to.
        (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
        venv_bin = str(Path(sys.prefix) / "bin")
        path = os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                               if entry and Path(entry).resolve() != Path(venv_bin).resolve())
        env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
        # The SDK's state (resume files, the POP choice) in the test's own directory.
        env.update(PATH=path, CIN_STATE_DIR=str(tmp_path / "cin-state"))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", quickstart_script()],
                              cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              check=False, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        sdk = subprocess.run([sys.executable, "-c", first_python_block(SDK_SECTION)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             check=False, env=env)
        assert sdk.returncode == 0, sdk.stdout + sdk.stderr
    finally:
        assert network.stop() == 0, network.output

    objects = json_objects(done.stdout)
    first_store = objects[0]
    assert first_store["size"] == 15 and first_store["filename"] == "hello.txt"
    assert "hello from cin" in done.stdout  # the download
    assert (tmp_path / "downloaded.txt").read_text() == "hello from cin\n"
    sha = hashlib.sha256(b"hello from cin\n").hexdigest()
    metadata = [o for o in objects if "upload_status" in o]
    assert {"size": 15, "sha256": sha, "upload_status": "Complete"} in metadata
    full = next(m for m in metadata if "md5" in m)
    assert full["path"].startswith("docs/") and full["location"] == "S3"
    copy = next(o for o in objects if o.get("filename") == "copy.txt")
    assert copy["size"] == 15
    processed = next(o for o in objects if o.get("filename") == "processed.txt")
    assert (processed["size"], processed["mimetype"]) == (15, "text/plain")

    # The security section: overwrite, read back, delete, with a policy from `cin sign`.
    overwritten = next(o for o in objects if "isWriteable" in o)
    assert overwritten["size"] == len("hello again\n")
    assert "hello again" in done.stdout
    assert objects[-1] == {"handle": overwritten["handle"], "deleted": True,
                           "skip_storage": False}
    assert list((tmp_path / "var" / "bucket").rglob("*hello.txt"))

    # cin upload --wait --json, status, pops, download; then the same file from Python.
    uploaded = json.loads((tmp_path / "upload.json").read_text())
    assert uploaded["status"] == "Complete" and uploaded["size"] == 20_000_000
    assert f"{uploaded['handle']} Complete 20000000 bytes big.bin" in done.stdout
    assert "us-east-1" in done.stdout and "eu-west-1" in done.stdout  # cin pops
    big = hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "big.again").read_bytes()).hexdigest() == big
    assert not list((tmp_path / "cin-state" / "uploads").glob("*.json"))
