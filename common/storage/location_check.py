"""What checking a storage location reports, and the probe every driver's check ends with.

`cin storage-check` runs a driver's check (its row in `drivers.DRIVERS`) and prints the
results; each driver checks what only it knows (a root folder, credentials, a bucket's
region), then writes, reads back and deletes a small object through `Storage`, as an
upload and a download would.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from common.config import StorageConfig
from common.storage._protocol import Storage, StorageError, StorageErrorKind

PROBE_PREFIX = "cin-storage-check/"
VERBS = {"PutObject": "write", "GetObject": "read", "DeleteObject": "delete"}

# How a driver words a failed probe step: (error, operation, container) -> a sentence.
Explain = Callable[[StorageError, str, str], str]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # a sentence an operator can act on


def containers(config: StorageConfig) -> list[str]:
    """Every container of a location, the default first."""
    return list(dict.fromkeys((config.container, *config.containers)))


async def probe(storage: Storage, container: str, explain: Explain) -> list[CheckResult]:
    """Write, read back and delete a small object, as an upload and a download would."""
    key = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    payload = f"cin storage check {key}\n".encode()
    names = {op: f"{verb} {container!r}" for op, verb in VERBS.items()}

    async def body() -> AsyncIterator[bytes]:
        yield payload

    try:
        await storage.put(container, key, body(), content_type="text/plain")
    except StorageError as exc:
        return [CheckResult(names["PutObject"], False, explain(exc, "PutObject", container))]
    results = [CheckResult(names["PutObject"], True, f"stored {key} ({len(payload)} bytes)")]
    try:
        reader = await storage.get(container, key)
        try:
            data = b"".join([chunk async for chunk in reader.chunks()])
        finally:
            await reader.close()
        if data == payload:
            results.append(CheckResult(names["GetObject"], True,
                                       f"read {key} back: the content matches"))
        else:
            results.append(CheckResult(
                names["GetObject"], False,
                f"read {key} back but got {len(data)} bytes that differ from the"
                f" {len(payload)} written"))
    except StorageError as exc:
        results.append(CheckResult(names["GetObject"], False, explain(exc, "GetObject", container)))
    try:
        await storage.delete(container, key)
    except StorageError as exc:
        results.append(
            CheckResult(names["DeleteObject"], False, explain(exc, "DeleteObject", container)))
        return results
    results.append(await _confirm_gone(storage, container, key, names["DeleteObject"]))
    return results


async def _confirm_gone(storage: Storage, container: str, key: str, name: str) -> CheckResult:
    try:
        await storage.head(container, key)
    except StorageError as exc:
        if exc.kind is StorageErrorKind.NOT_FOUND:
            return CheckResult(name, True, f"deleted {key}")
        # Without list rights S3 answers 403 for a missing key: the delete itself worked.
        return CheckResult(name, True, f"deleted {key} (could not confirm: {exc.detail})")
    return CheckResult(name, False, f"deleted {key} but it is still there")
