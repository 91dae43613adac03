"""Where the local-disk driver keeps an object's metadata (key, content type, access).

In the object file itself, as an extended attribute (`user.cin.object`, JSON): it is
written on the temp file before its fsync, so that one fsync makes bytes and metadata
durable together and one rename commits both. No reader can see new bytes with old
metadata, since both live on one inode.

Objects written before this, and objects on a file system without user extended
attributes (the driver falls back to it there), keep their metadata in a JSON sidecar
beside the object (`{name}.meta`) instead. A reader asks the file first: an attribute on
it wins over any sidecar, so a sidecar a crash left behind beside a newer object is never
read.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

XATTR = "user.cin.object"

# The file system keeps no user attributes (or none this large): use a sidecar.
_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ERANGE, errno.E2BIG})


class CorruptMetadata(ValueError):
    """The metadata of an object cannot be read."""


def tag(fd: int, meta: dict[str, Any]) -> bool:
    """Attach `meta` to the open file; False if this file system cannot hold it (the
    caller then writes a sidecar)."""
    try:
        os.setxattr(fd, XATTR, json.dumps(meta, separators=(",", ":")).encode())
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True


def read_tag(fd_or_path: int | str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata attached to a file; None if it has none (a sidecar object)."""
    try:
        raw = os.getxattr(fd_or_path, XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA or exc.errno in _UNSUPPORTED:
            return None
        raise
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CorruptMetadata(str(exc)) from exc
    if not isinstance(meta, dict):
        raise CorruptMetadata("not an object")
    return meta
