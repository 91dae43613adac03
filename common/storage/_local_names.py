"""How the local-disk driver names files: pure rules, no IO.

Keys become single, percent-encoded file names (hashed when too long), so no key can
reach outside its container's folder or collide with the driver's own files.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import quote

from common.storage._protocol import StorageError, StorageErrorKind
from common.storage._rules import check_key

MAX_NAME_LENGTH = 200
_CONTAINER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # what secrets.token_urlsafe(24) makes
META_SUFFIX = ".meta"


def object_name(key: str) -> str:
    """The file name of a key's object: its percent-encoding, or a hash when too long.

    `quote` leaves '.', '_', '-' and '~' as they are, so a few names are escaped further
    where they could be mistaken for the driver's own files: a leading '.' (temp files,
    and the keys '.' and '..'), a leading 'h_' (hashed names) and a trailing '.meta'
    (sidecars). `quote` never writes '%2E' or '%5F' itself, so no two keys share a name.
    """
    check_key(key)
    name = quote(key, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if name.startswith("h_"):
        name = "h%5F" + name[2:]
    if name.endswith(META_SUFFIX):
        name = name[: -len(META_SUFFIX)] + "%2Emeta"
    if len(name) > MAX_NAME_LENGTH:
        name = "h_" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return name


def check_container(container: str) -> None:
    if not _CONTAINER_RE.match(container):
        raise StorageError(
            StorageErrorKind.NO_SUCH_CONTAINER, f"{container!r} is not a valid container name"
        )


def is_upload_id(text: str) -> bool:
    return bool(_UPLOAD_ID_RE.match(text))


def check_upload_id(upload_id: str) -> None:
    # The id becomes a folder name: anything but our own ids could point elsewhere.
    if not _UPLOAD_ID_RE.match(upload_id):
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "no upload has this id")


def file_etag(st: os.stat_result) -> str:
    """An ETag that changes whenever the file is replaced, without reading its bytes."""
    token = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
    return hashlib.sha1(token, usedforsecurity=False).hexdigest()[:32]


def part_file_name(part_number: int) -> str:
    return f"part-{part_number:05d}"
