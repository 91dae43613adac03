"""What an upload needs to carry on after it stopped: one small JSON file per upload.

The file is named after what the upload is (the coordinator, the app, the local file's
absolute path, where it is stored), and holds the upload's id, the POP it was sending
to and the part size it used. It also records the local file as it was (size, mtime and
a fingerprint of a few of its bytes): a file changed since is uploaded afresh, never
finished with a mix of old and new bytes. Which parts are stored or held is not kept
here: the coordinator and the POP know, and `POST /multipart/status` asks them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdk.state_files import read_json, write_json_atomically

STATE_VERSION = 1
SAMPLE_BYTES = 64 * 1024  # read at the start, middle and end of the file
UPLOADS_DIR = "uploads"


@dataclass(frozen=True)
class FileIdentity:
    """A local file as it was when its upload began."""

    size: int
    mtime_ns: int
    fingerprint: str  # sha256 of the size and three samples of the content


def file_identity(path: Path) -> FileIdentity:
    """Stat and sample `path` (blocking: a few small reads; run it in a thread)."""
    with path.open("rb") as stream:
        status = os.fstat(stream.fileno())
        digest = hashlib.sha256(str(status.st_size).encode())
        for offset in sorted({0, max(0, status.st_size // 2 - SAMPLE_BYTES // 2),
                              max(0, status.st_size - SAMPLE_BYTES)}):
            stream.seek(offset)
            digest.update(stream.read(SAMPLE_BYTES))
    return FileIdentity(status.st_size, status.st_mtime_ns, digest.hexdigest())


def state_key(coordinator: str, apikey: str, path: Path, destination: dict[str, Any]) -> str:
    """The name of an upload's state: the same command on the same file finds it."""
    identity = json.dumps([coordinator.rstrip("/"), apikey, str(path.resolve()), destination],
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ResumeState:
    key: str
    file: str
    identity: FileIdentity
    upload_id: str
    pop: str  # the POP it was last sending to (it may hold parts not stored yet)
    pop_url: str
    part_size: int

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ResumeState | None:
        """The state, or None for one this version does not read (start afresh)."""
        if value.get("version") != STATE_VERSION:
            return None
        try:
            identity = FileIdentity(**value["identity"])
            state = cls(key=str(value["key"]), file=str(value["file"]), identity=identity,
                        upload_id=str(value["upload_id"]), pop=str(value["pop"]),
                        pop_url=str(value["pop_url"]), part_size=int(value["part_size"]))
        except (KeyError, TypeError, ValueError):
            return None
        return state if state.part_size > 0 else None

    def moved_to(self, pop: str, pop_url: str) -> ResumeState:
        return ResumeState(self.key, self.file, self.identity, self.upload_id, pop, pop_url,
                           self.part_size)


class ResumeStore:
    """Upload states in `<state dir>/uploads/<key>.json`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / UPLOADS_DIR

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    async def load(self, key: str, identity: FileIdentity) -> ResumeState | None:
        """The state kept for `key`, if the file is still the one it began with."""
        value = await asyncio.to_thread(read_json, self.path(key))
        state = ResumeState.from_json(value) if value is not None else None
        if state is None or state.key != key or state.identity != identity:
            return None
        return state

    async def save(self, state: ResumeState) -> None:
        await asyncio.to_thread(write_json_atomically, self.path(state.key), state.to_json())

    async def remove(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)
