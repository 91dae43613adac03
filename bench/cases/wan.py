"""The coordinator far from the POP: what the POP→coordinator link's round trip costs an
upload, measured with the coordinator next to the POP ("adjacent") and behind a latency
proxy (`--wan-rtt`, 80 ms round trip by default) on that link alone. The client talks
to the POP directly, as a client next to its POP does; the bucket is local disk.

One coordinator and two POPs run at once, alike but for the way each reaches the
coordinator (straight, or through bench/latency_proxy.py), so the two sides of every
figure are measured run after run in the same processes. Figures (each adjacent, then
far, and far as a ratio to adjacent):

- a 10 KiB REST store at the POP, one after another: p50, p90, p99 (targets: far ≤ 1.3x
  adjacent at the p50, ≤ 2x at the p99);
- `cin upload` of 48 MiB until it returns, In Transit (target: far ≤ 1.15x adjacent):
  the command itself, a new process as a user runs it, and the same upload through the
  SDK in this process, which leaves out the interpreter's ~0.5 s start;
- from a store's 200 until the coordinator's metadata shows the file Complete, asked
  of the coordinator directly every few ms (target: p99 < 1 s);
- 10 KiB stores from 50 concurrent clients: stores/s against the fsync'd ceiling of
  `bench small` measured in the same run, and the server CPU (POP and coordinator
  together) per store (target ≤ 1.5 ms);
- report only: the Upload API's server CPU per GB, start to `Complete` (8 MiB parts,
  four in flight), against the ceiling taking the same PUTs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import clients
from bench.cases import Context, Measured, cpu_per_gb, measure, throughput
from bench.closed_loop import Load, closed_loop
from bench.http import Connection
from bench.processes import (
    APIKEY,
    POP_NAME,
    REPO,
    CinNetwork,
    Process,
    ceiling,
    free_port,
    latency_proxy,
    started,
)
from bench.report import Figure, Summary, percentile, ratios
from sdk import AsyncClient

CASE = "wan"
FAR_POP = "bench-pop-far"
SIZE = 10 * 1024
STORE_TARGET = f"/api/store/S3?key={APIKEY}&filename=wan.bin"
UPLOAD_SIZE = 48 * 1024**2  # `cin upload`, as the issue measured it
UPLOADED = ("In Transit", "Complete")  # what an upload may return with
COMMAND_SECONDS = 300.0
UPLOAD_API_SIZE, QUICK_UPLOAD_API_SIZE = 256 * 1024**2, 48 * 1024**2
SEQUENTIAL, QUICK_SEQUENTIAL = 300, 60  # stores one after another, per run and link
SEQUENTIAL_SECONDS, QUICK_SEQUENTIAL_SECONDS = 90.0, 20.0  # ... or fewer, past this
VISIBILITY, QUICK_VISIBILITY = 100, 30  # stores watched until the coordinator shows them
VISIBLE_WITHIN = 10.0  # seconds a store may take to show; past it, counted late
POLL_SECONDS = 0.005  # between two metadata requests while a store is not shown yet
CLIENTS = 50
LOAD_SECONDS, QUICK_LOAD_SECONDS = 8.0, 1.5
LOAD_WARMUP = 1.0  # long enough for the POP to open its connections across the link
WARMUP_STORES = 5  # per run and link, not counted: connections, caches
HEALTHY_WITHIN = 30.0
_BODY = os.urandom(SIZE)
_HEADERS = {"Content-Type": "application/octet-stream"}


@dataclass
class WanNetwork(CinNetwork):
    """CinNetwork's coordinator and POP, and a second POP that reaches the coordinator
    at `far_coordinator_url` (the latency proxy) instead."""

    far_pop_port: int = field(default_factory=free_port)

    @property
    def far_pop_url(self) -> str:
        return f"http://127.0.0.1:{self.far_pop_port}"

    def config(self, coordinator_port: int | None = None) -> dict[str, Any]:
        data = super().config(coordinator_port)
        data["pops"].append({"name": FAR_POP, "listen": f"127.0.0.1:{self.far_pop_port}",
                             "public_url": self.far_pop_url,
                             "spool_dir": str(self.root / "spool-far")})
        return data

    def far_pop(self, far_coordinator_url: str) -> Process:
        data = self.config()
        data["coordinator"]["internal_url"] = far_coordinator_url
        config = self.root / "cin-far.yaml"
        self.root.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(data))
        return Process("pop-far", ["-m", "cin", "edge", "-c", str(config), "--pop", FAR_POP],
                       self.root / "pop-far.log", "cin: ready")


@dataclass(frozen=True)
class Side:
    """One POP and how far its coordinator is."""

    label: str  # "adjacent", "coordinator 80 ms away"
    pop_name: str
    url: str
    servers: tuple[Process, Process]  # the coordinator and this POP, whose CPU counts


@dataclass
class Samples:
    """One side's runs, each figure's list one entry per run."""

    sequential: list[list[float]] = field(default_factory=list)  # seconds, per store
    visible: list[list[float]] = field(default_factory=list)  # seconds, per store
    late: list[int] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    commands: list[Measured] = field(default_factory=list)  # `cin upload`
    uploads: list[Measured] = field(default_factory=list)  # the SDK in this process
    upload_api: list[Measured] = field(default_factory=list)


async def _store(connection: Connection) -> dict[str, Any]:
    reply: dict[str, Any] = (await connection.request(
        "POST", STORE_TARGET, _BODY, _HEADERS)).check().json()
    return reply


async def _sequential(url: str, count: int, seconds: float) -> list[float]:
    """`count` stores one after another on one connection (fewer past `seconds`): how
    long each took."""
    connection = Connection.to(url)
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    try:
        for _ in range(WARMUP_STORES):
            await _store(connection)
        while len(latencies) < count and time.monotonic() < stop_at:
            began = time.perf_counter()
            await _store(connection)
            latencies.append(time.perf_counter() - began)
    finally:
        await connection.close()
    return latencies


async def _shown(coordinator: Connection, handle: str, size: int) -> bool:
    """Whether the coordinator itself answers for the file, Complete at its size (not a
    redirect to the POP holding it, nor a not-yet)."""
    response = await coordinator.request(
        "GET", f"/api/file/{handle}/metadata?upload_status=true&size=true")
    if response.status != 200:
        return False
    fields = response.json()
    return bool(fields.get("upload_status") == "Complete" and fields.get("size") == size)


async def _visibility(url: str, coordinator_url: str, count: int) -> tuple[list[float], int]:
    """`count` stores, each followed by metadata requests to the coordinator until it
    shows the file: seconds from the store's 200 to the answer that showed it, and how
    many took longer than VISIBLE_WITHIN (counted at that bound)."""
    pop, coordinator = Connection.to(url), Connection.to(coordinator_url)
    delays: list[float] = []
    late = 0
    try:
        for _ in range(count):
            handle = (await _store(pop))["handle"]
            stored = time.perf_counter()
            while not await _shown(coordinator, handle, SIZE):
                if time.perf_counter() - stored > VISIBLE_WITHIN:
                    late += 1
                    break
                await asyncio.sleep(POLL_SECONDS)
            delays.append(min(time.perf_counter() - stored, VISIBLE_WITHIN))
    finally:
        await pop.close()
        await coordinator.close()
    return delays, late


async def _load(url: str, target: str, seconds: float, servers: Sequence[Process]) -> Load:
    async def send(connection: Connection, _: int) -> None:
        (await connection.request("POST", target, _BODY, _HEADERS)).check()

    return await closed_loop(url, CLIENTS, seconds, servers, send, warmup=LOAD_WARMUP)


async def _sdk_upload(coordinator_url: str, pop_name: str, path: Path) -> None:
    """What `cin upload --pop NAME FILE` does once it has started: a client, one upload,
    closed."""
    async with AsyncClient(coordinator_url, APIKEY, pop=pop_name,
                           keep_state=False) as client:
        result = await client.upload(path)
    if result.status not in UPLOADED:
        raise RuntimeError(f"the upload ended {result.status}")


async def _cin_upload(coordinator_url: str, pop_name: str, path: Path, state: Path) -> None:
    """`cin upload` itself, as a user runs it: a new process, until it exits."""
    command = subprocess.Popen(  # noqa: ASYNC220 - waited for in a thread below
        [sys.executable, "-m", "cin", "upload", "--url", coordinator_url, "--apikey", APIKEY,
         "--pop", pop_name, "--state-dir", str(state), "--json", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=path.parent,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))))
    try:
        out, err = await asyncio.to_thread(command.communicate, timeout=COMMAND_SECONDS)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait(5)
    if command.returncode != 0:
        raise RuntimeError(f"cin upload exited {command.returncode}: {err.decode()[-2000:]}")
    status = json.loads(out.decode().splitlines()[-1])["status"]
    if status not in UPLOADED:
        raise RuntimeError(f"cin upload ended {status}")


async def _upload_api(url: str, coordinator_url: str, size: int) -> None:
    reply = await clients.multipart_upload(url, size)
    await clients.wait_complete(coordinator_url, reply["handle"], limit=600)


async def _until_it_stores(url: str) -> None:
    """Until the POP answers a store 200: one just started may answer 503 for a moment
    (before its first heartbeat is heard, or its first handles are granted)."""
    connection = Connection.to(url)
    deadline = time.monotonic() + HEALTHY_WITHIN
    try:
        while True:
            response = await connection.request("POST", STORE_TARGET, _BODY, _HEADERS)
            if response.status != 503 or time.monotonic() > deadline:
                response.check()
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _wait_healthy(coordinator_url: str, names: set[str]) -> None:
    connection = Connection.to(coordinator_url)
    deadline = time.monotonic() + HEALTHY_WITHIN
    try:
        while True:
            listed = (await connection.request("GET", "/pops")).check().json()["pops"]
            if {pop["name"] for pop in listed if pop["healthy"]} >= names:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the POPs are not healthy: {listed}")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def run(ctx: Context) -> list[Figure]:
    return await ctx.on_each_loop(_on_loop)


async def _on_loop(ctx: Context, loop: str) -> list[Figure]:
    quick = ctx.quick
    runs = min(ctx.runs, 3)  # each run already holds hundreds of stores
    upload_api_size = QUICK_UPLOAD_API_SIZE if quick else UPLOAD_API_SIZE
    root = ctx.scratch(f"{CASE}-{loop}")
    source = root / "upload.bin"
    with source.open("wb") as out:
        for _ in range(UPLOAD_SIZE // 1024**2):
            out.write(os.urandom(1024**2))
    network = WanNetwork(root / "cin", event_loop=loop)
    far = f"coordinator {ctx.wan_rtt * 1000:.0f} ms away"
    proxy_process, proxy_url = latency_proxy(root, network.coordinator_port, ctx.wan_rtt)
    ceiling_process, ceiling_url = ceiling(root, loop)
    samples = {"adjacent": Samples(), far: Samples()}
    ceiling_loads: list[Load] = []
    ceiling_parts: list[Measured] = []
    with started(ceiling_process) as bare, started(proxy_process), \
            started(network.coordinator()) as coordinator, \
            started(network.pop()) as near_pop, \
            started(network.far_pop(proxy_url)) as far_pop:
        await _wait_healthy(network.coordinator_url, {POP_NAME, FAR_POP})
        sides = (Side("adjacent", POP_NAME, network.pop_url, (coordinator, near_pop)),
                 Side(far, FAR_POP, network.far_pop_url, (coordinator, far_pop)))
        for side in sides:
            await _until_it_stores(side.url)
        for _ in range(runs):
            for side in sides:
                samples[side.label].sequential.append(await _sequential(
                    side.url, QUICK_SEQUENTIAL if quick else SEQUENTIAL,
                    QUICK_SEQUENTIAL_SECONDS if quick else SEQUENTIAL_SECONDS))
            for side in sides:
                delays, late = await _visibility(side.url, network.coordinator_url,
                                                 QUICK_VISIBILITY if quick else VISIBILITY)
                samples[side.label].visible.append(delays)
                samples[side.label].late.append(late)
            seconds = QUICK_LOAD_SECONDS if quick else LOAD_SECONDS
            ceiling_loads.append(await _load(ceiling_url, "/store?fsync=1", seconds, [bare]))
            for side in sides:
                samples[side.label].loads.append(await _load(
                    side.url, STORE_TARGET, seconds, side.servers))
            for side in sides:
                samples[side.label].commands.append(await measure(functools.partial(
                    _cin_upload, network.coordinator_url, side.pop_name, source,
                    root / "cin-state"), side.servers))
            for side in sides:
                samples[side.label].uploads.append(await measure(functools.partial(
                    _sdk_upload, network.coordinator_url, side.pop_name, source),
                    side.servers))
            ceiling_parts.append(await measure(lambda: clients.ceiling_parts(
                ceiling_url, upload_api_size, fsync=True), [bare]))
            for side in sides:
                samples[side.label].upload_api.append(await measure(functools.partial(
                    _upload_api, side.url, network.coordinator_url, upload_api_size),
                    side.servers))
            if ctx.out_of_time():
                break
    return _figures(loop, samples["adjacent"], far, samples[far], ceiling_loads,
                    ceiling_parts, upload_api_size)


def _p(runs: Sequence[Sequence[float]], fraction: float) -> list[float]:
    """Each run's percentile, in ms."""
    return [percentile(run, fraction) * 1000 for run in runs]


