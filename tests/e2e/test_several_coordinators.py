"""Two coordinators on one PostgreSQL, as real processes behind a load balancer
(tests/coordinator_balancer.py), with two TLS POPs.

cin's SDK (the `cin upload` command) and the unmodified filestack-python upload 20 files
while one coordinator is killed with -9 and started again: every upload of cin's SDK
completes (it is run again when it says it was interrupted, as it asks), a
filestack-python upload cut off mid-request may fail and is counted apart, every
completed file is Complete with its sha256, and every `fp.upload` webhook arrives, never
from both coordinators at the same moment. Then the expiry sweeps of both coordinators,
running at once against an S3 bucket 20 ms away, abort each abandoned bucket upload once
(each abort asked of the bucket is a log line, including one that finds it gone).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import filestack
import pytest
import requests
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from coordinator_balancer import CoordinatorBalancer
from filestack.exceptions import FilestackHTTPError
from impairment import Impairment, ImpairmentProxy
from support import APIKEY, CinProcess, config_data, free_port, write_config
from tls_network import create_buckets

from cin.usage import EXIT_RESUMABLE
from common.protocol.limits import MIN_PART_SIZE

pytestmark = pytest.mark.e2e

SMALL, LARGE = 150 * 1024, MIN_PART_SIZE + 300 * 1024  # one put; two parts
SIZES = [SMALL] * 8 + [LARGE] * 2  # for each client
SDK_RUNS = 6  # `cin upload` runs per file at most (the first and its resumptions)
WAIT = 40.0  # seconds for anything the test waits on
HOLD = 0.05  # seconds the receiver holds each delivery: overlapping ones would show


@dataclass
class Delivery:
    event_id: int
    action: str
    handle: str
    began: float
    ended: float


class Receiver:
    """A webhook receiver that notes when each delivery began and ended."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=free_port())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        began = time.monotonic()
        event = json.loads(await request.read())
        await asyncio.sleep(HOLD)
        self.deliveries.append(Delivery(event["id"], event["action"],
                                        event["text"]["handle"], began, time.monotonic()))
        return web.Response()

    def uploads_delivered(self) -> set[str]:
        return {d.handle for d in self.deliveries if d.action == "fp.upload"}

    def overlapping(self) -> list[int]:
        """Event ids two of whose deliveries were under way at the same moment."""
        by_event: dict[int, list[Delivery]] = {}
        for delivery in self.deliveries:
            by_event.setdefault(delivery.event_id, []).append(delivery)
        found = []
        for event_id, each in by_event.items():
            each.sort(key=lambda d: d.began)
            if any(later.began < earlier.ended for earlier, later in itertools.pairwise(each)):
                found.append(event_id)
        return found


