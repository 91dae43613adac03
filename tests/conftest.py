"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import Network, start_network


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path) as started:
        yield started
