"""`/openapi.json` is true: schemathesis sends generated requests to every operation a live
POP and a live coordinator describe (real processes), and every answer must be a
documented status with a body that matches its schema, and never a 5xx.

Requests carry the test app's apikey (and a real handle, upload id and a loopback URL to
fetch) half the time, so that they get past authentication and reach the handlers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import APIKEY, APP_SECRET, CinProcess, config_data, write_config

from common.protocol.security import encode_policy, sign_policy

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance, response_headers_conformance]
EXAMPLES_PER_OPERATION = 25


class Network:
    """A coordinator and one POP, each its own `cin` process, with one stored file and one
    started upload for requests to name."""

    def __init__(self, root: Path) -> None:
        self.data = config_data(root)
        config = write_config(self.data, root / "cin.yaml")
        self.coordinator_url = str(self.data["coordinator"]["public_url"])
        self.pop_url = str(self.data["pops"][0]["public_url"])
        self.processes = [CinProcess(["coordinator", "-c", str(config)], root).wait_ready()]
        self.processes.append(CinProcess(
            ["edge", "-c", str(config), "--pop", self.data["pops"][0]["name"]],
            root).wait_ready())
        self.handle = self.store()
        start = {"apikey": APIKEY, "filename": "b.bin", "size": 10}
        self.upload_id = post(f"{self.pop_url}/multipart/start", json.dumps(start).encode(),
                              "application/json")["upload_id"]
        part = {"apikey": APIKEY, "upload_id": self.upload_id, "part": 1, "size": 10}
        url = post(f"{self.pop_url}/multipart/upload", json.dumps(part).encode(),
                   "application/json")["url"]
        self.part_query = dict(parse_qsl(urlsplit(url).query))

    def store(self) -> str:
        """The handle of a new file, once the coordinator has it (the POP ships its fact
        a moment after answering; until then the coordinator sends requests there)."""
        reply = post(f"{self.pop_url}/api/store/S3?key={APIKEY}&filename=a.txt",
                     b"some bytes", "application/octet-stream")
        handle = str(reply["handle"])
        deadline = time.monotonic() + 10
        while not recorded(f"{self.coordinator_url}/api/file/{handle}/metadata"):
            assert time.monotonic() < deadline, f"{handle} never reached the coordinator"
            time.sleep(0.05)
        return handle

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # the 302 itself is the answer


def recorded(url: str) -> bool:
    """The coordinator answers `url` itself, not with a redirect to a POP."""
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=10) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return False


def post(url: str, body: bytes, content_type: str) -> Any:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        return json.load(answer)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    started = Network(tmp_path_factory.mktemp("openapi"))
    yield started
    started.stop()


def known_values(case: Any, network: Network, use: bool, plain_query: bool) -> None:
    """Put the app's apikey, a signed policy, a real handle and upload id, and a loopback
    URL where the generated request has a place for them (`use`); with `plain_query`,
    the query is only the apikey and policy, so that no generated option is refused."""
    if isinstance(case.body, dict) and "url" in case.body:
        # Never let a generated URL reach past loopback.
        case.body["url"] = f"{network.coordinator_url}/api/file/{network.handle}"
    if isinstance(case.body, dict) and isinstance(case.body.get("sources"), list):
        # The Processing API's sources too: as many as were generated, all on loopback.
        case.body["sources"] = [f"{network.coordinator_url}/api/file/{network.handle}"
                                for _ in case.body["sources"]]
    if case.operation.path == "/multipart/part":
        # The query is signed: only the body is generated, or is the part's own 10 bytes.
        case.query = dict(network.part_query)
        if use:
            case.body = b"0123456789"
    if not use:
        return
    # An overwrite or a delete needs a policy even where the app's security is optional.
    text = encode_policy({"expiry": int(time.time()) + 3600})
    credentials = {"policy": text, "signature": sign_policy(APP_SECRET, text)}
    if any(parameter.name == "key" for parameter in case.operation.iter_parameters()):
        given = {} if plain_query else case.query or {}
        case.query = {**given, "key": APIKEY, **credentials}
    if case.path_parameters and "handle" in case.path_parameters:
        # A delete takes a file of its own, so that the others still find theirs.
        case.path_parameters["handle"] = (network.store() if case.method == "DELETE"
                                          else network.handle)
    if case.path_parameters and "apikey" in case.path_parameters:
        case.path_parameters["apikey"] = APIKEY
    if case.path_parameters and "provider" in case.path_parameters:
        case.path_parameters["provider"] = "S3"
    if isinstance(case.body, dict) and case.media_type == "application/json":
        if "apikey" in case.body:
            case.body.update(apikey=APIKEY, **credentials)
        if "upload_id" in case.body:
            case.body["upload_id"] = network.upload_id
        for task in case.body.get("tasks") or []:
            # A store task's location and container are the config's, not made up.
            if isinstance(task, dict) and isinstance(task.get("params"), dict) \
                    and task.get("name") == "store":
                task["params"].update(location="S3")
                task["params"].pop("container", None)


def check_every_operation(network: Network, base_url: str) -> dict[str, set[int]]:
    """Each operation's label, with the statuses it answered."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    answered: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the description itself is valid
        operation = result.ok()
        answered[operation.label] = check_operation(operation, network, base_url)
    return answered


def check_operation(operation: Any, network: Network, base_url: str) -> set[int]:
    statuses: set[int] = set()
    # Requests as described, and requests that break the description (wrong types,
    # missing fields): both must get a documented answer.
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    # Derandomized: the same requests every run, so that `make test` is repeatable.
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=cases, use_known=st.booleans(), plain_query=st.booleans())
    def check(case: Any, use_known: bool, plain_query: bool) -> None:
        known_values(case, network, use_known, plain_query)
        response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
        statuses.add(response.status_code)

    check()
    return statuses


def served_description(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as answer:  # noqa: S310
        description: dict[str, Any] = json.load(answer)
    return description


def reached_the_handlers(answered: dict[str, set[int]], labels: tuple[str, ...]) -> None:
    """The requests with the app's credentials got through: each of `labels` said 200."""
    assert all(200 in answered[label] for label in labels), answered


def test_pop_answers_as_its_description_says(network: Network) -> None:
    description = served_description(network.pop_url)
    assert description["openapi"] == "3.1.0"
    assert description["servers"] == [{"url": network.pop_url}]
    answered = check_every_operation(network, network.pop_url)
    reached_the_handlers(answered, (
        "POST /api/store/{provider}", "GET /api/file/{handle}", "POST /api/file/{handle}",
        "DELETE /api/file/{handle}", "GET /{handle}/metadata", "PUT /multipart/part",
        "POST /multipart/complete", "POST /process"))


def test_coordinator_answers_as_its_description_says(network: Network) -> None:
    description = served_description(network.coordinator_url)
    assert description["servers"] == [{"url": network.coordinator_url}]
    # Only the routes the coordinator serves: the bytes go to POPs.
    assert "/api/store/{provider}" not in description["paths"]
    assert "/process" not in description["paths"]
    assert "/multipart/upload" not in description["paths"]
    answered = check_every_operation(network, network.coordinator_url)
    reached_the_handlers(answered, (
        "GET /pops", "GET /api/file/{handle}", "POST /api/file/{handle}",
        "DELETE /api/file/{handle}", "POST /multipart/status"))
