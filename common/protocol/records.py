"""The file record: what the coordinator knows about one file."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus

HASH_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


@dataclass(frozen=True)
class FileRecord:
    handle: str
    apikey: str
    storage: str  # name of the StorageConfig the bytes live in
    provider: str  # what the client named, e.g. "s3"
    container: str
    key: str
    filename: str
    mimetype: str
    size: int
    status: FileStatus
    pop: str  # the POP that took the upload
    uploaded: float  # unix seconds
    access: str = "private"
    region: str | None = None
    source_url: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    version: int = 1  # bumped by every overwrite; hashes belong to one version
    etag: str | None = None
    hashes: dict[str, str] | None = None

    def with_changes(self, **changes: Any) -> FileRecord:
        return replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        return {
            "handle": self.handle, "apikey": self.apikey, "storage": self.storage,
            "provider": self.provider, "container": self.container, "key": self.key,
            "filename": self.filename, "mimetype": self.mimetype, "size": self.size,
            "status": self.status.value, "pop": self.pop, "uploaded": self.uploaded,
            "access": self.access, "region": self.region, "source_url": self.source_url,
            "tags": dict(self.tags), "version": self.version, "etag": self.etag,
            "hashes": dict(self.hashes) if self.hashes is not None else None,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> FileRecord:
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        values["status"] = FileStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class UploadRecord:
    """A multipart upload (the Upload API) of one file: what the client's `upload_id`
    stands for. `storage_upload_id` is the bucket's own multipart upload id."""

    upload_id: str
    handle: str
    storage_upload_id: str
    pop: str  # the POP the client was sent to (`location_url`)
    fii: bool
    created: float
    # Why the coordinator ended the upload without its file (it expired), else None.
    failure: str | None = None

    @property
    def in_one_put(self) -> bool:
        """A file smaller than the bucket's smallest part has no multipart upload (its
        `storage_upload_id` is empty): the POP puts it whole once it is complete."""
        return not self.storage_upload_id

    def to_wire(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "handle": self.handle,
                "storage_upload_id": self.storage_upload_id, "pop": self.pop,
                "fii": self.fii, "created": self.created, "failure": self.failure}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> UploadRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


@dataclass(frozen=True)
class PartRecord:
    """One part of a multipart upload: where it is and whether it is in the bucket."""

    number: int
    pop: str  # the POP holding (or that held) its bytes
    state: str  # "spooled" (durable at the POP) or "stored" (uploaded to the bucket)
    size: int
    etag: str | None  # the bucket's ETag, once stored

    def to_wire(self) -> dict[str, Any]:
        return {"number": self.number, "pop": self.pop, "state": self.state,
                "size": self.size, "etag": self.etag}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PartRecord:
        known = {f.name for f in fields(cls)}
        part = cls(**{name: value for name, value in data.items() if name in known})
        if type(part.number) is not int or type(part.size) is not int:
            raise TypeError("a part's number and size are integers")
        return part


def upload_closed(record: FileRecord, upload: UploadRecord) -> CinError:
    """The 409 for a request on an upload that takes no more bytes: its status, and why
    it ended when it did not end with its file (it expired)."""
    detail = f"the upload is {record.status.value}"
    if upload.failure:
        detail += f" ({upload.failure})"
    return CinError(Code.CONFLICT, detail)


def file_url(public_url: str, handle: str) -> str:
    """A file's link, as store replies and webhooks give it."""
    return f"{public_url}/api/file/{handle}"
