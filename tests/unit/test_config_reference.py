"""docs/config.md is the generator's output, and documents every key the loader reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support import REPO

from cin.config_reference import documented_keys, render
from common.config import loader
from common.config.loader import parse_config


def test_the_committed_reference_is_what_the_schema_makes() -> None:
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/config.md is stale: run `python -m cin.config_reference > docs/config.md`")


def _generic(path: str) -> str:
    """A key path as the reference names it: list items as `[]`, the names of storage
    locations and apps as placeholders."""
    path = re.sub(r"\[\d+\]", "[]", path)
    path = re.sub(r"^storage\.[^.]+", "storage.<name>", path)
    return re.sub(r"^apps\.[^.]+", "apps.<apikey>", path)


@pytest.mark.parametrize("example", ["dev.yaml", "s3-example.yaml"])
def test_every_key_the_loader_reads_is_documented(
        example: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Every reader says which keys it knows (read, or looked at with a default) when it
    # checks for unknown ones: exactly the keys the loader accepts at that place.
    known: set[str] = set()
    original_done = loader._Reader.done

    def done(reader: loader._Reader) -> None:
        known.update(_generic(reader.key(name)) for name in reader.used)
        original_done(reader)

    monkeypatch.setattr(loader._Reader, "done", done)
    for variable in ("CIN_INTERNAL_SECRET", "CIN_APP_SECRET", "CIN_WEBHOOK_SECRET"):
        monkeypatch.setenv(variable, "a-secret-of-sixteen-or-more")
    data = yaml.safe_load((REPO / "configs" / example).read_text())
    parse_config(data, source=example, base=tmp_path)

    assert len(known) > 25  # the readers were seen
    assert known - documented_keys() == set()


def test_every_key_of_the_examples_is_documented() -> None:
    def paths(value: object, prefix: str) -> set[str]:
        found: set[str] = set()
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                found |= {_generic(path)} | paths(item, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                found |= paths(item, f"{prefix}[{index}]")
        return found

    keys: set[str] = set()
    for example in ("dev.yaml", "s3-example.yaml"):
        keys |= paths(yaml.safe_load((REPO / "configs" / example).read_text()), "")
    # Values that are lists of strings are not keys: `containers`, `networks`, `actions`.
    keys = {key for key in keys if not key.endswith("[]")}
    assert keys - documented_keys() == set()
    assert {"shutdown_timeout", "coordinator.sqlite_synchronous",
            "storage.<name>.addressing_style", "url_fetch.max_redirects",
            "timeouts.keep_alive", "apps.<apikey>.webhooks[].secret_env"} <= documented_keys()
