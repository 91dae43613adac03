"""Where the coordinator keeps its state: `coordinator.state` chooses the engine and its
database (the engines themselves are tested by tests/state)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, SECURE_APIKEY, config_data, to_config

from common.config import STATE_FILE
from coordinator.app import make_app


async def test_the_coordinator_keeps_its_state_in_the_database_the_config_names(
        tmp_path: Path) -> None:
    data = config_data(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "cin.db"
    data["coordinator"]["state"] = f"sqlite://{elsewhere}"
    config = to_config(data, tmp_path)
    async with TestClient(TestServer(make_app(config), host="127.0.0.1")) as coordinator:
        response = await coordinator.get("/health")
        assert response.status == 200, await response.text()
    with sqlite3.connect(f"file:{elsewhere}?mode=ro", uri=True) as db:
        apps = sorted(row[0] for row in db.execute("SELECT apikey FROM apps"))
    assert apps == sorted([APIKEY, SECURE_APIKEY])
    assert not (config.coordinator.state_dir / STATE_FILE).exists()