def _figures(loop: str, near: Samples, far_label: str, far: Samples,
             ceiling_loads: list[Load], ceiling_parts: list[Measured],
             upload_api_size: int) -> list[Figure]:
    figures: list[Figure] = []
    stores = "REST store 10 KiB, one at a time"
    for label, side in (("adjacent", near), (far_label, far)):
        p50, p99 = _p(side.sequential, 0.50), _p(side.sequential, 0.99)
        extra = {"p90_ms": Summary.of(_p(side.sequential, 0.90)), "p99_ms": Summary.of(p99),
                 "stores": Summary.of(float(len(run)) for run in side.sequential)}
        if side is far:
            extra["p99_ratio"] = ratios(p99, _p(near.sequential, 0.99))
        figures.append(Figure(
            CASE, f"{stores}, {label}", loop, "ms p50", Summary.of(p50),
            ratio=ratios(p50, _p(near.sequential, 0.50)) if side is far else None,
            against=f"{stores}, adjacent" if side is far else None,
            target="p50 ≤ 1.3x, p99 ≤ 2x adjacent" if side is far else None, extra=extra))

    mib = UPLOAD_SIZE // 1024**2
    for upload, near_runs, far_runs in (
            (f"`cin upload` {mib} MiB (to In Transit)", near.commands, far.commands),
            (f"SDK upload {mib} MiB in process (to In Transit)", near.uploads, far.uploads)):
        adjacent = [run.seconds for run in near_runs]
        for label, runs in (("adjacent", near_runs), (far_label, far_runs)):
            seconds = [run.seconds for run in runs]
            far_side = runs is far_runs
            figures.append(Figure(
                CASE, f"{upload}, {label}", loop, "s", Summary.of(seconds),
                ratio=ratios(seconds, adjacent) if far_side else None,
                against=f"{upload}, adjacent" if far_side else None,
                target="≤ 1.15x adjacent" if far_side else None,
                extra={"server_cpu_s": Summary.of(run.server_cpu for run in runs)}))

    visible = "store 200 → coordinator metadata shows it"
    for label, side in (("adjacent", near), (far_label, far)):
        figures.append(Figure(
            CASE, f"{visible}, {label}", loop, "ms p50", Summary.of(_p(side.visible, 0.50)),
            target="p99 < 1 s",
            extra={"p99_ms": Summary.of(_p(side.visible, 0.99)),
                   "late": Summary.of(float(n) for n in side.late)}))

    ceiling_name = f"ceiling: 10 KiB POSTs, fsync, {CLIENTS} clients"
    ceiling_rates = [load.rate for load in ceiling_loads]
    figures.append(Figure(CASE, ceiling_name, loop, "req/s", Summary.of(ceiling_rates),
                          extra={"p50_ms": Summary.of(load.p50_ms for load in ceiling_loads),
                                 "p99_ms": Summary.of(load.p99_ms for load in ceiling_loads)}))
    many = f"REST store 10 KiB, {CLIENTS} clients"
    for label, side in (("adjacent", near), (far_label, far)):
        figures.append(Figure(
            CASE, f"{many}, {label}", loop, "stores/s",
            Summary.of(load.rate for load in side.loads),
            ratio=ratios([load.rate for load in side.loads], ceiling_rates),
            against=ceiling_name,
            extra={"p50_ms": Summary.of(load.p50_ms for load in side.loads),
                   "p99_ms": Summary.of(load.p99_ms for load in side.loads)}))
    for label, side in (("adjacent", near), (far_label, far)):
        figures.append(Figure(
            CASE, f"server CPU per store (POP + coordinator), {CLIENTS} clients, {label}",
            loop, "ms", Summary.of(load.server_cpu_ms for load in side.loads),
            target="≤ 1.5 ms",
            extra={"client_cpu_ms": Summary.of(load.client_cpu_ms for load in side.loads)}))

    mib = upload_api_size // 1024**2
    parts_name = f"ceiling: 8 MiB PUTs x4, {mib} MiB, fsync: CPU"
    parts_cpu = cpu_per_gb(upload_api_size, ceiling_parts)
    figures.append(Figure(CASE, parts_name, loop, "CPU-s/GB", parts_cpu,
                          extra={"mb_s": throughput(upload_api_size, ceiling_parts)}))
    for label, side in (("adjacent", near), (far_label, far)):
        cpu = cpu_per_gb(upload_api_size, side.upload_api)
        figures.append(Figure(
            CASE, f"Upload API {mib} MiB to Complete: server CPU, {label}", loop,
            "CPU-s/GB", cpu, ratio=ratios(cpu.runs, parts_cpu.runs), against=parts_name,
            target="report only",
            extra={"mb_s": throughput(upload_api_size, side.upload_api)}))
    return figures