@dataclass
class Deployment:
    root: Path
    balancer: CoordinatorBalancer
    configs: list[Path]
    coordinators: list[CinProcess]
    pops: list[str]  # https://127.0.0.1:port
    ca: Path
    env: dict[str, str]
    database: str
    restarted: list[CinProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.balancer.url

    def restart(self, index: int) -> None:
        self.restarted.append(self.coordinators[index])
        self.coordinators[index] = CinProcess(["coordinator", "-c", str(self.configs[index])],
                                              self.root, env=self.env).wait_ready()

    def output(self) -> str:
        return "\n".join(process.output for process in [*self.restarted, *self.coordinators])


@contextmanager
def two_coordinators(root: Path, database: str, hook: str, *,
                     s3_endpoint: str | None = None,
                     bucket: str = "cin-test") -> Iterator[Deployment]:
    """The deployment, its bucket on local disk or (`s3_endpoint` and `bucket` given) in
    S3."""
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(root / "pop.pem"))
    authority.cert_pem.write_to_path(str(root / "ca.pem"))
    env = dict(os.environ, SSL_CERT_FILE=str(root / "ca.pem"))
    data = config_data(root, state=database, webhooks=[hook],
                       heartbeat={"interval": 0.5, "timeout": 3.0},
                       webhook_delivery={"timeout": 2.0, "first_retry": 0.5},
                       upload_expiry={"sweep_interval": 1}, s3_endpoint=s3_endpoint,
                       bucket=bucket)
    balancer_port, ports = free_port(), [free_port(), free_port()]
    data["coordinator"]["public_url"] = f"http://127.0.0.1:{balancer_port}"
    for pop in data["pops"]:
        pop["public_url"] = pop["public_url"].replace("http://", "https://")
        pop["tls"] = {"cert": str(root / "pop.pem"), "key": str(root / "pop.pem")}
    configs = []
    for n, port in enumerate(ports):
        data["coordinator"]["listen"] = f"127.0.0.1:{port}"
        configs.append(write_config(data, root / f"coordinator-{n}.yaml"))
    with ExitStack() as stack:
        balancer = stack.enter_context(CoordinatorBalancer(balancer_port, ports))
        coordinators = []
        for config in configs:
            process = CinProcess(["coordinator", "-c", str(config)], root, env=env)
            stack.callback(process.stop)
            coordinators.append(process)
        for process in coordinators:
            process.wait_ready()
        for pop in data["pops"]:
            process = CinProcess(["edge", "-c", str(configs[0]), "--pop", pop["name"]], root,
                                 env=env)
            stack.callback(process.stop)
            process.wait_ready()
        deployment = Deployment(root, balancer, configs, coordinators,
                                [pop["public_url"] for pop in data["pops"]],
                                root / "ca.pem", env, database)
        try:
            yield deployment
        finally:
            for process in deployment.coordinators:  # a coordinator started again, too
                process.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    await hooks.server.start_server()
    yield hooks
    await hooks.server.close()


async def every_pop_healthy(deployment: Deployment, session: aiohttp.ClientSession) -> None:
    give_up = time.monotonic() + WAIT
    while True:
        async with session.get(f"{deployment.url}/pops") as response:
            pops = (await response.json())["pops"]
        if all(pop["healthy"] for pop in pops):
            return
        assert time.monotonic() < give_up, pops
        await asyncio.sleep(0.1)


async def sdk_upload(deployment: Deployment, path: Path) -> dict[str, Any]:
    """`cin upload` of one file, run again while it says it was interrupted."""
    for run in range(1, SDK_RUNS + 1):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cin", "upload", "--url", deployment.url, "--apikey",
            APIKEY, "--state-dir", str(deployment.root / "sdk-state"), "--timeout", "10",
            "--json", str(path), env=deployment.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(process.communicate(), WAIT)
        reply: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        if process.returncode == 0:
            return {**reply, "runs": run}
        assert process.returncode == EXIT_RESUMABLE, reply
    raise AssertionError(f"{path.name}: still interrupted after {SDK_RUNS} runs: {reply}")


def filestack_upload(path: Path) -> str:
    """The unmodified filestack-python's upload; its handle."""
    return str(filestack.Client(APIKEY).upload(filepath=str(path)).handle)


async def complete_sha256(session: aiohttp.ClientSession, url: str, handle: str) -> str:
    give_up = time.monotonic() + WAIT
    while True:
        try:
            async with session.get(f"{url}/api/file/{handle}/metadata",
                                   params={"upload_status": "true",
                                           "sha256": "true"}) as response:
                metadata = await response.json()
            if metadata.get("upload_status") == "Complete":
                return str(metadata["sha256"])
        except aiohttp.ClientError:
            pass  # a connection the balancer had given the coordinator that was killed
        assert time.monotonic() < give_up, f"{handle} never Complete: {metadata}"
        await asyncio.sleep(0.1)


