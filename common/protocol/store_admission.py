"""The checks a new file passes before a byte of it is read, wherever it arrives (a REST
store at a POP, an Upload API start at a POP or the coordinator): the app, its storage
location, the store options, then the credentials for storing there.

Pure: what a request named in, a decision (or a `CinError` saying why not) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.config import AppConfig, Config, StorageConfig
from common.protocol.locations import find_app, find_location
from common.protocol.security import Action, Credentials, Grant, authorize
from common.protocol.store_params import StoreParams


@dataclass(frozen=True)
class AdmittedStore:
    app: AppConfig
    location: StorageConfig
    params: StoreParams
    action: Action  # what was authorized, to check again as more becomes known (a URL)
    grant: Grant  # its limits (maxSize, minSize) apply to the bytes still to come


def admit_store(config: Config, *, apikey: str | None, provider: str | None,
                options: Mapping[str, str], creds: Credentials) -> AdmittedStore:
    """`options` are the store options as a REST store's query names them (`path`,
    `container`, `region`, `access`, `mimetype`, ...); `provider` None is the app's first
    location."""
    app = find_app(config, apikey)
    location = find_location(config, app, provider)
    params = StoreParams.from_query(options, location)
    action = Action.store(path=params.path, container=params.container)
    return AdmittedStore(app, location, params, action, authorize(app, creds, action))
