"""`cin storage-check`: try a storage location as the app will use it, and say in plain
words what works and what does not (the "test" button of a storage settings page).

What to try is the driver's own check (its row in `common.storage.drivers`); this module
only runs it. Backend failures never escape as exceptions: each becomes a failed
`CheckResult` whose detail is a sentence an operator can act on.
"""

from __future__ import annotations

from common.config import StorageConfig
from common.storage import StorageError
from common.storage.drivers import driver_of
from common.storage.location_check import PROBE_PREFIX, CheckResult

__all__ = ["PROBE_PREFIX", "CheckResult", "check_storage"]


async def check_storage(config: StorageConfig) -> list[CheckResult]:
    """Check every container of one storage location; never raises for backend failures."""
    try:
        return await driver_of(config).check(config)
    except StorageError as exc:
        return [CheckResult("storage", False, exc.detail)]
    except OSError as exc:
        return [CheckResult("storage", False, f"the check failed: {exc}")]
