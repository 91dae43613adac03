"""`cin upload`, `cin status`, `cin pops` and `cin download` as a user runs them, against
a coordinator and two POPs running as real processes: results as JSON, a Ctrl-C that
the same command resumes, and an upload that moves on when its POP is killed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, CinProcess, config_data, write_config

pytestmark = pytest.mark.e2e

MiB = 1024**2
EXIT_RESUMABLE = 75


@dataclass
class Deployment:
    data: dict[str, Any]
    processes: dict[str, CinProcess]
    root: Path

    @property
    def url(self) -> str:
        return str(self.data["coordinator"]["public_url"])

    def env(self, state: Path) -> dict[str, str]:
        """The environment `cin` runs in: this deployment, and a state dir of its own
        (nothing of the user's own CIN_* settings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIN_")}
        return {**env, "CIN_URL": self.url, "CIN_APIKEY": APIKEY,
                "CIN_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}


def deploy(root: Path) -> Deployment:
    root.mkdir(parents=True, exist_ok=True)
    data = config_data(root)
    config = write_config(data, root / "cin.yaml")
    processes = {"coordinator": CinProcess(["coordinator", "-c", str(config)], root)}
    processes["coordinator"].wait_ready()
    for name in ("us-east-1", "eu-west-1"):
        processes[name] = CinProcess(["edge", "-c", str(config), "--pop", name], root)
    for process in processes.values():
        process.wait_ready()
    return Deployment(data, processes, root)


def stop(deployment: Deployment) -> None:
    for process in reversed(deployment.processes.values()):
        process.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    started = deploy(tmp_path_factory.mktemp("cli"))
    try:
        yield started
    finally:
        stop(started)


def cin(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cin", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def random_file(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_status_pops_and_download(deployment: Deployment, tmp_path: Path) -> None:
    env = deployment.env(tmp_path / "state")
    small = random_file(tmp_path, "small.bin", 1024)
    large = random_file(tmp_path, "large.bin", 12 * MiB + 5)
    done = cin(env, "upload", str(small), str(large), "--json", "--wait", "--tag", "k=v",
               "--path", "/cli/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json_lines(done.stdout)
    assert [r["file"] for r in results] == [str(small), str(large)]
    assert all(r["status"] == "Complete" for r in results), results
    assert [r["size"] for r in results] == [1024, 12 * MiB + 5]

    handle = results[1]["handle"]
    status = cin(env, "status", handle, "--wait", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["upload_status"] == "Complete"
    human = cin(env, "status", handle, cwd=tmp_path)
    assert human.returncode == 0 and "Complete" in human.stdout

    pops = cin(env, "pops", "--json", cwd=tmp_path)
    assert pops.returncode == 0, pops.stderr
    listed = json.loads(pops.stdout)["pops"]
    assert {p["name"] for p in listed} == {"us-east-1", "eu-west-1"}
    assert all(p["rtt_ms"] is not None and p["rtt_ms"] >= 0 for p in listed)
    assert sum(p["nearest"] for p in listed) == 1
    table = cin(env, "pops", cwd=tmp_path)
    assert table.returncode == 0 and "ms" in table.stdout

    copy = tmp_path / "copy.bin"
    downloaded = cin(env, "download", handle, "-o", str(copy), cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    assert sha256(copy) == sha256(large)
    to_stdout = subprocess.run([sys.executable, "-m", "cin", "download",
                                results[0]["handle"], "-o", "-"], cwd=tmp_path, env=env,
                               capture_output=True, timeout=120, check=False)
    assert to_stdout.returncode == 0 and to_stdout.stdout == small.read_bytes()
    own_name = cin(env, "download", results[0]["handle"], cwd=tmp_path / "state")
    assert own_name.returncode == 0, own_name.stderr
    assert sha256(tmp_path / "state" / "small.bin") == sha256(small)


def test_memory_stays_flat_whatever_the_file_size(deployment: Deployment,
                                                 tmp_path: Path) -> None:
    """A 256 MiB file goes up with a fraction of that in memory: chunks are read from
    the file as they are sent."""
    size = 256 * MiB
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as out:
        out.truncate(size)
    # VmHWM, not getrusage's ru_maxrss: that one outlives exec, and would report the
    # peak of the test process the command was forked from.
    measured = ("import pathlib, sys\n"
                "from cin.cli import main\n"
                "status = main(sys.argv[1:])\n"
                "hwm = [l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
                " if l.startswith('VmHWM:')][0]\n"
                "print('peak', hwm.split()[1], file=sys.stderr)\n"
                "sys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", measured, "upload", "--json", str(sparse)],
                          cwd=tmp_path, env=deployment.env(tmp_path / "state"),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[0]["size"] == size
    peak = int(done.stderr.split("peak ")[-1].split()[0]) * 1024  # VmHWM is in kB
    print(f"peak RSS {peak / MiB:.0f} MiB for a {size // MiB} MiB file")
    assert peak < 160 * MiB


def test_usage_errors_exit_2(deployment: Deployment, tmp_path: Path) -> None:
    env = deployment.env(tmp_path / "state")
    missing = cin(env, "upload", str(tmp_path / "absent.bin"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    present = random_file(tmp_path, "a.bin", 10)
    bad_tag = cin(env, "upload", str(present), "--tag", "novalue", cwd=tmp_path)
    assert bad_tag.returncode == 2 and "KEY=VALUE" in bad_tag.stderr
    no_url = {k: v for k, v in env.items() if k != "CIN_URL"}
    assert cin(no_url, "pops", cwd=tmp_path).returncode == 2


def held_bytes(deployment: Deployment, pop: str, upload_id: str) -> int:
    """What a POP holds or has stored of an upload, from its part status."""
    url = next(p["public_url"] for p in deployment.data["pops"] if p["name"] == pop)
    # The test's own loopback POP, over http.
    request = urllib.request.Request(  # noqa: S310
        f"{url}/multipart/status", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"apikey": APIKEY, "upload_id": upload_id}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return sum(part["size"] for part in json.load(response)["parts"])


def wait_for_bytes_at(deployment: Deployment, pop: str, state: Path, upload: CinProcess,
                      at_least: int) -> None:
    """Until the upload `upload` runs has `at_least` bytes at `pop`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert upload.proc.poll() is None, "the upload ended early:\n" + upload.output
        kept = list((state / "uploads").glob("*.json")) if (state / "uploads").exists() \
            else []
        if kept:
            upload_id = json.loads(kept[0].read_text())["upload_id"]
            if held_bytes(deployment, pop, upload_id) >= at_least:
                return
        time.sleep(0.05)
    raise AssertionError("the upload did not get going:\n" + upload.output)


def test_ctrl_c_then_the_same_command_resumes(deployment: Deployment,
                                              tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = deployment.env(state)
    size = 20 * MiB + 3
    original = random_file(tmp_path, "resume.bin", size)
    # Paced, so there is a midway to interrupt it at.
    args = ["upload", str(original), "--json", "--pop", "us-east-1"]
    first = CinProcess([*args, "--limit-rate", "4MiB"], tmp_path, env)
    wait_for_bytes_at(deployment, "us-east-1", state, first, 2 * MiB)
    first.proc.send_signal(signal.SIGINT)
    assert first.wait(30) == EXIT_RESUMABLE, first.output
    assert "run the same command again" in first.output
    assert list((state / "uploads").glob("*.json")), "the state was not kept"

    again = cin(env, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    [result] = json_lines(again.stdout)
    assert result["resumed_bytes"] >= 2 * MiB
    assert result["bytes_sent"] < size - 2 * MiB + MiB
    assert not list((state / "uploads").glob("*.json"))
    copy = tmp_path / "copy.bin"
    assert cin(env, "download", result["handle"], "-o", str(copy), cwd=tmp_path).returncode == 0
    assert sha256(copy) == sha256(original)


def test_the_upload_finishes_at_another_pop_when_its_pop_is_killed(tmp_path: Path) -> None:
    deployment = deploy(tmp_path / "net")
    try:
        state = tmp_path / "state"
        env = deployment.env(state)
        original = random_file(tmp_path, "failover.bin", 20 * MiB + 11)
        upload = CinProcess(["upload", str(original), "--json", "--wait", "--pop",
                             "us-east-1", "--limit-rate", "4MiB"], tmp_path, env)
        wait_for_bytes_at(deployment, "us-east-1", state, upload, 2 * MiB)
        deployment.processes["us-east-1"].kill9()
        assert upload.wait(120) == 0, upload.output
        [result] = json_lines(upload.output)
        assert result["pops"] == ["us-east-1", "eu-west-1"]
        assert result["status"] == "Complete"
        copy = tmp_path / "copy.bin"
        fetched = cin(env, "download", result["handle"], "-o", str(copy), cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr
        assert sha256(copy) == sha256(original)
    finally:
        stop(deployment)