async def test_uploads_go_on_while_one_of_two_coordinators_is_killed(
        tmp_path: Path, postgres_database: str, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with two_coordinators(tmp_path, postgres_database, receiver.url) as deployment:
        # filestack-python starts at each POP in turn, trusting the test CA.
        starts = itertools.cycle(deployment.pops)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(deployment.ca))
        monkeypatch.setattr(filestack.CFG, "MULTIPART_START_URL",
                            property(lambda _: f"{next(starts)}/multipart/start"))
        files: dict[str, bytes] = {}
        for client, sizes in (("sdk", SIZES), ("fsp", SIZES)):
            for n, size in enumerate(sizes):
                files[f"{client}-{n}.bin"] = os.urandom(size)
        for name, payload in files.items():
            (tmp_path / name).write_bytes(payload)

        async with aiohttp.ClientSession() as session:
            await every_pop_healthy(deployment, session)
            sdk = [asyncio.create_task(sdk_upload(deployment, tmp_path / name))
                   for name in files if name.startswith("sdk")]
            fsp = [asyncio.create_task(asyncio.to_thread(filestack_upload, tmp_path / name))
                   for name in files if name.startswith("fsp")]
            # Killed once the first files are in, the others under way.
            give_up = time.monotonic() + WAIT
            while len(receiver.deliveries) < 3:
                assert time.monotonic() < give_up, "no upload got through"
                await asyncio.sleep(0.02)
            in_before_kill = len(receiver.uploads_delivered())
            deployment.coordinators[0].kill9()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(deployment.restart, 0)
            sdk_replies = await asyncio.wait_for(asyncio.gather(*sdk), WAIT)
            fsp_outcomes = await asyncio.wait_for(
                asyncio.gather(*fsp, return_exceptions=True), WAIT)

            completed = {reply["handle"]: files[Path(reply["file"]).name]
                         for reply in sdk_replies}
            cut_off = [outcome for outcome in fsp_outcomes if isinstance(outcome, BaseException)]
            completed.update({handle: files[f"fsp-{n}.bin"]
                              for n, handle in enumerate(fsp_outcomes)
                              if isinstance(handle, str)})
            for handle, payload in completed.items():
                assert await complete_sha256(session, deployment.url, handle) == \
                    hashlib.sha256(payload).hexdigest()

        give_up = time.monotonic() + WAIT
        while not set(completed) <= receiver.uploads_delivered():
            assert time.monotonic() < give_up, set(completed) - receiver.uploads_delivered()
            await asyncio.sleep(0.1)
        per_event = Counter(d.event_id for d in receiver.deliveries)
        resumed = sum(reply["runs"] > 1 for reply in sdk_replies)
        print(f"\nkilled with {in_before_kill}/20 files in; cin SDK: {len(sdk_replies)}/10 "
              f"uploads complete ({resumed} resumed); filestack-python: "
              f"{10 - len(cut_off)}/10 complete, {len(cut_off)} cut off mid-request "
              f"({[type(e).__name__ for e in cut_off]}); webhooks: {len(per_event)} events, "
              f"{sum(per_event.values())} deliveries, "
              f"{sum(1 for n in per_event.values() if n > 1)} delivered more than once; "
              f"connections per coordinator {dict(deployment.balancer.connections)}")
        assert len(sdk_replies) == 10
        # A call cut off fails with the HTTP error or broken connection it met (a POP
        # that could not reach a coordinator in time answers 503); nothing else.
        assert all(isinstance(error, requests.RequestException | FilestackHTTPError)
                   for error in cut_off), cut_off
        assert len(cut_off) <= 5, cut_off  # most complete: POPs retry what a kill cuts
        assert receiver.overlapping() == []
        # The killed coordinator was really taking work, and so was the other.
        assert all(n > 0 for n in deployment.balancer.connections.values())
        assert len(deployment.balancer.connections) == 2


ABANDONED = 60
# Every abort the sweeps asked of the bucket: the one that took, and any that found the
# bucket upload gone already (a second sweep of the same owed abort).
ABORTED = re.compile(r"upload (\S+) of \S+: bucket upload (?:already )?aborted")


