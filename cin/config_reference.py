"""docs/config.md, the config reference, made from the config schema itself.

Every setting's meaning lives beside its field (`doc(...)` metadata in
common/config/schema.py, and in common/storage/drivers.py for each driver's own keys), so
the reference cannot drift from what the loader reads: `python -m cin.config_reference >
docs/config.md` (or `cin config-reference`) writes it, and tests/unit/test_config_reference.py
checks the committed file is its output and that every key the loader accepts is in it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from common.config.schema import (
    AppConfig,
    Config,
    CoordinatorConfig,
    CorsConfig,
    EventShippingConfig,
    HandleLeaseConfig,
    HeartbeatConfig,
    MetricsConfig,
    OperatorConfig,
    PopConfig,
    PostgresStateConfig,
    SqliteStateConfig,
    StorageConfig,
    TimeoutsConfig,
    TlsConfig,
    UploadExpiryConfig,
    UrlFetchConfig,
    WebhookConfig,
    WebhookDeliveryConfig,
)
from common.storage.drivers import DRIVERS


@dataclass(frozen=True)
class Section:
    """One table of the reference: the keys of `prefix` that `schemas`' fields document."""

    prefix: str  # "" for the top level; `pops[]` for every item of a list
    title: str
    schemas: tuple[type[Any], ...]
    note: str = ""


def _driver_sections() -> list[Section]:
    sections = []
    for name, driver in DRIVERS.items():
        # A row's `read_settings` is the `read` classmethod of its settings dataclass.
        settings = getattr(driver.read_settings, "__self__", None)
        if not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
            raise TypeError(f"driver {name!r}: read_settings is not a settings "
                            "dataclass's classmethod, so its keys cannot be documented")
        sections.append(Section("storage.<name>", f"`storage.<name>.*` with `driver: {name}`",
                                (settings,)))
    return sections


def sections() -> list[Section]:
    return [
        Section("", "Top level", (Config,),
                "The sections below (`coordinator`, `pops`, `storage`, `apps`, ...) are "
                "top-level keys too; `coordinator`, `pops`, `storage` and `apps` are "
                "required."),
        Section("coordinator", "`coordinator.*`", (CoordinatorConfig, SqliteStateConfig,
                                                        PostgresStateConfig)),
        Section("pops[]", "`pops[].*`: one item per POP", (PopConfig,)),
        Section("pops[].tls", "`pops[].tls.*`", (TlsConfig,)),
        Section("coordinator.metrics", "`coordinator.metrics.*`: the coordinator's "
                "`/metrics`", (MetricsConfig,)),
        Section("coordinator.operator", "`coordinator.operator.*`: the operator's page "
                "(`/operator`)", (OperatorConfig,),
                "A browser signs in with HTTP basic auth (README, \"The operator's page\")."),
        Section("pops[].metrics", "`pops[].metrics.*`: a POP's `/metrics`", (MetricsConfig,)),
        Section("storage.<name>", "`storage.<name>.*`: one entry per storage location",
                (StorageConfig,),
                "`<name>` is how apps refer to the location: lowercase letters, digits, "
                "`-`, `_`, `.`. Each driver reads its own keys, below; a key of another "
                "driver is an error."),
        *_driver_sections(),
        Section("apps.<apikey>", "`apps.<apikey>.*`: one entry per app", (AppConfig,),
                "`<apikey>` is the app's API key: 8 to 64 letters, digits, `-` or `_`."),
        Section("apps.<apikey>.webhooks[]", "`apps.<apikey>.webhooks[].*`",
                (WebhookConfig,)),
        Section("url_fetch", "`url_fetch.*`: storing from a URL", (UrlFetchConfig,)),
        Section("webhook_delivery", "`webhook_delivery.*`", (WebhookDeliveryConfig,)),
        Section("cors", "`cors.*`: browsers", (CorsConfig,)),
        Section("heartbeat", "`heartbeat.*`", (HeartbeatConfig,)),
        Section("handle_leases", "`handle_leases.*`: the handles each POP holds ahead",
                (HandleLeaseConfig,)),
        Section("event_shipping", "`event_shipping.*`: a POP's journal to the coordinator",
                (EventShippingConfig,)),
        Section("upload_expiry", "`upload_expiry.*`", (UploadExpiryConfig,)),
        Section("timeouts", "`timeouts.*`: clients that stall (every node)",
                (TimeoutsConfig,)),
    ]


@dataclass(frozen=True)
class Setting:
    key: str  # the full dotted path, e.g. `pops[].tls.cert`
    kind: str
    default: str
    meaning: str
    secret: bool


_KINDS = {"float": "number", "int": "whole number", "bool": "true or false",
          "str": "string", "Path": "path"}


def _kind(field: dataclasses.Field[Any]) -> str:
    annotation = str(field.type).removesuffix(" | None")
    return _KINDS.get(annotation, annotation)


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value == ():
        return "none"
    return str(value)


def settings(section: Section) -> Iterator[Setting]:
    for schema in section.schemas:
        for field in dataclasses.fields(schema):
            meta = field.metadata
            if "doc" not in meta:
                continue  # not read from the file (a name, a nested section)
            name = meta["key"] or field.name
            key = f"{section.prefix}.{name}" if section.prefix else name
            default = meta["default"] or _default(field)
            yield Setting(key, meta["kind"] or _kind(field), default, meta["doc"],
                          meta["secret"])


def documented_keys() -> set[str]:
    """Every key path the reference documents, `_env` forms of secrets included."""
    keys = set()
    for section in sections():
        if section.prefix:  # `pops[].tls` is a key, and so are `pops` and `storage`
            keys.add(section.prefix)
            keys.add(re.sub(r"(\[\]|\.<\w+>)$", "", section.prefix))
        for setting in settings(section):
            keys.add(setting.key)
            if setting.secret:
                keys.add(f"{setting.key}_env")
    return keys


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Made by `python -m cin.config_reference` from common/config/schema.py and",
        "     common/storage/drivers.py; tests/unit/test_config_reference.py keeps it so. -->",
        "",
        "A cin config is one YAML file, read by every command (`-c FILE`) and checked when "
        "it",
        "starts: an unknown key or a wrong value stops it with one line naming the file and",
        "the key, and exit status 2. `configs/dev.yaml` and `configs/s3-example.yaml` are",
        "commented examples. Relative paths are relative to the directory cin runs in.",
        "Sizes are bytes or a number with a unit (`5GiB`, `100MB`); durations are seconds.",
        "A key marked *secret* may instead be given as `KEY_env: VARIABLE`, the name of an",
        "environment variable holding it.",
    ]
    for section in sections():
        lines += ["", f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for s in settings(section):
            meaning = f"*secret*: {s.meaning}" if s.secret else s.meaning
            lines.append(f"| `{s.key}` | {_cell(s.kind)} | {_cell(s.default)} | "
                         f"{_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
