"""A small file system of its own for a test, so that a disk runs full for real (ENOSPC).

A tmpfs of a few MiB mounted on a folder of the test's: mounting needs root (or
CAP_SYS_ADMIN), which `make test` has in CI (a fresh clone run as root); elsewhere the test
is skipped, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (such as "4m") mounted at `path` for the life of the block."""
    path.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("a full disk needs a small tmpfs, and there is no mount command here")
    mounted = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one is not permitted "
                    f"here (run as root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        # Lazily if something still has a file open there: the mount must not outlive us.
        if subprocess.run([umount, str(path)], capture_output=True, timeout=30).returncode:
            subprocess.run([umount, "-l", str(path)], check=True, timeout=30)
