"""Which POP takes a new upload's bytes, decided from what the coordinator knows of each.

Pure: the POP registry gathers each POP's health and load, and these functions decide.

1. The POP the client called (a start at a POP names it): it is answering, so it takes the
   bytes.
2. Else a POP mapped to the client's network by config (`pops[].networks`), the most
   specific prefix first, among the POPs that may be handed out.
3. Else the one of those with the least load; ties go to the POP configured first.
4. None may be handed out: no POP (the caller answers 503 `pop_unavailable`).

Which POPs may be handed out: those heard from within the heartbeat timeout, and not
draining or full (short of disk space: it would refuse the bytes). A POP the
coordinator has not heard from since it started is not known to be bad, only not yet
known: such POPs are handed out only while no POP has been heard from at all, that is in
the first heartbeat interval after the coordinator starts, so a restarted coordinator keeps
answering starts while the heartbeats come in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from common.config import IpNetwork
from common.protocol.errors import CinError, Code

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Health(Enum):
    UP = "up"  # heard from within the timeout
    PENDING = "pending"  # not heard from since the coordinator started, a timeout ago at most
    DOWN = "down"  # heard from no more for the timeout, or never while a whole timeout passed
    DRAINING = "draining"  # said it is shutting down
    FULL = "full"  # said its disk is too full to take bytes


def health(*, last_heard: float | None, draining: bool, started: float, now: float,
           timeout: float, full: bool = False) -> Health:
    """A POP's health at `now`, from when it was last heard (None: never since the
    coordinator `started`) and whether it said it is draining, or full."""
    if last_heard is None:
        return Health.PENDING if now - started < timeout else Health.DOWN
    if now - last_heard >= timeout:
        return Health.DOWN
    if draining:
        return Health.DRAINING
    return Health.FULL if full else Health.UP


@dataclass(frozen=True)
class Candidate:
    name: str
    health: Health
    load: float  # PopLoad.score, plus the starts handed to it since its last heartbeat
    networks: tuple[IpNetwork, ...] = ()


def client_address(remote: str | None) -> IpAddress | None:
    """The client's IP address from aiohttp's `request.remote`; None when it is not one
    (a Unix socket). An IPv4 client on a dual-stack socket shows as `::ffff:a.b.c.d`: it
    is matched as the IPv4 address it is."""
    if not remote:
        return None
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def choose_pop(pops: Sequence[Candidate], *, asked: str | None = None,
               client: IpAddress | None = None) -> str | None:
    """The POP to hand out, in configuration order `pops`; None if no POP may be."""
    if asked is not None:
        if not any(pop.name == asked for pop in pops):
            raise CinError(Code.BAD_MESSAGE, f"no POP named {asked!r}")
        return asked
    usable = ([pop for pop in pops if pop.health is Health.UP]
              or [pop for pop in pops if pop.health is Health.PENDING])
    if not usable:
        return None
    mapped = _most_specific(usable, client)
    if mapped is not None:
        return mapped
    return min(usable, key=lambda pop: pop.load).name  # min keeps the first of equals


def _most_specific(pops: Sequence[Candidate], client: IpAddress | None) -> str | None:
    if client is None:
        return None
    # An address of one IP version is never in a network of the other: `in` is False.
    matches = [(network.prefixlen, pop.name) for pop in pops for network in pop.networks
               if client in network]
    if not matches:
        return None
    # Configuration forbids a prefix mapped twice, so the longest match is one POP.
    return max(matches, key=lambda match: match[0])[1]
