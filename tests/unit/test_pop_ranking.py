"""The SDK's choice of a POP from its probes, and the cached choice's freshness (pure)."""

from __future__ import annotations

from pathlib import Path

from sdk.pops import PopCache, PopInfo, PopProbe, PopRanking, pops_to_probe, rank_pops

EAST = PopInfo("us-east-1", "http://127.0.0.1:1", healthy=True)
WEST = PopInfo("eu-west-1", "http://127.0.0.1:2", healthy=True)
SOUTH = PopInfo("sa-east-1", "http://127.0.0.1:3", healthy=False, state="down")


def test_only_healthy_pops_are_probed() -> None:
    assert pops_to_probe([EAST, SOUTH, WEST]) == [EAST, WEST]


def test_every_pop_is_probed_when_none_is_marked_healthy() -> None:
    pending = [PopInfo("a", "http://a", healthy=False, state="pending"), SOUTH]
    assert pops_to_probe(pending) == pending
    assert pops_to_probe([]) == []


def test_the_lowest_median_wins_not_the_lowest_sample() -> None:
    # East has one lucky probe, but its median is worse.
    east = PopProbe(EAST, (0.001, 0.050, 0.060))
    west = PopProbe(WEST, (0.020, 0.021, 0.019))
    assert [p.pop.name for p in rank_pops([east, west])] == ["eu-west-1", "us-east-1"]
    assert west.rtt == 0.020


def test_unanswered_probes_are_left_out_of_the_median() -> None:
    east = PopProbe(EAST, (None, 0.030, None))
    assert east.answered and east.rtt == 0.030
    west = PopProbe(WEST, (0.040, 0.040, 0.040))
    assert rank_pops([west, east])[0].pop is EAST


def test_a_pop_that_never_answered_is_not_ranked() -> None:
    silent = PopProbe(EAST, (None, None, None))
    assert not silent.answered and silent.rtt is None
    assert rank_pops([silent]) == []
    assert [p.pop for p in rank_pops([silent, PopProbe(WEST, (0.5,))])] == [WEST]


def test_a_tie_goes_to_the_pop_listed_first() -> None:
    probes = [PopProbe(WEST, (0.01, 0.01)), PopProbe(EAST, (0.01, 0.01))]
    assert [p.pop for p in rank_pops(probes)] == [WEST, EAST]


def test_a_ranking_is_fresh_for_its_ttl_only() -> None:
    ranking = PopRanking((EAST,), (0.01,), measured_at=1000.0)
    assert ranking.fresh(60, now=1000.0) and ranking.fresh(60, now=1059.9)
    assert not ranking.fresh(60, now=1060.0)
    assert not ranking.fresh(60, now=999.0)  # measured "in the future": the clock moved


def test_the_cache_keeps_one_ranking_per_coordinator(tmp_path: Path) -> None:
    cache = PopCache(tmp_path)
    first = PopRanking((EAST, WEST), (0.01, 0.02), measured_at=1000.0)
    cache.save("http://one", first)
    cache.save("http://two", PopRanking((WEST,), (0.03,), measured_at=1001.0))
    loaded = cache.load("http://one")
    assert loaded is not None
    assert [p.name for p in loaded.pops] == ["us-east-1", "eu-west-1"]
    assert loaded.rtts == (0.01, 0.02) and loaded.measured_at == 1000.0
    cache.save("http://one", None)
    assert cache.load("http://one") is None and cache.load("http://two") is not None


def test_a_damaged_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pops.json").write_text("{not json")
    assert PopCache(tmp_path).load("http://one") is None
    (tmp_path / "pops.json").write_text('{"http://one": {"pops": [{"name": 1}]}}')
    assert PopCache(tmp_path).load("http://one") is None
