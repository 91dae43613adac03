"""Fixtures for the StateStore suite: every test of tests/state/test_state_conformance.py runs
once per engine of tests/state_engines.py, each time on a database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from state_engines import ENGINES, Engine, engine_config

from coordinator.state import StateStore


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    return Engine(request.param, engine_config(request.param, request))


@pytest.fixture
async def store(engine: Engine) -> AsyncIterator[StateStore]:
    async with engine.open() as opened:
        yield opened
