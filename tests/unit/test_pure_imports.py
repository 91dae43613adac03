"""The protocol modules are pure: importing them loads no web server, no S3 SDK, no YAML;
and the SDK, whose HTTP client is aiohttp's, loads no S3 SDK and no YAML.

Each module is imported in a fresh interpreter, so one that pulls in aiohttp, botocore
or yaml (directly, or through a module it imports) is named here, not hidden by another
test having loaded them first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiohttp", "botocore", "aiobotocore", "yaml")


def _modules(package: str) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py"))
            if path.stem != "__init__"]


PURE = [
    *_modules("common.protocol"),
    "common.config",
    "common.config.schema",
    "common.streams",
    "common.storage",  # the protocol and the driver table; drivers load when opened
    "common.storage.drivers",
    "common.storage.location_check",
    # The part spool's decisions, apart from its IO.
    "edge.multipart.part_ledger",
    "edge.multipart.part_journal",
]


@pytest.mark.parametrize(("module", "heavy"), [
    *((module, HEAVY) for module in PURE),
    ("sdk", ("botocore", "aiobotocore", "yaml")),
])
def test_importing_loads_nothing_heavy(module: str, heavy: tuple[str, ...]) -> None:
    probe = (f"import sys, {module}\n"
             f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "", f"import {module} loaded {result.stdout.strip()}"


def test_the_list_covers_every_protocol_module() -> None:
    assert len(_modules("common.protocol")) >= 15
