"""cin's POPs as real processes behind impairment proxies: the ground that issue 5's
network proofs stand on.

* `impaired_pop`: a coordinator and one POP whose clients reach it only through a bad
  link (`Link`): the POP's public_url is the proxy, so the chunk URLs it hands out go
  through the link too. Proof (a) uploads across it.
* `pops_apart`: a coordinator and two POPs, each behind a proxy of its own latency,
  listed by `GET /pops` at their proxies' addresses. Proofs (b) and (c) choose between
  them, and kill one.

The coordinator and the POPs talk to each other directly: only clients are impaired.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from impairment import Fault, Impairment, ImpairmentProxy, KiB, MiB
from support import CinProcess, config_data, write_config
from upload_client import Retries

HEALTHY_WITHIN = 30.0  # seconds for started POPs to show healthy in GET /pops


@dataclass(frozen=True)
class Link:
    """A bad link between clients and a POP, and what a client on it is allowed."""

    rate: int  # bytes per second, each way
    latency: float  # seconds, one way
    reset_every: int  # 1 in this many connections is reset ...
    reset_after: tuple[int, int]  # ... once it has sent this many bytes up (drawn)
    retries: Retries  # a client's timeout per request, and its attempts per request
    seed: int = 0

    def impairment(self) -> Impairment:
        return Impairment.link(latency=self.latency, rate=self.rate,
                               reset=Fault(after=self.reset_after, every=self.reset_every))

    def goodput_share(self, size: int, seconds: float) -> float:
        """`size` payload bytes moved in `seconds`, as a share of the link's rate."""
        return size / seconds / self.rate


# Slow, lossy and far: 2 MiB/s, 150 ms round trip, every 4th connection reset within its
# first MiB up, 3 s per request and 3 attempts. An 8 MiB chunk needs 4 s on the wire
# alone, so no machine, however fast, gets one across; 256 KiB chunks need 0.125 s.
BAD_LINK = Link(rate=2 * MiB, latency=0.075, reset_every=4, reset_after=(64 * KiB, MiB),
                retries=Retries(timeout=3.0, attempts=3))


@dataclass(frozen=True)
class ImpairedPop:
    url: str  # the POP as its clients reach it: through the link
    coordinator: str
    link: Link
    proxy: ImpairmentProxy
    process: CinProcess


@contextmanager
def impaired_pop(root: Path, link: Link, **settings: Any) -> Iterator[ImpairedPop]:
    """A coordinator and the us-east-1 POP behind `link`; `settings` go to config_data
    (local disk unless they name S3)."""
    data = config_data(root, **settings)
    data["pops"] = data["pops"][:1]
    pop = data["pops"][0]
    with ExitStack() as stack:
        proxy = stack.enter_context(ImpairmentProxy(_port(pop["listen"]), seed=link.seed))
        pop["public_url"] = proxy.url
        config = write_config(data, root / "cin.yaml")
        _start(stack, ["coordinator", "-c", str(config)], root)
        process = _start(stack, ["edge", "-c", str(config), "--pop", pop["name"]], root)
        proxy.impair(link.impairment())  # not before: starting is not what is tested
        yield ImpairedPop(url=proxy.url, coordinator=str(data["coordinator"]["public_url"]),
                          link=link, proxy=proxy, process=process)


@dataclass(frozen=True)
class ProxiedPop:
    name: str
    url: str  # its proxy, as GET /pops lists it
    latency: float  # one way, through its proxy
    proxy: ImpairmentProxy
    process: CinProcess  # to kill it


@dataclass(frozen=True)
class PopsApart:
    coordinator: str
    pops: dict[str, ProxiedPop]  # by name, in the config's order
    config: Path

    def nearest(self) -> ProxiedPop:
        return min(self.pops.values(), key=lambda pop: pop.latency)


@contextmanager
def pops_apart(root: Path, latencies: dict[str, float], **settings: Any) -> Iterator[PopsApart]:
    """A coordinator and config_data's two POPs, each behind a proxy that adds its
    latency (one way) from `latencies`, by POP name; `settings` go to config_data.
    Yields once GET /pops shows both healthy."""
    data = config_data(root, **settings)
    assert set(latencies) == {pop["name"] for pop in data["pops"]}, latencies
    with ExitStack() as stack:
        proxies = {}
        for pop in data["pops"]:
            proxies[pop["name"]] = stack.enter_context(ImpairmentProxy(
                _port(pop["listen"]), Impairment.link(latency=latencies[pop["name"]])))
            pop["public_url"] = proxies[pop["name"]].url
        config = write_config(data, root / "cin.yaml")
        coordinator = str(data["coordinator"]["public_url"])
        _start(stack, ["coordinator", "-c", str(config)], root)
        pops = {pop["name"]: ProxiedPop(
            name=pop["name"], url=proxies[pop["name"]].url, latency=latencies[pop["name"]],
            proxy=proxies[pop["name"]],
            process=_start(stack, ["edge", "-c", str(config), "--pop", pop["name"]], root))
            for pop in data["pops"]}
        asyncio.run(_wait_healthy(coordinator, set(pops)))
        yield PopsApart(coordinator=coordinator, pops=pops, config=config)


async def health_round_trips(session: aiohttp.ClientSession, url: str,
                             probes: int = 5) -> list[float]:
    """Seconds each of `probes` `GET {url}/health` took, one after another."""
    trips = []
    for _ in range(probes):
        started = time.monotonic()
        async with session.get(f"{url}/health") as response:
            assert response.status == 200, await response.text()
            await response.read()
        trips.append(time.monotonic() - started)
    return trips


async def median_health_round_trip(url: str, probes: int = 5) -> float:
    async with aiohttp.ClientSession() as session:
        return statistics.median(await health_round_trips(session, url, probes))


async def stored_sha256(coordinator: str, handle: str, timeout: float = 60) -> str:
    """The file's sha256 as cin stores it, once it is Complete."""
    url = f"{coordinator}/api/file/{handle}/metadata"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url, params={"upload_status": "true"}) as response:
                status = (await response.json())["upload_status"]
            if status == "Complete" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert status == "Complete", status
        async with session.get(url, params={"sha256": "true"}) as response:
            return str((await response.json())["sha256"])


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _start(stack: ExitStack, args: list[str], root: Path) -> CinProcess:
    process = CinProcess(args, root)
    stack.callback(process.stop)
    return process.wait_ready()


async def _wait_healthy(coordinator: str, names: set[str]) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{coordinator}/pops") as response:
                listed = (await response.json())["pops"]
            if {pop["name"] for pop in listed if pop["healthy"]} >= names:
                return
            assert time.monotonic() < deadline, f"POPs not healthy: {listed}"
            await asyncio.sleep(0.05)
