"""Fixtures: an in-process network (coordinator + POP as aiohttp apps on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import config_data, to_config

from common.config import Config
from coordinator.app import make_app as make_coordinator_app
from edge.app import make_app as make_edge_app


@dataclass
class Network:
    config: Config
    pop: TestClient  # type: ignore[type-arg]
    coordinator: TestClient  # type: ignore[type-arg]
    root: Path


@asynccontextmanager
async def start_network(root: Path, **settings: Any) -> AsyncIterator[Network]:
    """A coordinator and the us-east-1 POP, talking over real loopback HTTP."""
    config = to_config(config_data(root, **settings), root)
    async with (
        TestClient(TestServer(make_coordinator_app(config), host="127.0.0.1",
                              port=config.coordinator.listen.port)) as coordinator,
        TestClient(TestServer(make_edge_app(config, config.pops[0]), host="127.0.0.1",
                              port=config.pops[0].listen.port)) as pop,
    ):
        yield Network(config, pop, coordinator, root)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path) as started:
        yield started
