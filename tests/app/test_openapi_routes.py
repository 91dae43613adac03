"""The OpenAPI description is a valid 3.1 document and describes exactly the public routes
each app registers: a route added without its description (or a described one removed)
fails here, before schemathesis ever runs (tests/e2e/test_openapi.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from support import config_data, to_config

from common.config import Config
from common.protocol.errors import Code
from common.protocol.naming import HANDLE_PATTERN
from common.web.file_routes import APIKEY_PATTERN
from common.web.openapi import Role, describe, error_schema
from coordinator.app import make_app as make_coordinator
from edge.app import make_app as make_pop

# Not part of the public description: the coordinator's RPCs, the description itself, the
# operators' Prometheus metrics (protected by the internal secret by default) and their
# page at the coordinator (a person's, behind its own sign-in), and the CDN
# forms with a security segment (a path parameter that may hold `/`, which OpenAPI cannot
# describe). Nor tus (`/files`): a protocol with its own specification, whose headers and
# statuses tests/app/test_tus_protocol.py checks as that specification states them.
UNDESCRIBED = ("/internal/", "/openapi.json", "/metrics", "/operator", "/files")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return to_config(config_data(tmp_path), tmp_path)


def registered(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        path = path.replace(f"{{handle:{HANDLE_PATTERN}}}", "{handle}")
        path = path.replace(f"{{apikey:{APIKEY_PATTERN}}}", "{apikey}")
        if (route.method in ("HEAD", "OPTIONS") or path.startswith(UNDESCRIBED)
                or "/security=" in path):
            continue
        routes.add((route.method, path))
    return routes


def described(role: Role, url: str) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in describe(role, url)["paths"].items()
            for method in item}


@pytest.mark.parametrize("role", ["pop", "coordinator"])
def test_description_is_valid_openapi_3_1(role: Role) -> None:
    description = describe(role, "https://cin.example")
    validate(description)
    assert description["openapi"] == "3.1.0"
    assert description["servers"] == [{"url": "https://cin.example"}]


def test_pop_describes_every_public_route(config: Config) -> None:
    pop = config.pops[0]
    app = make_pop(config, pop)
    assert registered(app) == described("pop", pop.public_url)
    assert ("POST", "/api/store/{provider}") in registered(app)


def test_coordinator_describes_only_its_routes(config: Config) -> None:
    app = make_coordinator(config)
    assert registered(app) == described("coordinator", config.coordinator.public_url)
    assert ("GET", "/pops") in registered(app)


def test_each_error_status_lists_the_codes_the_table_gives_it() -> None:
    assert error_schema(409)["properties"]["code"]["enum"] == ["conflict"]
    every = error_schema()["properties"]["code"]["enum"]
    assert every == [code.wire for code in Code]
    store = describe("pop", "https://cin.example")["paths"]["/api/store/{provider}"]["post"]
    answer = store["responses"]["403"]["content"]["application/json"]["schema"]
    assert "unknown_apikey" in answer["properties"]["code"]["enum"]
    assert set(answer["required"]) == {"error", "code"}
