"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from impaired_network import BAD_LINK, ImpairedPop, PopsApart, impaired_pop, pops_apart
from tls_network import TlsNetwork, tls_network

# One way. The far POP comes first in the config and in GET /pops, so that a client
# that takes the first POP listed is not taken for one that measured.
NEAR_AND_FAR = {"us-east-1": 0.120, "eu-west-1": 0.005}


@pytest.fixture(scope="module", params=["local", "s3"])
def tls_network_on_each_driver(request: pytest.FixtureRequest,
                               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNetwork]:
    """A coordinator and a TLS POP as real processes, storing to local disk, then to S3
    (a moto server). One network per test module and driver, shared by its tests: two
    processes take longer to start than most uploads take, and every upload gets a key
    and a handle of its own."""
    moto_url = request.getfixturevalue("moto_url") if request.param == "s3" else None
    with tls_network(tmp_path_factory.mktemp(request.param), moto_url=moto_url) as network:
        yield network


@pytest.fixture(scope="module")
def bad_link_pop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImpairedPop]:
    """A coordinator and a POP (local disk) that clients reach only across BAD_LINK:
    `.url` is the POP as they see it, `.link` the link's parameters. One per module;
    use `on_bad_link` in tests."""
    with impaired_pop(tmp_path_factory.mktemp("bad-link"), BAD_LINK) as pop:
        yield pop


@pytest.fixture
def on_bad_link(bad_link_pop: ImpairedPop) -> Iterator[ImpairedPop]:
    """`bad_link_pop` as each test should find it: the link as BAD_LINK says, no
    connection of an earlier test still on it, its counters at zero."""
    proxy = bad_link_pop.proxy
    proxy.reset_connections()
    proxy.impair(bad_link_pop.link.impairment())
    proxy.clear()
    yield bad_link_pop
    proxy.reset_connections()


@pytest.fixture
def near_and_far_pops(tmp_path: Path) -> Iterator[PopsApart]:
    """A coordinator and two POPs (local disk), us-east-1 behind 120 ms each way and
    eu-west-1 behind 5 ms; GET /pops lists them at their proxies, both healthy."""
    with pops_apart(tmp_path, NEAR_AND_FAR) as network:
        yield network
