"""`cin storage-check` for a local-disk location: the root folder exists (or can be
made) and is writable, then the probe in every container."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from common.config import StorageConfig
from common.storage._local import open_local
from common.storage._protocol import StorageError, StorageErrorKind
from common.storage.drivers import LocalSettings, settings_of
from common.storage.location_check import VERBS, CheckResult, containers, probe


def _explain(exc: StorageError, operation: str, container: str) -> str:
    verb = VERBS.get(operation, operation)
    if exc.kind is StorageErrorKind.NO_SUCH_CONTAINER:
        return (f"{container!r} cannot be a folder name:"
                " use lowercase letters, digits, '.', '_' and '-'")
    return f"cannot {verb} in {container!r}: {exc.detail}"


def _check_root(root: Path) -> CheckResult:
    if root.is_dir():
        return CheckResult("root folder", True, f"{root} exists")
    if root.exists():
        return CheckResult("root folder", False, f"{root} exists but is not a folder")
    try:
        root.mkdir(parents=True)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return CheckResult("root folder", False,
                           f"{root} does not exist and cannot be created: {reason}")
    return CheckResult("root folder", True, f"{root} did not exist and was created")


def _check_writable(root: Path) -> CheckResult:
    # Really write: os.access says yes to root even on a read-only mount.
    try:
        fd, name = tempfile.mkstemp(dir=root, prefix=".cin-storage-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return CheckResult("root writable", False, f"{root} is not writable: {reason}")
    return CheckResult("root writable", True, f"{root} is writable")


async def check_local(config: StorageConfig) -> list[CheckResult]:
    root = settings_of(config, LocalSettings).root
    results = [await asyncio.to_thread(_check_root, root)]
    if results[-1].ok:
        results.append(await asyncio.to_thread(_check_writable, root))
    if not results[-1].ok:
        return results
    async with open_local(config) as storage:
        for container in containers(config):
            results.extend(await probe(storage, container, _explain))
    return results