async def test_expiry_sweeping_at_both_coordinators_aborts_each_upload_once(
        tmp_path: Path, postgres_database: str, receiver: Receiver, moto_url: str) -> None:
    # In S3 (moto) 20 ms away, as a bucket in another region is: a sweep of the aborts
    # takes seconds, and the other coordinator's timer fires while it runs.
    name = f"cin-{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(create_buckets, moto_url, name, f"{name}-other")
    far = ImpairmentProxy(int(moto_url.rsplit(":", 1)[1]), Impairment.link(latency=0.01))
    async with far:
        await sweeps_at_both_coordinators(tmp_path, postgres_database, receiver,
                                          s3_endpoint=far.url, bucket=name)


async def sweeps_at_both_coordinators(root: Path, database: str, receiver: Receiver, *,
                                      s3_endpoint: str, bucket: str) -> None:
    with two_coordinators(root, database, receiver.url, s3_endpoint=s3_endpoint,
                          bucket=bucket) as deployment:
        started = []
        async with aiohttp.ClientSession() as session:
            await every_pop_healthy(deployment, session)
            # Upload API uploads, each with a bucket upload open.
            for n in range(ABANDONED):
                async with session.post(f"{deployment.url}/multipart/start", json={
                        "apikey": APIKEY, "filename": f"left-{n}.bin", "size": LARGE,
                        "mimetype": "application/octet-stream",
                        "store": {"location": "s3"}}) as response:
                    reply = await response.json()
                    assert response.status == 200, reply
                started.append(reply["upload_id"])
        # A day passes: the uploads were abandoned. Both coordinators sweep every second.
        db = await asyncpg.connect(database)
        try:
            await db.execute("UPDATE files SET uploaded = uploaded - 86400 * 2")
            await db.execute("UPDATE uploads SET created = created - 86400 * 2")
            give_up = time.monotonic() + WAIT
            while await db.fetchval("SELECT count(*) FROM upload_aborts "
                                    "WHERE aborted IS NULL") or \
                    await db.fetchval("SELECT count(*) FROM upload_aborts") < len(started):
                assert time.monotonic() < give_up, "the sweeps did not abort every upload"
                await asyncio.sleep(0.1)
        finally:
            await db.close()
        await asyncio.sleep(2.5)  # two more sweeps at each: none aborts again
        aborts = Counter(ABORTED.findall(deployment.output()))
        assert aborts == Counter(started), deployment.output()[-3000:]
        aborted_at = [len(ABORTED.findall(p.output)) for p in deployment.coordinators]
        print(f"\n{len(aborts)} bucket uploads aborted, at most {max(aborts.values())} times "
              f"each; aborts by each coordinator: {aborted_at}")


def test_cin_dev_runs_two_coordinators_on_postgresql_behind_one_address(
        tmp_path: Path, postgres_database: str) -> None:
    data = config_data(tmp_path, state=postgres_database,
                       heartbeat={"interval": 0.5, "timeout": 3.0})
    config = write_config(data, tmp_path / "cin.yaml")
    dev = CinProcess(["dev", "-c", str(config), "--coordinators", "2"], tmp_path)
    try:
        dev.wait_ready()
        shown = [line for line in dev.lines if line.startswith("cin: coordinator")]
        public = data["coordinator"]["public_url"]
        assert len(shown) == 2 and all(line.endswith(f"at {public}") for line in shown)

        async def store_and_read() -> None:
            payload = os.urandom(20_000)
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{data['pops'][0]['public_url']}/api/store/S3",
                                        params={"key": APIKEY}, data=payload) as response:
                    reply = await response.json()
                    assert response.status == 200, reply
                assert await complete_sha256(session, public, reply["handle"]) == \
                    hashlib.sha256(payload).hexdigest()

        asyncio.run(store_and_read())
    finally:
        dev.stop()
    assert "Traceback" not in dev.output


def test_cin_dev_refuses_several_coordinators_on_sqlite(tmp_path: Path) -> None:
    config = write_config(config_data(tmp_path), tmp_path / "cin.yaml")
    dev = CinProcess(["dev", "-c", str(config), "--coordinators", "2"], tmp_path)
    assert dev.wait(30) == 2
    assert "share their state in PostgreSQL" in dev.output, dev.output
