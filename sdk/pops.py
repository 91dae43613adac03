"""The nearest POP: the coordinator's list (`GET /pops`), round trips to each POP's
`/health`, and the choice kept for a while so that every upload does not measure again.

The choice is the POP with the lowest median round trip among those that answered,
measured from where this client runs; the rest of the ranking is where an upload moves
when its POP fails. It is cached in memory and in `pops.json` in the state directory
(one entry per coordinator URL), so a second `cin upload` reuses it, for `ttl` seconds.
Choosing from measurements is pure (`pops_to_probe`, `rank_pops`); the IO is in
`PopFinder`.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.errors import ApiError, CinClientError, NoPopAvailable
from sdk.state_files import read_json, write_json_atomically
from sdk.transport import Transport

log = logging.getLogger("cin.sdk.pops")

DEFAULT_TTL = 600.0  # seconds a measured choice is reused
DEFAULT_PROBES = 3
DEFAULT_PROBE_TIMEOUT = 3.0
CACHE_FILE = "pops.json"


@dataclass(frozen=True)
class PopInfo:
    """A POP as `GET /pops` lists it."""

    name: str
    url: str
    region: str = ""
    healthy: bool = True
    state: str = "up"
    load: float | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> PopInfo:
        try:
            load = item.get("load")
            return cls(name=str(item["name"]), url=str(item["url"]).rstrip("/"),
                       region=str(item.get("region") or ""),
                       healthy=bool(item.get("healthy", True)),
                       state=str(item.get("state") or ""),
                       load=float(load) if isinstance(load, int | float) else None)
        except KeyError as missing:
            raise CinClientError(f"GET /pops listed a POP without {missing}") from None


@dataclass(frozen=True)
class PopProbe:
    """A POP and the round trips (seconds) to its `/health`; None for a probe that got
    no answer."""

    pop: PopInfo
    samples: tuple[float | None, ...]

    @property
    def answered(self) -> bool:
        return any(sample is not None for sample in self.samples)

    @property
    def rtt(self) -> float | None:
        """The median of the probes that were answered."""
        answered = [sample for sample in self.samples if sample is not None]
        return statistics.median(answered) if answered else None


def pops_to_probe(pops: Sequence[PopInfo]) -> list[PopInfo]:
    """The healthy POPs; every POP when the coordinator marks none healthy (it may have
    just restarted and not heard their heartbeats yet, while they take bytes fine)."""
    healthy = [pop for pop in pops if pop.healthy]
    return healthy or list(pops)


def rank_pops(probes: Sequence[PopProbe]) -> list[PopProbe]:
    """The POPs that answered, nearest first (lowest median round trip; a tie goes to
    the one the coordinator lists first)."""
    order = {probe.pop.name: index for index, probe in enumerate(probes)}
    answered = [probe for probe in probes if probe.rtt is not None]
    return sorted(answered, key=lambda probe: (probe.rtt, order[probe.pop.name]))


@dataclass(frozen=True)
class PopRanking:
    """A measured choice: POPs nearest first, and when it was measured (unix time)."""

    pops: tuple[PopInfo, ...]
    rtts: tuple[float, ...]
    measured_at: float

    def fresh(self, ttl: float, now: float | None = None) -> bool:
        age = (time.time() if now is None else now) - self.measured_at
        return 0 <= age < ttl

    def to_json(self) -> dict[str, Any]:
        return {"measured_at": self.measured_at,
                "pops": [{"name": pop.name, "url": pop.url, "region": pop.region, "rtt": rtt}
                         for pop, rtt in zip(self.pops, self.rtts, strict=True)]}

    @classmethod
    def from_json(cls, value: Any) -> PopRanking | None:
        """A cached ranking, or None for one this version cannot read."""
        try:
            pops = tuple(PopInfo(name=str(p["name"]), url=str(p["url"]),
                                 region=str(p.get("region") or "")) for p in value["pops"])
            rtts = tuple(float(p["rtt"]) for p in value["pops"])
            return cls(pops, rtts, float(value["measured_at"])) if pops else None
        except (KeyError, TypeError, ValueError):
            return None


class PopCache:
    """Rankings by coordinator URL, in one small JSON file in the state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / CACHE_FILE

    def load(self, coordinator: str) -> PopRanking | None:
        entries = read_json(self.path)
        return PopRanking.from_json(entries.get(coordinator)) if entries else None

    def save(self, coordinator: str, ranking: PopRanking | None) -> None:
        entries = read_json(self.path) or {}
        if ranking is None:
            entries.pop(coordinator, None)
        else:
            entries[coordinator] = ranking.to_json()
        write_json_atomically(self.path, entries)


