"""`log_format: json` on real processes: one JSON object a line, and one request id
followed from the client through a POP to the coordinator.

A store is acknowledged by the POP alone (its fact reaches the coordinator later, in a
batch no request caused); a delete asks the coordinator, so its request id is followed
there."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, APP_SECRET, CinProcess, config_data, write_config

pytestmark = pytest.mark.e2e

BANNER = "cin: "  # the readiness lines, plain text on stdout in every format


def log_lines(process: CinProcess) -> list[dict[str, Any]]:
    """Every line the process wrote but its banner, each parsed as one JSON object."""
    return [json.loads(line) for line in process.lines if not line.startswith(BANNER)]


def store(pop_url: str, body: bytes, request_id: str) -> tuple[str, str]:
    """The request id the POP answered with, and the stored file's handle."""
    url = f"{pop_url}/api/store/S3?key={APIKEY}"  # http on loopback, as the config says
    request = urllib.request.Request(url, body, {"X-Request-Id": request_id})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200
        return str(response.headers["X-Request-Id"]), json.load(response)["handle"]


def delete(pop_url: str, handle: str, request_id: str) -> str:
    auth = "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310
        f"{pop_url}/api/file/{handle}?key={APIKEY}", method="DELETE",
        headers={"X-Request-Id": request_id, "Authorization": auth})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200
        return str(response.headers["X-Request-Id"])


def test_json_logs_carry_the_request_id_through_the_pop_and_the_coordinator(
        tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["log_format"] = "json"
    config = str(write_config(data, tmp_path / "cin.yaml"))
    coordinator = CinProcess(["coordinator", "-c", config], tmp_path)
    pop = None
    try:
        coordinator.wait_ready()
        pop = CinProcess(["edge", "-c", config, "--pop", "us-east-1"], tmp_path).wait_ready()
        pop_url = data["pops"][0]["public_url"]
        request_id, handle = store(pop_url, b"logged" * 1000, "abc123")
        assert request_id == "abc123"
        assert delete(pop_url, handle, "def456") == "def456"
    finally:
        if pop is not None:
            pop.stop()
        coordinator.stop()

    for process in (coordinator, pop):
        assert process is not None
        lines = log_lines(process)
        assert lines, process.output
        for line in lines:
            assert {"message", "level", "logger", "request_id", "time"} <= line.keys(), line
        # Lines no request caused say so.
        assert any(line["request_id"] is None and "listening on" in line["message"]
                   for line in lines)

    def of_request(process: CinProcess, logger: str,
                   request_id: str = "abc123") -> list[dict[str, Any]]:
        return [line for line in log_lines(process)
                if line["logger"] == logger and line["request_id"] == request_id]

    # Beyond the access log: the store's own line at the POP, and the coordinator's
    # lines for the RPCs the POP made for the delete.
    [stored] = of_request(pop, "cin.edge.store")
    assert stored["level"] == "INFO" and "stored: 6000 bytes" in stored["message"]
    assert of_request(pop, "cin.access")
    assert of_request(pop, "cin.access", "def456")
    coordinator_lines = [line["message"]
                         for line in of_request(coordinator, "cin.coordinator", "def456")]
    assert any(f"file {handle} deleted" in message for message in coordinator_lines)
    assert of_request(coordinator, "cin.access", "def456")  # the POP's RPCs for it
