"""Which POP a start hands out, decided without a server: the choice and the registry."""

from ipaddress import ip_address, ip_network
from pathlib import Path

import msgpack
import pytest

from common.config import HeartbeatConfig, Listen, PopConfig
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.pop_load import BACKLOG_UNIT, PopLoad
from coordinator.pop_choice import Candidate, Health, choose_pop, client_address, health
from coordinator.pop_registry import PopRegistry
from coordinator.state import HeardPop

UP, PENDING, DOWN, DRAINING = Health.UP, Health.PENDING, Health.DOWN, Health.DRAINING
FULL = Health.FULL


def pop(name: str, state: Health = UP, load: float = 0.0, *networks: str) -> Candidate:
    return Candidate(name, state, load, tuple(ip_network(n) for n in networks))


# ------------------------------------------------------------------------- health


@pytest.mark.parametrize(("last_heard", "draining", "now", "expected"), [
    (None, False, 100.0, PENDING),  # the coordinator started at 100: nothing heard yet
    (None, False, 114.9, PENDING),
    (None, False, 115.0, DOWN),  # a whole timeout without a word
    (110.0, False, 124.9, UP),
    (110.0, False, 125.0, DOWN),
    (110.0, True, 111.0, DRAINING),
    (110.0, True, 125.0, DOWN),  # a drained POP that went away is simply down
])
def test_health_from_the_last_heartbeat(last_heard: float | None, draining: bool, now: float,
                                        expected: Health) -> None:
    assert health(last_heard=last_heard, draining=draining, started=100.0, now=now,
                  timeout=15.0) is expected


@pytest.mark.parametrize(("draining", "now", "expected"), [
    (False, 111.0, FULL),
    (True, 111.0, DRAINING),  # leaving says more than full
    (False, 125.0, DOWN),  # a full POP that went away is simply down
])
def test_a_pop_that_says_its_disk_is_full_is_full(draining: bool, now: float,
                                                  expected: Health) -> None:
    assert health(last_heard=110.0, draining=draining, full=True, started=100.0, now=now,
                  timeout=15.0) is expected


# ------------------------------------------------------------------------- the choice


def test_the_pop_the_client_called_is_kept_whatever_its_health() -> None:
    pops = [pop("a", load=0), pop("b", DOWN, 9)]
    assert choose_pop(pops, asked="b") == "b"
    with pytest.raises(CinError) as caught:
        choose_pop(pops, asked="c")
    assert caught.value.code is Code.BAD_MESSAGE


def test_no_pop_that_may_be_handed_out_is_none() -> None:
    assert choose_pop([pop("a", DOWN), pop("b", DRAINING), pop("c", FULL)]) is None
    assert choose_pop([]) is None


def test_least_load_wins_and_ties_go_to_the_first_configured() -> None:
    assert choose_pop([pop("a", load=2), pop("b", load=1), pop("c", load=1)]) == "b"
    assert choose_pop([pop("a", load=0), pop("b", load=0)]) == "a"
    assert choose_pop([pop("a", DOWN, 0), pop("b", DRAINING, 0), pop("c", load=7)]) == "c"
    assert choose_pop([pop("a", FULL, 0), pop("b", load=7)]) == "b"


def test_pending_pops_are_used_only_while_none_has_been_heard() -> None:
    assert choose_pop([pop("a", PENDING), pop("b", load=5)]) == "b"
    assert choose_pop([pop("a", PENDING), pop("b", DOWN), pop("c", PENDING)]) == "a"


def test_the_most_specific_network_of_a_healthy_pop_wins() -> None:
    pops = [pop("wide", UP, 0, "10.0.0.0/8"), pop("narrow", UP, 5, "10.1.0.0/16"),
            pop("idle", UP, 0)]
    assert choose_pop(pops, client=ip_address("10.1.2.3")) == "narrow"
    assert choose_pop(pops, client=ip_address("10.2.0.1")) == "wide"
    assert choose_pop(pops, client=ip_address("192.0.2.1")) == "wide"  # least load, first
    assert choose_pop(pops, client=None) == "wide"


