"""How many wrong sign-ins to the operator's page an address may make
(coordinator/operator/sign_in_limit.py), on a clock the test moves."""

from __future__ import annotations

from coordinator.operator.sign_in_limit import SignInLimit, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(clock: Clock) -> SignInLimit:
    return SignInLimit(max_failures=3, window=60.0, clock=clock)


def test_an_address_is_refused_after_its_failures_until_the_oldest_is_a_window_old() -> None:
    clock = Clock()
    limit = limited(clock)
    for _ in range(3):
        assert limit.refused_for("a") is None
        limit.failed("a")
        clock.now += 10
    # Failures at 1000, 1010 and 1020; now 1030: the first leaves the window at 1060.
    assert limit.refused_for("a") == 30.0
    assert limit.refused_for("b") is None  # per address
    clock.now = 1060.0
    assert limit.refused_for("a") is None
    limit.failed("a")  # 1010, 1020, 1060: the window still holds three
    assert limit.refused_for("a") == 10.0


def test_a_right_credential_clears_the_count() -> None:
    clock = Clock()
    limit = limited(clock)
    limit.failed("a")
    limit.failed("a")
    limit.succeeded("a")
    limit.failed("a")
    limit.failed("a")
    assert limit.refused_for("a") is None


def test_memory_is_bounded_by_the_number_of_addresses() -> None:
    clock = Clock()
    limit = SignInLimit(max_failures=2, window=60.0, max_addresses=2, clock=clock)
    for address in ("a", "b"):
        limit.failed(address)
        limit.failed(address)
        clock.now += 1
    limit.failed("a")  # "a" is now the one failing last: "b" goes first
    limit.failed("c")
    assert len(limit._failures) == 2
    assert limit.refused_for("a") is not None
    assert limit.refused_for("b") is None


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.2) == "1"
    assert retry_after(29.1) == "30"
    assert retry_after(-1) == "1"
