"""The processes a benchmark starts: cin's coordinator and a POP, the ceiling server, an
S3 (moto) server and a latency proxy, each its own process on loopback, as in
production.

Each process's CPU time and memory are read from /proc, so a figure can say what the
server spent, not only how long the client waited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

APIKEY = "BENCHAPIKEY000000001"
INTERNAL_SECRET = "bench-internal-secret-0001"  # noqa: S105 - loopback only, made up
BUCKET = "cin-bench"
POP_NAME = "bench-pop"
REPO = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")
# moto and botocore read these; nothing here may reach for real credentials.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Where py-spy's samples of every cin process go (`--profile`); None: not profiled.
PROFILE_DIR: Path | None = None
# `--gil`: only samples holding the GIL, i.e. Python's own CPU time, not threads waiting
# in fsync or write (which py-spy otherwise counts as busy).
PROFILE_GIL = False


class Process:
    """A child process whose output goes to a log file; ready once it prints `ready`."""

    def __init__(self, name: str, args: list[str], log: Path, ready: str) -> None:
        self.name = name
        self.log = log
        self._ready = ready
        self._profiler: subprocess.Popen[bytes] | None = None
        # The repository first: `-m bench.ceiling` runs from the checkout, not an install.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path, **AWS_ENV)
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, *args], stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         cwd=log.parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> Process:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready in self.log.read_text(errors="replace"):
                self._profile()
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process and its threads so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def _status(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {name} for {self.name}")

    def rss_bytes(self) -> int:
        return self._status("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The high-water mark of resident memory (VmHWM) since start or the last reset."""
        return self._status("VmHWM")

    def reset_peak_rss(self) -> None:
        """Start a new high-water mark from the current RSS (Linux: clear_refs 5)."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def _profile(self) -> None:
        """Sample the process with py-spy until it stops: collapsed stacks, one file per
        process, that `python -m bench.profiles` sums up (or a flame graph tool draws)."""
        # moto and the latency proxy stand for S3 and the network: not measured.
        if PROFILE_DIR is None or self.name in ("moto", "latency-proxy"):
            return
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        output = PROFILE_DIR / f"{self.name}-{time.strftime('%H%M%S')}-{self.pid}.txt"
        beside = Path(sys.executable).parent / "py-spy"  # installed with `.[bench]`
        self._profiler = subprocess.Popen(
            [str(beside) if beside.exists() else "py-spy", "record", "--pid", str(self.pid),
             "--format", "raw", "--nolineno", "--nonblocking", "--rate", "200",
             "--output", str(output), *(["--gil"] if PROFILE_GIL else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, timeout: float = 20) -> None:
        if self._profiler is not None:
            # SIGINT makes py-spy write what it sampled and exit.
            self._profiler.send_signal(signal.SIGINT)
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
                self._profiler.wait(5)
            self._profiler = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def started(process: Process, timeout: float = 60) -> Iterator[Process]:
    try:
        yield process.wait_ready(timeout)
    finally:
        process.stop()


@dataclass
class CinNetwork:
    """A coordinator and one POP (each `cin` in its own process) and their config."""

    root: Path
    event_loop: str = "uvloop"
    s3_endpoint: str | None = None
    sqlite_synchronous: str = "full"
    state: str | None = None  # coordinator.state (None: SQLite in the scratch folder)
    coordinator_port: int = field(default_factory=free_port)
    pop_port: int = field(default_factory=free_port)

    @property
    def coordinator_url(self) -> str:
        return f"http://127.0.0.1:{self.coordinator_port}"

    @property
    def pop_url(self) -> str:
        return f"http://127.0.0.1:{self.pop_port}"

    @property
    def bucket_root(self) -> Path:
        return self.root / "bucket"

    def config(self, coordinator_port: int | None = None) -> dict[str, Any]:
        if self.s3_endpoint is None:
            storage: dict[str, Any] = {"driver": "local", "root": str(self.bucket_root)}
        else:
            storage = {"driver": "s3", "endpoint_url": self.s3_endpoint,
                       "region": "us-east-1", "addressing_style": "path"}
        storage.update(provider="s3", container=BUCKET)
        coordinator: dict[str, Any] = {
            "listen": f"127.0.0.1:{coordinator_port or self.coordinator_port}",
            "public_url": self.coordinator_url, "state_dir": str(self.root / "coordinator")}
        if self.state is not None:
            coordinator["state"] = self.state
        else:
            coordinator["sqlite_synchronous"] = self.sqlite_synchronous
        return {
            "event_loop": self.event_loop,
            "internal_secret": INTERNAL_SECRET,
            "shutdown_timeout": 10,
            "coordinator": coordinator,
            "pops": [{"name": POP_NAME, "listen": f"127.0.0.1:{self.pop_port}",
                      "public_url": self.pop_url, "spool_dir": str(self.root / "spool")}],
            "storage": {"bucket": storage},
            "apps": {APIKEY: {"secret": "bench-app-secret-000001", "security": "optional",
                              "storage": ["bucket"], "max_upload_size": "5GiB"}},
        }

    def write_config(self, coordinator_port: int | None = None) -> Path:
        """The config; with `coordinator_port`, that of another coordinator on the same
        state, listening there."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / (f"cin-{coordinator_port}.yaml" if coordinator_port else "cin.yaml")
        path.write_text(yaml.safe_dump(self.config(coordinator_port)))
        return path

    def coordinator(self, port: int | None = None) -> Process:
        """The coordinator; with `port`, another one on the same state, listening there."""
        config = self.write_config(port)
        name = f"coordinator-{port}" if port else "coordinator"
        return Process(name, ["-m", "cin", "coordinator", "-c", str(config)],
                       self.root / f"{name}.log", "cin: ready")

    def pop(self) -> Process:
        config = self.write_config()
        return Process("pop", ["-m", "cin", "edge", "-c", str(config), "--pop", POP_NAME],
                       self.root / "pop.log", "cin: ready")


@contextlib.contextmanager
def cin_network(network: CinNetwork) -> Iterator[tuple[Process, Process]]:
    """The coordinator, then the POP; stopped in the other order."""
    with started(network.coordinator()) as coordinator, started(network.pop()) as pop:
        yield coordinator, pop


def ceiling(root: Path, event_loop: str) -> tuple[Process, str]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = Process("ceiling", ["-m", "bench.ceiling", "--port", str(port), "--dir",
                                  str(root / "ceiling"), "--loop", event_loop],
                      root / "ceiling.log", "ceiling: ready")
    return process, f"http://127.0.0.1:{port}"


def moto(root: Path) -> tuple[Process, str]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = Process("moto", ["-m", "bench.moto_server", "--port", str(port)],
                      root / "moto.log", "moto: ready")
    return process, f"http://127.0.0.1:{port}"


def latency_proxy(root: Path, target_port: int, rtt: float) -> tuple[Process, str]:
    """A proxy to `target_port` on loopback that adds `rtt` seconds of round trip."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = Process("latency-proxy", ["-m", "bench.latency_proxy", "--port", str(port),
                                        "--target", str(target_port), "--rtt", str(rtt)],
                      root / "latency-proxy.log", "latency proxy: ready")
    return process, f"http://127.0.0.1:{port}"
