"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tls_network import TlsNetwork, tls_network


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