def test_a_network_mapped_to_an_unhealthy_pop_falls_through() -> None:
    narrow_down = [pop("wide", UP, 3, "10.0.0.0/8"), pop("narrow", DOWN, 0, "10.1.0.0/16"),
                   pop("idle", UP, 1)]
    assert choose_pop(narrow_down, client=ip_address("10.1.2.3")) == "wide"
    only_match_draining = [pop("mapped", DRAINING, 0, "10.0.0.0/8"), pop("b", UP, 4),
                           pop("c", UP, 2)]
    assert choose_pop(only_match_draining, client=ip_address("10.1.2.3")) == "c"


def test_ipv6_clients_match_ipv6_networks_only() -> None:
    pops = [pop("v4", UP, 0, "0.0.0.0/0"), pop("v6", UP, 9, "2001:db8::/32")]
    assert choose_pop(pops, client=ip_address("2001:db8::1")) == "v6"
    assert choose_pop(pops, client=ip_address("2001:db9::1")) == "v4"  # least load
    assert choose_pop(pops, client=ip_address("198.51.100.1")) == "v4"


@pytest.mark.parametrize(("remote", "expected"), [
    ("10.1.2.3", "10.1.2.3"),
    ("::ffff:10.1.2.3", "10.1.2.3"),  # an IPv4 client on a dual-stack socket
    ("2001:db8::1", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1%eth0"),
    (None, None),
    ("", None),
    ("not-an-address", None),
])
def test_client_address_from_the_peer(remote: str | None, expected: str | None) -> None:
    address = client_address(remote)
    assert (str(address) if address is not None else None) == expected


# ------------------------------------------------------------------------- the registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config_pops() -> list[PopConfig]:
    def make(name: str, *networks: str) -> PopConfig:
        return PopConfig(name=name, region=f"{name}-region", listen=Listen("127.0.0.1", 1),
                         public_url=f"https://{name}.test", spool_dir=Path("/unused"),
                         networks=tuple(ip_network(n) for n in networks))

    return [make("east"), make("west", "127.0.0.0/8")]


def beat(name: str, *, requests: int = 0, backlog: int = 0, draining: bool = False,
         instance: str = "one", disk_full: bool = False) -> wire.PopHeartbeat:
    return wire.PopHeartbeat(pop=name, instance=instance, requests=requests, transfers=0,
                             backlog_bytes=backlog, draining=draining, disk_full=disk_full)


def registry(clock: Clock) -> PopRegistry:
    return PopRegistry(config_pops(), HeartbeatConfig(interval=5.0, timeout=15.0), clock)


def test_a_fresh_coordinator_hands_out_configured_pops_until_the_timeout() -> None:
    clock = Clock()
    pops = registry(clock)
    assert [s.health for s in pops.status()] == [PENDING, PENDING]
    assert pops.choose(asked=None, client=None) == "east"
    clock.now += 15
    with pytest.raises(CinError) as caught:
        pops.choose(asked=None, client=None)
    assert caught.value.code is Code.POP_UNAVAILABLE
    assert caught.value.detail == "no POP is healthy (east down, west down)"


def test_heartbeats_make_a_pop_healthy_until_they_stop() -> None:
    clock = Clock()
    pops = registry(clock)
    pops.heard(beat("west", requests=3))
    assert pops.choose(asked=None, client=None) == "west"  # heard beats pending
    clock.now += 10
    pops.heard(beat("east"))
    clock.now += 5  # west: 15 s since its heartbeat
    east, west = pops.status()
    assert (east.health, west.health) == (UP, DOWN)
    assert (east.seconds_since_heartbeat, west.seconds_since_heartbeat) == (5, 15)
    assert pops.choose(asked=None, client="127.0.0.1") == "east"  # west's network, but down


def test_a_draining_pop_is_not_handed_out_and_a_restart_brings_it_back() -> None:
    clock = Clock()
    pops = registry(clock)
    pops.heard(beat("east", requests=50))
    pops.heard(beat("west"))
    pops.heard(beat("west", draining=True))
    assert pops.choose(asked=None, client=None) == "east"
    pops.heard(beat("west", instance="two"))
    assert pops.choose(asked=None, client=None) == "west"


def test_a_full_pop_is_not_handed_out_until_it_says_it_has_space_again() -> None:
    pops = registry(Clock())
    pops.heard(beat("east", requests=50))
    pops.heard(beat("west", disk_full=True))
    assert pops.choose(asked=None, client="127.0.0.1") == "east"  # west's network, but full
    shown = pops.status()[1].to_json()
    assert (shown["healthy"], shown["state"]) == (False, "full")
    assert [p.name for p in pops.by_preference()] == ["east", "west"]
    pops.heard(beat("east", disk_full=True))
    with pytest.raises(CinError) as caught:
        pops.choose(asked=None, client=None)
    assert caught.value.detail == "no POP is healthy (east full, west full)"
    pops.heard(beat("west"))
    assert pops.choose(asked=None, client=None) == "west"


def test_starts_handed_out_count_as_load_until_the_next_heartbeat() -> None:
    clock = Clock()
    pops = registry(clock)
    pops.heard(beat("east", backlog=BACKLOG_UNIT))  # load 1
    pops.heard(beat("west"))  # load 0
    chosen = [pops.choose(asked=None, client=None) for _ in range(4)]
    assert chosen == ["west", "east", "west", "east"]
    pops.heard(beat("west"))
    assert pops.status()[1].score == 0
    assert pops.choose(asked=None, client=None) == "west"


def test_load_is_requests_transfers_and_backlog() -> None:
    assert PopLoad(requests=2, transfers=3, backlog_bytes=BACKLOG_UNIT // 2).score == 5.5
    pops = registry(Clock())
    pops.heard(wire.PopHeartbeat(pop="east", instance="i", requests=1, transfers=2,
                                 backlog_bytes=3))
    shown = pops.status()[0].to_json()
    assert shown == {"name": "east", "region": "east-region", "url": "https://east.test",
                     "healthy": True, "state": "up", "load": 3.0,
                     "load_detail": {"requests": 1, "transfers": 2, "backlog_bytes": 3},
                     "seconds_since_heartbeat": 0.0}
    assert pops.status()[1].to_json()["load"] is None


@pytest.mark.parametrize("fields", [
    {"pop": "north"},
    {"pop": ["east"]},
    {"instance": ""},
    {"requests": -1},
    {"transfers": "many"},
    {"backlog_bytes": True},
    {"draining": "yes"},
    {"disk_full": 1},
])
def test_a_malformed_heartbeat_is_a_bad_message(fields: dict[str, object]) -> None:
    body = {"t": "pop_heartbeat", "v": wire.PROTOCOL_VERSION, "pop": "east", "instance": "i",
            "requests": 0, "transfers": 0, "backlog_bytes": 0, **fields}
    message = wire.decode(msgpack.packb(body))
    assert isinstance(message, wire.PopHeartbeat)
    with pytest.raises(CinError) as caught:
        registry(Clock()).heard(message)
    assert caught.value.code is Code.BAD_MESSAGE


def test_work_is_handed_to_healthy_pops_first_least_loaded_first() -> None:
    clock = Clock()
    pops = registry(clock)
    assert [p.name for p in pops.by_preference()] == ["east", "west"]  # none heard yet
    pops.heard(beat("east", requests=9))
    pops.heard(beat("west", requests=1))
    assert [p.name for p in pops.by_preference()] == ["west", "east"]
    pops.heard(beat("west", draining=True))
    assert [p.name for p in pops.by_preference()] == ["east", "west"]


def heard_elsewhere(name: str, *, age: float, requests: int = 0) -> HeardPop:
    """A heartbeat another coordinator on the state heard `age` seconds ago."""
    return HeardPop(pop=name, instance="one", load=PopLoad(requests, 0, 0), draining=False,
                    disk_full=False, age=age)


def test_heartbeats_another_coordinator_heard_count_once_newer() -> None:
    clock = Clock()
    pops = registry(clock)
    pops.learned(heard_elsewhere("west", age=2))  # never heard here: known at once
    east, west = pops.status()
    assert (east.health, west.health) == (PENDING, UP)
    assert west.seconds_since_heartbeat == 2
    pops.heard(beat("east"))
    assert [pops.choose(asked=None, client=None) for _ in range(2)] == ["east", "west"]
    # The heartbeat heard here, read back from the state: the start counted stays.
    pops.learned(heard_elsewhere("east", age=0.01))
    assert pops.status()[0].score == 1
    pops.learned(heard_elsewhere("east", age=30))  # older than what is known: ignored
    assert pops.status()[0].seconds_since_heartbeat == 0
    clock.now += 5
    pops.learned(heard_elsewhere("east", age=0, requests=4))  # the next one: it counts
    assert pops.status()[0].score == 4
    pops.learned(heard_elsewhere("north", age=0))  # not in this config: left out
    assert [s.pop.name for s in pops.status()] == ["east", "west"]
