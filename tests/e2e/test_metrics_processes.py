"""/metrics of real processes: `cin dev` runs a coordinator and two POPs in one process,
each with figures of its own; one POP's metrics on an address of their own, open."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from support import APIKEY, INTERNAL_SECRET, CinProcess, config_data, free_port, write_config

pytestmark = pytest.mark.e2e

BEARER = f"Authorization: Bearer {INTERNAL_SECRET}"


def curl(*args: str) -> tuple[int, str]:
    done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                          text=True, timeout=30, check=False)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


def test_cin_dev_serves_each_services_own_metrics(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    metrics_port = free_port()
    data["pops"][1]["metrics"] = {"auth": "none", "listen": f"127.0.0.1:{metrics_port}"}
    config = write_config(data, tmp_path / "cin.yaml")
    coordinator = data["coordinator"]["public_url"]
    east, west = (pop["public_url"] for pop in data["pops"])
    process = CinProcess(["dev", "-c", str(config)], tmp_path).wait_ready()
    try:
        status, _ = curl("-X", "POST", "--data-binary", "hello",
                         f"{east}/api/store/S3?key={APIKEY}")
        assert status == 200
        status, east_text = curl("-H", BEARER, f"{east}/metrics")
        assert status == 200
        assert ('cin_http_requests_total{method="POST",route="/api/store/{provider}",'
                'status="200"} 1.0') in east_text
        assert 'cin_stored_bytes_total{api="store"} 5.0' in east_text
        assert "cin_rpc_messages_total" not in east_text  # the coordinator's, not its own

        # The store's fact reaches the coordinator in the POP's next batch of events.
        shipped = 'cin_rpc_messages_total{outcome="ok",type="event_batch"}'
        deadline = time.monotonic() + 10
        while True:
            status, coordinator_text = curl("-H", BEARER, f"{coordinator}/metrics")
            assert status == 200
            if shipped in coordinator_text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert shipped in coordinator_text
        assert 'type="start_file"' not in coordinator_text  # a store asks no more
        assert "cin_spool_bytes" not in coordinator_text
        status, refused = curl(f"{coordinator}/metrics")
        assert status == 401 and '"not_authenticated"' in refused

        # eu-west-1's metrics are on their own address, without a secret; not on its own.
        assert curl("-H", BEARER, f"{west}/metrics")[0] == 404
        status, west_text = curl(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert "cin_spool_free_bytes" in west_text
        assert "/api/store/{provider}" not in west_text  # eu-west-1 took no store
    finally:
        assert process.stop() == 0, process.output
