"""What a POP keeps of each tus upload beside its bytes: one small JSON file per upload.

    <spool>/tus/state/<tus id>.json

Written whole to a temporary name, fsync'd and renamed over the old one (and the directory
fsync'd), so a crash leaves the old state or the new one, never half of either. The bytes
themselves are in a part spool (edge/multipart/part_spool.py): a cin upload's in the POP's
part spool under its upload id, where the transfer and In Transit downloads find them; a
partial upload's or one whose length is deferred in the tus spool beside this directory,
until they become a cin upload's.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from common.protocol.tus import Concat, valid_id
from common.threads import in_thread

_VERSION = 1


class TusKind(Enum):
    FILE = "file"  # a cin upload: its bytes go to the bucket as they arrive
    PARTIAL = "partial"  # a piece of a final upload (concatenation): kept at this POP
    DEFERRED = "deferred"  # no length yet: kept at this POP until it has one


class TusEnd(Enum):
    FINISHED = "finished"  # every byte is here and the file is In Transit or Complete
    TERMINATED = "terminated"


@dataclass(frozen=True)
class TusUpload:
    tus_id: str
    kind: TusKind
    length: int | None
    part_size: int
    metadata: dict[str, str | None]  # as HEAD gives it back
    created: float
    expires: float
    upload_id: str | None = None  # the cin upload's, once there is one
    handle: str | None = None  # its file's
    start: dict[str, Any] | None = None  # a deferred upload's checked start, without size
    tags: dict[str, str] = field(default_factory=dict)
    partials: tuple[str, ...] = ()  # a final upload's partial uploads
    # Parts from the first that another POP had stored when this one took the upload on
    # (a client that brought its URL here): this POP's bytes start after them.
    stored_prefix: int = 0
    ended: TusEnd | None = None

    @property
    def concat(self) -> Concat | None:
        if self.partials:
            return Concat(self.partials)
        return Concat() if self.kind is TusKind.PARTIAL else None

    @property
    def local(self) -> bool:
        """Its bytes are in the tus spool, not (yet) a cin upload's."""
        return self.kind is not TusKind.FILE

    def with_changes(self, **changes: Any) -> TusUpload:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kind=self.kind.value, ended=self.ended.value if self.ended else None,
                    partials=list(self.partials), version=_VERSION)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TusUpload:
        data = dict(data)
        data.pop("version", None)
        data["kind"] = TusKind(data["kind"])
        data["ended"] = TusEnd(data["ended"]) if data.get("ended") else None
        data["partials"] = tuple(data.get("partials") or ())
        return cls(**data)


class TusStates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def prepare(self) -> None:
        await in_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def get(self, tus_id: str) -> TusUpload | None:
        if not valid_id(tus_id):
            return None
        data = await in_thread(_read, self.directory / f"{tus_id}.json")
        return None if data is None else TusUpload.from_json(data)

    async def put(self, upload: TusUpload) -> None:
        await in_thread(_write, self.directory, upload.tus_id,
                        json.dumps(upload.to_json()).encode())

    async def remove(self, tus_id: str) -> None:
        if valid_id(tus_id):
            await in_thread((self.directory / f"{tus_id}.json").unlink, missing_ok=True)

    async def all(self) -> list[TusUpload]:
        def scan() -> list[TusUpload]:
            found = []
            for path in self.directory.glob("*.json"):
                data = _read(path)
                if data is not None:
                    found.append(TusUpload.from_json(data))
            return found

        return await in_thread(scan)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _write(directory: Path, tus_id: str, text: bytes) -> None:
    temporary = directory / f".{tus_id}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, directory / f"{tus_id}.json")
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