class PopFinder:
    """The POPs of one coordinator, measured from here."""

    def __init__(self, transport: Transport, coordinator: str, *,
                 cache: PopCache | None = None, ttl: float = DEFAULT_TTL,
                 probes: int = DEFAULT_PROBES,
                 probe_timeout: float = DEFAULT_PROBE_TIMEOUT) -> None:
        self.transport = transport
        self.coordinator = coordinator
        self.cache = cache
        self.ttl = ttl
        self.probes = probes
        self.probe_timeout = probe_timeout
        self._ranking: PopRanking | None = None

    async def listed(self) -> list[PopInfo]:
        """Every POP the coordinator lists (`GET /pops`)."""
        try:
            reply = await self.transport.json("GET", f"{self.coordinator}/pops")
        except ApiError as error:
            if error.status == 404:
                raise CinClientError(f"{self.coordinator} has no GET /pops: is it a cin "
                                     "coordinator's URL?") from error
            raise
        items = reply.get("pops")
        if not isinstance(items, list):
            raise CinClientError("GET /pops did not answer a list of POPs")
        return [PopInfo.from_json(item) for item in items if isinstance(item, dict)]

    async def probe(self, pops: Sequence[PopInfo]) -> list[PopProbe]:
        """Every POP's round trips, all POPs at once (each POP's probes one after the
        other, so they do not queue behind each other)."""
        return list(await asyncio.gather(*(self._probe(pop) for pop in pops)))

    async def _probe(self, pop: PopInfo) -> PopProbe:
        samples: list[float | None] = []
        for _ in range(self.probes):
            began = time.monotonic()
            try:
                await self.transport.json("GET", f"{pop.url}/health",
                                          time_limit=self.probe_timeout)
                samples.append(time.monotonic() - began)
            except CinClientError as error:
                log.debug("probe of %s failed: %s", pop.name, error)
                samples.append(None)
        return PopProbe(pop, tuple(samples))

    async def ranking(self, *, refresh: bool = False) -> PopRanking:
        """The POPs nearest first: remembered if measured within `ttl`, else measured."""
        if not refresh:
            cached = self._ranking
            if (cached is None or not cached.fresh(self.ttl)) and self.cache is not None:
                cached = await asyncio.to_thread(self.cache.load, self.coordinator)
            if cached is not None and cached.fresh(self.ttl):
                self._ranking = cached
                return cached
        pops = await self.listed()
        if not pops:
            raise NoPopAvailable(f"the coordinator at {self.coordinator} lists no POP")
        ranked = rank_pops(await self.probe(pops_to_probe(pops)))
        if not ranked:
            names = ", ".join(pop.name for pop in pops)
            raise NoPopAvailable(f"no POP answered on /health (tried {names})")
        ranking = PopRanking(tuple(p.pop for p in ranked),
                             tuple(p.rtt for p in ranked if p.rtt is not None), time.time())
        self._ranking = ranking
        if self.cache is not None:
            await asyncio.to_thread(self.cache.save, self.coordinator, ranking)
        return ranking

    async def forget(self) -> None:
        """Drop the choice (its POP failed): the next upload measures again."""
        self._ranking = None
        if self.cache is not None:
            await asyncio.to_thread(self.cache.save, self.coordinator, None)

    async def candidates(self, preferred: str = "auto") -> list[PopInfo]:
        """The POPs an upload tries, in order: the nearest (or the one named), then the
        others nearest first."""
        if preferred == "auto":
            return list((await self.ranking()).pops)
        listed = await self.listed()
        named = [pop for pop in listed if pop.name == preferred]
        if not named:
            have = ", ".join(pop.name for pop in listed) or "none"
            raise CinClientError(f"the coordinator lists no POP named {preferred!r} "
                                 f"(it lists: {have})")
        try:
            others = [pop for pop in (await self.ranking()).pops if pop.name != preferred]
        except NoPopAvailable:
            others = []
        return named + others
