"""The adaptive chunk-size controller at its edges, and the POP's suggestion."""

from __future__ import annotations

import pytest

from common.protocol.chunk_sizer import MIN_CHUNK, PART_SIZE, ChunkSizer, suggest_chunk_size

KiB, MiB = 1024, 1024**2


def test_a_failure_or_a_timeout_halves_the_size() -> None:
    sizer = ChunkSizer(initial=MiB)
    sizer.failed()
    assert sizer.size == 512 * KiB
    sizer.failed(timeout=True)
    assert sizer.size == 256 * KiB
    assert (sizer.stats.failures, sizer.stats.timeouts) == (2, 1)


def test_halving_stops_at_the_32_kib_floor() -> None:
    sizer = ChunkSizer(initial=PART_SIZE)
    for _ in range(8):  # 8 MiB → 32 KiB
        sizer.failed(timeout=True)
    assert sizer.size == MIN_CHUNK == 32 * KiB
    for _ in range(5):
        sizer.failed()
    assert sizer.size == MIN_CHUNK


def test_the_floor_holds_for_an_odd_size_too() -> None:
    sizer = ChunkSizer(initial=MIN_CHUNK + 1)  # aligned down to the floor
    assert sizer.size == MIN_CHUNK
    sizer.failed()
    assert sizer.size == MIN_CHUNK


def test_growth_after_a_run_of_fast_successes_and_not_before() -> None:
    sizer = ChunkSizer(initial=MiB, target_seconds=2.0, grow_after=3)
    fast = 0.1  # 10 MiB/s: far within the target
    sizer.succeeded(MiB, fast)
    sizer.succeeded(MiB, fast)
    assert sizer.size == MiB
    sizer.succeeded(MiB, fast)
    assert sizer.size == 2 * MiB  # at most doubled, though the target would carry more
    sizer.succeeded(2 * MiB, fast)
    assert sizer.size == 2 * MiB  # a new run starts after each growth


def test_a_failure_breaks_the_run() -> None:
    sizer = ChunkSizer(initial=MiB, grow_after=2)
    sizer.succeeded(MiB, 0.1)
    sizer.failed()
    sizer.succeeded(512 * KiB, 0.05)
    assert sizer.size == 512 * KiB
    sizer.succeeded(512 * KiB, 0.05)
    assert sizer.size == MiB


def test_growth_stops_at_the_maximum() -> None:
    sizer = ChunkSizer(initial=MiB, maximum=PART_SIZE, grow_after=1)
    for _ in range(20):
        sizer.succeeded(sizer.size, 0.001)
    assert sizer.size == PART_SIZE


def test_growth_is_aimed_at_the_target_duration() -> None:
    # 300 KiB/s and a 2 s target: 600 KiB, not the doubling to 1 MiB.
    sizer = ChunkSizer(initial=512 * KiB, target_seconds=2.0, grow_after=1)
    sizer.succeeded(300 * KiB, 1.0)
    assert sizer.size == 576 * KiB  # 600 KiB, aligned down to 32 KiB


def test_a_slow_success_shrinks_the_next_chunk_to_the_target() -> None:
    sizer = ChunkSizer(initial=4 * MiB, target_seconds=2.0)
    sizer.succeeded(4 * MiB, 16.0)  # 256 KiB/s: 16 s for a 2 s target
    assert sizer.size == 512 * KiB
    assert sizer.stats.throughput == pytest.approx(256 * KiB)


def test_the_estimate_is_smoothed() -> None:
    sizer = ChunkSizer(initial=MiB, target_seconds=1.0)
    sizer.succeeded(MiB, 4.0)  # 256 KiB/s
    sizer.succeeded(256 * KiB, 0.25)  # 1 MiB/s: a single fast chunk moves it halfway
    assert sizer.stats.throughput == pytest.approx((256 * KiB + MiB) / 2)


def test_a_pop_hint_sets_the_size_before_any_measurement() -> None:
    sizer = ChunkSizer(initial=MiB, target_seconds=2.0)
    sizer.hint(throughput=100 * KiB)
    assert sizer.size == 192 * KiB  # 200 KiB aligned down
    sizer.hint(throughput=10 * MiB)
    assert sizer.size == PART_SIZE


def test_a_pop_hint_does_not_override_what_the_client_measured() -> None:
    sizer = ChunkSizer(initial=MiB, target_seconds=2.0)
    sizer.succeeded(MiB, 0.5)
    sizer.hint(throughput=10 * KiB)
    assert sizer.size == MiB


def test_the_pops_suggestion_caps_growth_but_never_shrinks() -> None:
    sizer = ChunkSizer(initial=MiB, grow_after=1)
    sizer.hint(next_size=1536 * KiB)
    sizer.succeeded(MiB, 0.01)
    assert sizer.size == 1536 * KiB
    sizer.hint(next_size=64 * KiB)
    sizer.succeeded(1536 * KiB, 0.01)
    assert sizer.size == 1536 * KiB


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ChunkSizer(minimum=64 * KiB, maximum=32 * KiB)
    with pytest.raises(ValueError):
        ChunkSizer(target_seconds=0)
    with pytest.raises(ValueError):
        ChunkSizer(grow_after=0)


@pytest.mark.parametrize(("throughput", "expected"), [
    (0, MIN_CHUNK),
    (1, MIN_CHUNK),
    (16 * KiB, MIN_CHUNK),  # 32 KiB in 2 s: the floor exactly
    (16 * KiB + 1, MIN_CHUNK),
    (100 * KiB, 192 * KiB),
    (4 * MiB, PART_SIZE),
    (10**12, PART_SIZE),
])
def test_the_pops_suggestion(throughput: float, expected: int) -> None:
    assert suggest_chunk_size(throughput, target_seconds=2.0) == expected
