"""What the tests share: free ports, configs on disk, cin processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from common.config import Config, SqliteStateConfig
from common.config.loader import parse_config
from common.storage._local_meta import read_tag
from coordinator.app import make_app as make_coordinator_app
from edge.app import make_app as make_edge_app
from edge.keys import SHIPPER

APIKEY = "TESTAPIKEY0123456789"
APP_SECRET = "test-app-secret-0123456789"
# A second app, as production apps are: every call needs a policy or the app secret.
SECURE_APIKEY = "SECUREAPIKEY01234567"
SECURE_SECRET = "secure-app-secret-0123456789"
WEBHOOK_SECRET = "test-webhook-secret-0123"
INTERNAL_SECRET = "test-internal-secret-0123"
REPO = Path(__file__).resolve().parents[1]


def sqlite_state(config: Config) -> Path:
    """The coordinator's SQLite database file, for a test that reads it directly (the
    test networks keep their state in SQLite unless they say otherwise)."""
    state = config.coordinator.state
    assert isinstance(state, SqliteStateConfig), "this network's state is not SQLite"
    return state.path


# Every port free_port has handed out in this test run.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, and one this run has not handed out before.

    The kernel picks a free port at random, so two picks in a row may be the same port
    (a network's three ports collide about once in 4,000 networks, and a run starts
    hundreds): the ports are picked before anything binds them, so without this the
    coordinator and a POP of one network could be given one port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def config_data(root: Path, *, s3_endpoint: str | None = None, bucket: str = "cin-test",
                max_upload_size: str | int = "5GiB", allow_private: bool = True,
                event_loop: str = "asyncio", webhooks: list[str] | None = None,
                webhook_delivery: dict[str, Any] | None = None,
                cors: dict[str, Any] | None = None,
                heartbeat: dict[str, Any] | None = None,
                networks: dict[str, list[str]] | None = None,
                upload_expiry: dict[str, Any] | None = None,
                url_fetch_timeout: float = 5,
                timeouts: dict[str, Any] | None = None,
                state: str | None = None) -> dict[str, Any]:
    """A network like configs/dev.yaml, on free ports, with its state under `root`.

    Two apps: APIKEY with optional security (like the dev app) and SECURE_APIKEY with
    required security. `webhooks` are URLs both apps post every event to, signed with
    WEBHOOK_SECRET; `webhook_delivery` overrides the outbox worker's timing; `cors` is the
    config's `cors:` section (none: CORS off); `heartbeat` is the POPs' heartbeat;
    `networks` maps POP names to the client networks sent to them; `upload_expiry` is the
    config's `upload_expiry:` section (its `store_ttl` must be longer than
    `url_fetch_timeout`); `timeouts` is the config's `timeouts:` section; `state` is
    `coordinator.state` (none: SQLite under `root`)."""
    coordinator_port, east_port, west_port = free_port(), free_port(), free_port()
    if s3_endpoint is None:
        storage: dict[str, Any] = {"driver": "local", "root": str(root / "bucket")}
    else:
        storage = {"driver": "s3", "endpoint_url": s3_endpoint, "region": "us-east-1",
                   "addressing_style": "path"}
    storage.update(provider="s3", container=bucket, containers=[f"{bucket}-other"])
    hooks = [{"url": url, "secret": WEBHOOK_SECRET} for url in webhooks or []]
    data: dict[str, Any] = {
        "event_loop": event_loop,
        "internal_secret": INTERNAL_SECRET,
        "shutdown_timeout": 10,
        "coordinator": {"listen": f"127.0.0.1:{coordinator_port}",
                        "public_url": f"http://127.0.0.1:{coordinator_port}",
                        "state_dir": str(root / "coordinator")},
        "pops": [
            {"name": "us-east-1", "listen": f"127.0.0.1:{east_port}",
             "public_url": f"http://127.0.0.1:{east_port}",
             "spool_dir": str(root / "spool-east")},
            {"name": "eu-west-1", "listen": f"127.0.0.1:{west_port}",
             "public_url": f"http://127.0.0.1:{west_port}",
             "spool_dir": str(root / "spool-west")},
        ],
        "storage": {"bucket": storage},
        "apps": {
            APIKEY: {"secret": APP_SECRET, "security": "optional", "storage": ["bucket"],
                     "max_upload_size": max_upload_size, "webhooks": hooks},
            SECURE_APIKEY: {"secret": SECURE_SECRET, "security": "required",
                            "storage": ["bucket"], "max_upload_size": max_upload_size,
                            "webhooks": hooks},
        },
        "url_fetch": {"allow_private": allow_private, "max_size": "64MiB",
                      "timeout": url_fetch_timeout},
    }
    if webhook_delivery is not None:
        data["webhook_delivery"] = webhook_delivery
    if cors is not None:
        data["cors"] = cors
    if heartbeat is not None:
        data["heartbeat"] = heartbeat
    if upload_expiry is not None:
        data["upload_expiry"] = upload_expiry
    if timeouts is not None:
        data["timeouts"] = timeouts
    if state is not None:
        data["coordinator"]["state"] = state
    for pop in data["pops"]:
        if networks and pop["name"] in networks:
            pop["networks"] = networks[pop["name"]]
    return data


def to_config(data: dict[str, Any], root: Path) -> Config:
    return parse_config(data, source="test-config", base=root)


def write_config(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


class CinProcess:
    """A `cin` command running as a real process, its output collected."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None,
                 program: list[str] | None = None) -> None:
        """`program` is the command that is `cin`: this Python's `-m cin` unless told."""
        self.args = args
        self.cwd = cwd
        self.lines: list[str] = []
        self._ready = threading.Event()
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        program = program or [sys.executable, "-m", "cin"]
        self.proc = subprocess.Popen([*program, *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("cin: ready"):
                self._ready.set()

    def wait_ready(self, timeout: float = 30) -> CinProcess:
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("cin did not start:\n" + self.output)
        return self

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_bytes(self) -> int:
        """The process's high-water mark of resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def wait(self, timeout: float) -> int:
        """The exit status, once the process has ended and `output` has every line it
        wrote (a thread reads them: its last lines may still be in the pipe when the
        process is gone)."""
        self.proc.wait(timeout)
        self._reader.join(10)
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(5)


@dataclass
class Network:
    config: Config
    pop: TestClient  # type: ignore[type-arg]
    coordinator: TestClient  # type: ignore[type-arg]
    root: Path


@asynccontextmanager
async def start_network(root: Path, **settings: Any) -> AsyncIterator[Network]:
    """A coordinator and the us-east-1 POP, talking over real loopback HTTP."""
    config = to_config(config_data(root, **settings), root)
    async with (
        TestClient(TestServer(make_coordinator_app(config), host="127.0.0.1",
                              port=config.coordinator.listen.port)) as coordinator,
        TestClient(TestServer(make_edge_app(config, config.pops[0]), host="127.0.0.1",
                              port=config.pops[0].listen.port)) as pop,
    ):
        yield Network(config, pop, coordinator, root)


async def shipped(network: Network, timeout: float = 10.0) -> None:
    """Wait until the coordinator has applied every fact the POP journaled so far.

    A POP acknowledges a store or an upload step without asking the coordinator, which
    hears of it a moment later (edge/journal/shipper.py): a test that looks at the
    coordinator right after a POP answered waits for this first, never for a time."""
    await network.pop.app[SHIPPER].flush(timeout)


async def wait_complete(network: Network, handle: str, timeout: float = 30.0
                        ) -> dict[str, Any]:
    """The file's metadata at the coordinator once it is Complete, or as it stands when
    `timeout` runs out (the caller's assertion then says what it is instead)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await network.coordinator.get(f"/api/file/{handle}/metadata")
        metadata: dict[str, Any] = await response.json()
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return metadata
        await asyncio.sleep(0.05)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of one HTTP/1.1 answer read off a raw connection (tests
    that send requests by hand, to stall or cut them where a client library would not)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, json.loads(await reader.readexactly(length))


def local_object_keys(objects: Path) -> list[str]:
    """The key of every object in a local-disk container's `objects` folder, read from
    the bucket itself: the metadata on each object file, or its sidecar."""
    keys = []
    for path in sorted(objects.glob("*")):
        if path.name.startswith(".") or path.name.endswith(".meta"):
            continue  # temp files; sidecars are read through their object
        meta = read_tag(path)
        if meta is None:
            sidecar = path.with_name(path.name + ".meta")
            if not sidecar.exists():
                continue  # a data file with no metadata is no object
            meta = json.loads(sidecar.read_text())
        keys.append(str(meta["key"]))
    return keys
