"""What the coordinator knows of its POPs: their heartbeats, and so their health and load.

A POP registers with its first heartbeat and repeats it every `heartbeat.interval`; one it
has not heard from for `heartbeat.timeout` is down, and one that said it is draining, or
that its disk is full, is not handed out either (see `coordinator.pop_choice`).

The registry is this coordinator's view, in memory. Coordinators sharing one state learn
each other's heartbeats through it (coordinator/pop_sharing.py): a POP sends each of its
heartbeats to one coordinator, and every coordinator answers `/pops` and chooses a POP
from all of them, a moment later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.config import HeartbeatConfig, PopConfig
from common.protocol.errors import CinError, Code
from common.protocol.pop_load import PopLoad
from common.protocol.wire import PopHeartbeat
from coordinator.pop_choice import Candidate, Health, choose_pop, client_address, health
from coordinator.state import HeardPop

log = logging.getLogger("cin.coordinator.pops")


@dataclass
class _Heard:
    """The latest heartbeat of one POP."""

    instance: str
    load: PopLoad
    draining: bool
    at: float  # the coordinator's monotonic clock: POP clocks play no part
    disk_full: bool = False


@dataclass(frozen=True)
class PopStatus:
    pop: PopConfig
    health: Health
    load: PopLoad | None  # None: not heard from since the coordinator started
    assigned: int
    seconds_since_heartbeat: float | None

    @property
    def healthy(self) -> bool:
        return self.health is Health.UP

    @property
    def score(self) -> float:
        """The load the choice compares: uploads handed out since the POP last reported
        count as one each, so the starts between two heartbeats do not all go to the
        POP that was idlest at the first."""
        return (self.load.score if self.load is not None else 0.0) + self.assigned

    def to_json(self) -> dict[str, Any]:
        """A POP as `GET /pops` shows it."""
        since = self.seconds_since_heartbeat
        return {
            "name": self.pop.name,
            "region": self.pop.region,
            "url": self.pop.public_url,
            "healthy": self.healthy,
            "state": self.health.value,
            "load": round(self.score, 3) if self.load is not None else None,
            "load_detail": self.load.to_json() if self.load is not None else None,
            "seconds_since_heartbeat": round(since, 3) if since is not None else None,
        }


class PopRegistry:
    def __init__(self, pops: Sequence[PopConfig], heartbeat: HeartbeatConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pops = tuple(pops)
        self.heartbeat = heartbeat
        self._clock = clock
        self._started = clock()
        self._heard: dict[str, _Heard] = {}
        self._assigned: dict[str, int] = {}  # uploads handed out since the last heartbeat

    def heard(self, beat: PopHeartbeat) -> None:
        """Record a POP's heartbeat (its first registers it)."""
        _check(beat, {pop.name for pop in self.pops})
        now = self._clock()
        before = self._heard.get(beat.pop)
        load = PopLoad(beat.requests, beat.transfers, beat.backlog_bytes)
        self._heard[beat.pop] = _Heard(beat.instance, load, beat.draining, now,
                                       beat.disk_full)
        self._assigned[beat.pop] = 0  # the POP's own counts take over from here
        if before is None or before.instance != beat.instance:
            log.info("POP %s registered (instance %s)", beat.pop, beat.instance)
        elif now - before.at >= self.heartbeat.timeout:
            log.info("POP %s is back after %.0f s without a heartbeat", beat.pop,
                     now - before.at)
        if beat.draining and (before is None or not before.draining):
            log.info("POP %s is draining: no new uploads go to it", beat.pop)
        if beat.disk_full and (before is None or not before.disk_full):
            log.warning("POP %s says its disk is full: no new uploads go to it", beat.pop)
        elif before is not None and before.disk_full and not beat.disk_full:
            log.info("POP %s has disk space again", beat.pop)

    def learned(self, heard: HeardPop) -> None:
        """A heartbeat another coordinator heard (or this one, read back): kept when it
        is newer than the one known here. Nothing is logged: the coordinator that heard
        it did."""
        if heard.pop not in {pop.name for pop in self.pops}:
            return  # a POP of another config, during a rolling change of the POP list
        at = self._clock() - heard.age
        before = self._heard.get(heard.pop)
        # Two heartbeats of a POP are an interval apart; the one known here, read back,
        # is within a round trip of itself, and must not undo the starts counted since.
        if before is not None and at - before.at < self.heartbeat.interval / 2:
            return
        self._heard[heard.pop] = _Heard(heard.instance, heard.load, heard.draining, at,
                                        heard.disk_full)
        self._assigned[heard.pop] = 0

    def status(self) -> list[PopStatus]:
        """Every configured POP, in configuration order."""
        now = self._clock()
        result = []
        for pop in self.pops:
            heard = self._heard.get(pop.name)
            result.append(PopStatus(
                pop=pop,
                health=health(last_heard=heard.at if heard else None,
                              draining=heard.draining if heard else False,
                              full=heard.disk_full if heard else False,
                              started=self._started, now=now, timeout=self.heartbeat.timeout),
                load=heard.load if heard else None,
                assigned=self._assigned.get(pop.name, 0),
                seconds_since_heartbeat=now - heard.at if heard else None,
            ))
        return result

    def unavailable(self, pop: PopConfig) -> str | None:
        """Why `pop` cannot be sent a client now: down or draining; None while it is up,
        or not heard from yet since the coordinator started (not known to be down)."""
        status = next(s for s in self.status() if s.pop.name == pop.name)
        if status.health is Health.DOWN:
            since = status.seconds_since_heartbeat
            return ("down (no heartbeat since the coordinator started)" if since is None
                    else f"down (no heartbeat for {since:.0f} s)")
        if status.health is Health.DRAINING:
            return "shutting down"
        return None

    def by_preference(self) -> list[PopConfig]:
        """Every POP, the healthy ones first, least loaded first: where the coordinator
        hands work (an overwrite's bytes). The others follow, in case their heartbeats
        are what failed."""
        statuses = self.status()
        healthy = sorted((s for s in statuses if s.healthy), key=lambda s: s.score)
        return [s.pop for s in healthy] + [s.pop for s in statuses if not s.healthy]

    def choose(self, *, asked: str | None, client: str | None) -> str:
        """The POP a new upload's bytes go to (see `coordinator.pop_choice`): `asked` is
        the POP the client called, `client` its address as the coordinator saw it."""
        statuses = self.status()
        candidates = [Candidate(s.pop.name, s.health, s.score, s.pop.networks)
                      for s in statuses]
        chosen = choose_pop(candidates, asked=asked, client=client_address(client))
        if chosen is None:
            states = ", ".join(f"{s.pop.name} {s.health.value}" for s in statuses)
            raise CinError(Code.POP_UNAVAILABLE, f"no POP is healthy ({states})")
        self._assigned[chosen] = self._assigned.get(chosen, 0) + 1
        return chosen


def _check(beat: PopHeartbeat, names: set[str]) -> None:
    """Fields of the right types: msgpack carries whatever the sender put there."""
    if not isinstance(beat.pop, str) or beat.pop not in names:
        raise CinError(Code.BAD_MESSAGE, f"no POP named {str(beat.pop)[:64]!r} is configured")
    if not isinstance(beat.instance, str) or not beat.instance:
        raise CinError(Code.BAD_MESSAGE, "a heartbeat names the POP's instance")
    counts = (beat.requests, beat.transfers, beat.backlog_bytes)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise CinError(Code.BAD_MESSAGE, "a heartbeat's load is counts of zero or more")
    if not isinstance(beat.draining, bool):
        raise CinError(Code.BAD_MESSAGE, "draining is true or false")
    if not isinstance(beat.disk_full, bool):
        raise CinError(Code.BAD_MESSAGE, "disk_full is true or false")
