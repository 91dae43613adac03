"""The impairment proxy's decisions, without a socket: the token bucket's pace, which
connections a fault strikes and where, and in which order strikes come."""

import random
from typing import Any

import pytest
from impairment import (
    ConnectionFaults,
    Direction,
    Fault,
    Impairment,
    KiB,
    Kind,
    MiB,
    Shape,
    Strike,
    TokenBucket,
    plan_connection,
)

UP, DOWN = Direction.UP, Direction.DOWN

# ------------------------------------------------------------------- token bucket


def test_a_full_bucket_lets_its_burst_through_at_once_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(rate=MiB, burst=64 * KiB, now=0.0)
    assert bucket.reserve(64 * KiB, now=0.0) == 0.0
    assert bucket.reserve(64 * KiB, now=0.0) == pytest.approx(1 / 16)
    # Reservations queue behind each other: the next waits for both deficits.
    assert bucket.reserve(64 * KiB, now=0.0) == pytest.approx(2 / 16)


def test_an_idle_bucket_refills_at_the_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=1000, burst=500, now=0.0)
    assert bucket.reserve(500, now=0.0) == 0.0
    assert bucket.reserve(200, now=0.1) == pytest.approx(0.1)  # 100 back, 100 short
    assert bucket.reserve(500, now=100.0) == 0.0  # idle a long time: full, no fuller
    assert bucket.reserve(1, now=100.0) == pytest.approx(0.001)


def test_a_reservation_larger_than_the_burst_waits_for_its_whole_deficit() -> None:
    bucket = TokenBucket(rate=1000, burst=100, now=0.0)
    assert bucket.reserve(1100, now=0.0) == pytest.approx(1.0)


def test_any_sequence_is_paced_to_at_most_rate_times_time_plus_burst() -> None:
    rng = random.Random(7)
    bucket = TokenBucket(rate=10_000, burst=1000, now=0.0)
    now, sent = 0.0, 0
    for _ in range(1000):
        size = rng.randint(1, 3000)
        now += bucket.reserve(size, now) + rng.choice([0.0, 0.0, rng.random() * 0.05])
        sent += size
        assert sent <= 10_000 * now + 1000 + 1e-6


# ------------------------------------------------------------------------ faults


@pytest.mark.parametrize("bad", [
    {"after": 1},  # neither every nor chance
    {"after": 1, "every": 2, "chance": 0.5},
    {"after": 1, "every": 0},
    {"after": 1, "chance": 1.5},
    {"after": -1, "every": 1},
    {"after": (10, 5), "every": 1},
    {"after": 1, "every": 1, "seconds": -1},
])
def test_a_fault_refuses_settings_that_mean_nothing(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault(**bad)


@pytest.mark.parametrize("bad", [{"latency": -0.1}, {"rate": 0}, {"burst": 0}])
def test_a_shape_refuses_settings_that_mean_nothing(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Shape(**bad)


def test_every_kth_connection_is_struck_at_the_byte_given() -> None:
    fault = Fault(after=1000, every=4)
    struck = {n: fault.strikes_at(n, random.Random(n)) for n in range(1, 13)}
    assert {n for n, at in struck.items() if at is not None} == {4, 8, 12}
    assert struck[8] == 1000


def test_a_fault_by_chance_is_repeatable_from_the_seed_and_as_frequent_as_asked() -> None:
    impairment = Impairment(reset=Fault(after=(10, 20), chance=0.25))
    plans = [plan_connection(impairment, n, seed=3) for n in range(1, 2001)]
    assert plans == [plan_connection(impairment, n, seed=3) for n in range(1, 2001)]
    assert plans != [plan_connection(impairment, n, seed=4) for n in range(1, 2001)]
    resets = [s for plan in plans for s in plan.strikes]
    assert 0.2 < len(resets) / len(plans) < 0.3
    assert all(s.kind is Kind.RESET and 10 <= s.at <= 20 for s in resets)
    assert len({s.at for s in resets}) > 5  # drawn, not fixed


def test_a_connection_plan_does_not_depend_on_the_order_connections_open() -> None:
    impairment = Impairment(stall=Fault(after=(0, 99), chance=0.5, seconds=1.0),
                            reset=Fault(after=(0, 99), chance=0.5))
    forward = {n: plan_connection(impairment, n, seed=1) for n in range(1, 50)}
    backward = {n: plan_connection(impairment, n, seed=1) for n in reversed(range(1, 50))}
    assert forward == backward


def test_a_plan_carries_the_faults_direction_and_the_stalls_length() -> None:
    impairment = Impairment(stall=Fault(after=5, every=1, seconds=2.5, direction=DOWN),
                            reset=Fault(after=7, every=1))
    assert plan_connection(impairment, 1, seed=0) == ConnectionFaults((
        Strike(Kind.STALL, 5, DOWN, 2.5), Strike(Kind.RESET, 7, UP, 0.0)))


def test_strikes_come_in_byte_order_and_a_stall_before_a_reset_at_the_same_byte() -> None:
    faults = ConnectionFaults((Strike(Kind.RESET, 10, UP), Strike(Kind.STALL, 10, UP, 1.0),
                               Strike(Kind.STALL, 3, DOWN, 1.0)))
    assert [(s.kind, s.at) for s in faults.in_direction(UP)] == [
        (Kind.STALL, 10), (Kind.RESET, 10)]
    assert [(s.kind, s.at) for s in faults.in_direction(DOWN)] == [(Kind.STALL, 3)]


def test_a_link_has_the_same_shape_both_ways() -> None:
    link = Impairment.link(latency=0.075, rate=2 * MiB)
    assert link.shape(UP) == link.shape(DOWN) == Shape(latency=0.075, rate=2 * MiB)
    assert Impairment().shape(UP) == Shape()
