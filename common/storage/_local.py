"""The local-disk driver: objects are files under a root, each committed by a rename.

Layout of one container (a folder under the root):

    {root}/{container}/objects/{name}          the object's bytes; its key, content_type
                                               and access in the `user.cin.object`
                                               extended attribute (_local_meta.py)
    {root}/{container}/objects/{name}.meta     JSON sidecar instead of the attribute: an
                                               object written before it, or on a file
                                               system without user attributes
    {root}/{container}/uploads/{upload_id}/    a pending multipart upload:
                                               meta.json and part-00001, part-00002, ...

An object is written into a temp file beside its final name with its metadata attached,
fsynced, and renamed into place, so a reader sees the old object, the new one or none:
never a torn one. A put costs one fsync of the file and one of the directory, and the
puts that rename into one directory at once share that one (_dir_sync.py). A writer
that streams holds a `flock` on its temp file until it is sealed, so `sweep_temporary`
can tell the temp file of a writer that died (its lock went with its process) from a slow
one; a put of bytes all in hand makes, seals and renames its temp file in one call, too
briefly for a sweep's age to reach it.

A sidecar object is two renames (data, then sidecar); they happen under an exclusive
`flock` on the `objects` directory, and a reader that finds no attribute on the file reads
the sidecar under a shared one, so no reader (in any process) sees new bytes with an old
sidecar. Such an object exists only while its sidecar does; a put over it removes the
sidecar (under the lock) once the new file is in place.

Every file system call runs in a thread: a slow disk must never stall the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from common.protocol.errors import DISK_FULL_ERRNOS
from common.protocol.limits import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE
from common.storage._dir_sync import fsync_dir, sync_after_rename
from common.storage._local_meta import CorruptMetadata, read_tag, tag
from common.storage._local_names import (
    META_SUFFIX,
    check_container,
    check_upload_id,
    file_etag,
    is_upload_id,
    object_name,
    part_file_name,
)
from common.storage._protocol import (
    Access,
    ByteRange,
    CompletedPart,
    ObjectInfo,
    StorageError,
    StorageErrorKind,
)
from common.storage._rules import check_key, check_part_list, clip_range
from common.storage.drivers import LocalSettings, settings_of
from common.streams import read_ahead
from common.threads import in_thread, in_thread_releasing

if TYPE_CHECKING:
    from common.config import StorageConfig

READ_CHUNK = 1024 * 1024
# Incoming chunks are gathered up to this size before a write, so a stream of small
# network reads does not cost one thread hop each.
WRITE_CHUNK = 1024 * 1024

_IOV_MAX = 1024  # Linux's limit on buffers per writev call
_TEMP_PREFIX = ".tmp-"
_UPLOAD_META = "meta.json"

_P = ParamSpec("_P")
_T = TypeVar("_T")


# ------------------------------------------------------------------ threads and OS errors


def os_failure(exc: OSError) -> StorageError:
    where = f" ({exc.filename})" if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(StorageErrorKind.ACCESS_DENIED, f"{reason}{where}")
    if exc.errno in DISK_FULL_ERRNOS:
        return StorageError(StorageErrorKind.INSUFFICIENT_STORAGE, f"{reason}{where}")
    return StorageError(StorageErrorKind.UNAVAILABLE, f"{reason}{where}")


async def _io(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run blocking file work in a thread (`in_thread`: a cancellation waits for it, so
    cleanup never races a write still running), translating `OSError` into `StorageError`."""
    try:
        return await in_thread(fn, *args, **kwargs)
    except OSError as exc:
        raise os_failure(exc) from exc


async def _io_acquire(
    release: Callable[[_T], object], fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """`_io` for a call that opens something: if the caller is cancelled while the call
    runs, what it opened is released instead of leaking."""
    try:
        return await in_thread_releasing(release, fn, *args, **kwargs)
    except OSError as exc:
        raise os_failure(exc) from exc


@contextlib.contextmanager
def _locked(directory: Path, *, exclusive: bool) -> Iterator[int]:
    """Hold a flock on a directory; yields its fd (for fsync). Raises FileNotFoundError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)  # also releases the lock


# ------------------------------------------------------------------ blocking file work


def _create_temp(directory: Path, *, make_dirs: bool, lock: bool = True) -> tuple[int, Path]:
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX)
    except FileNotFoundError:
        if not make_dirs:
            raise
        # The container's first object: made here rather than checked on every put.
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX)
    # Held until the file is sealed (closed): however long its writer waits between two
    # writes, no sweep takes the file from under it, and a writer that dies (kill -9)
    # drops the lock with its process. A file made, written, sealed and renamed in one
    # call (`lock` false) never waits on a client: it lives for one fsync, far less than
    # the age a sweep leaves a temp file alone for, so the lock would be one more system
    # call (a hand-off of the GIL) for nothing.
    if lock:
        with contextlib.suppress(OSError):  # a file system without locks: sweeps go by age
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, Path(name)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _writev_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(buffer) for buffer in buffers if buffer]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _seal(fd: int) -> os.stat_result:
    """Make a written temp file durable and close it; its stat gives the ETag."""
    try:
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _discard(fd: int, path: Path | None) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _release_temp(temp: tuple[int, Path]) -> None:
    _discard(*temp)


def _write_json_temp(directory: Path, data: dict[str, Any]) -> Path:
    fd, path = _create_temp(directory, make_dirs=False)
    try:
        _write_all(fd, json.dumps(data).encode())
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return path


def _put_whole(objects: Path, name: str, chunks: list[bytes],
               meta: dict[str, Any]) -> os.stat_result:
    """Write, seal and commit an object whose bytes are all in hand."""
    fd, temp = _create_temp(objects, make_dirs=True, lock=False)
    try:
        _writev_all(fd, chunks)
        sealing, fd = fd, -1
        return _seal_and_commit(objects, sealing, temp, name, meta)
    except BaseException:
        _discard(fd, temp)
        raise


def _seal_and_commit(objects: Path, fd: int, temp: Path, name: str,
                     meta: dict[str, Any]) -> os.stat_result:
    """Attach the metadata to a written temp file, make it durable (closing `fd`) and
    move it into place; its stat gives the ETag."""
    try:
        tagged = tag(fd, meta)
    except BaseException:
        os.close(fd)
        raise
    st = _seal(fd)
    _commit(objects, temp, name, None if tagged else {**meta, "etag": file_etag(st)})
    return st


def _commit(objects: Path, data_temp: Path, name: str, sidecar: dict[str, Any] | None) -> None:
    """Move a sealed temp file into place: alone if it carries its metadata, else with
    its sidecar, data first, as one step."""
    if sidecar is None:
        os.replace(data_temp, objects / name)
        stale = objects / (name + META_SUFFIX)
        if stale.exists():  # the object this one replaced kept a sidecar
            with _locked(objects, exclusive=True):
                stale.unlink(missing_ok=True)
        sync_after_rename(objects)
        return
    meta_temp = _write_json_temp(objects, sidecar)
    try:
        with _locked(objects, exclusive=True) as dir_fd:
            os.replace(data_temp, objects / name)
            os.replace(meta_temp, objects / (name + META_SUFFIX))
            os.fsync(dir_fd)
    finally:
        meta_temp.unlink(missing_ok=True)


def _load_sidecar(objects: Path, name: str, key: str) -> dict[str, Any]:
    try:
        with open(objects / (name + META_SUFFIX), "rb") as f:
            sidecar: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NOT_FOUND, f"no object {key!r}") from None
    except ValueError as exc:
        raise StorageError(
            StorageErrorKind.UNAVAILABLE, f"the sidecar of {key!r} is corrupt"
        ) from exc
    if sidecar.get("key") != key:  # two long keys whose hashes collide: not ours
        raise StorageError(StorageErrorKind.NOT_FOUND, f"no object {key!r}")
    return sidecar


def _open_object(objects: Path, name: str, key: str) -> tuple[int, dict[str, Any]]:
    """Open an object file and read its metadata, from the file or else its sidecar.
    Returns the fd (the caller closes it) and the metadata."""
    opened = _open_tagged(objects / name)
    if opened is not None:
        return opened
    with _locked(objects, exclusive=False):
        # Again under the lock: a put may have replaced the file since (and it removes
        # the sidecar of the object it replaced under this lock).
        opened = _open_tagged(objects / name)
        if opened is not None:
            return opened
        sidecar = _load_sidecar(objects, name, key)
        return os.open(objects / name, os.O_RDONLY | os.O_CLOEXEC), sidecar


def _open_tagged(path: Path) -> tuple[int, dict[str, Any]] | None:
    """The open file and its attached metadata; None if it has none. Raises
    FileNotFoundError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        meta = read_tag(fd)
    except CorruptMetadata as exc:
        os.close(fd)
        raise StorageError(StorageErrorKind.UNAVAILABLE,
                           f"the metadata of {path.name!r} is corrupt") from exc
    except BaseException:
        os.close(fd)
        raise
    if meta is None:
        os.close(fd)
        return None
    return fd, meta


def _info(container: str, key: str, sidecar: dict[str, Any], st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        container=container,
        key=key,
        size=st.st_size,
        content_type=str(sidecar.get("content_type", "application/octet-stream")),
        etag=file_etag(st),
        access=Access(sidecar.get("access", Access.PRIVATE.value)),
    )


def _head(objects: Path, name: str, container: str, key: str) -> ObjectInfo:
    fd, info = _open(objects, name, container, key)
    os.close(fd)
    return info


def _open(objects: Path, name: str, container: str, key: str) -> tuple[int, ObjectInfo]:
    try:
        fd, meta = _open_object(objects, name, key)
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NOT_FOUND, f"no object {key!r}") from None
    try:
        if meta.get("key") != key:  # two long keys whose hashes collide: not ours
            raise StorageError(StorageErrorKind.NOT_FOUND, f"no object {key!r}")
        return fd, _info(container, key, meta, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def _release_opened(opened: tuple[int, ObjectInfo]) -> None:
    os.close(opened[0])


def _delete(objects: Path, name: str) -> None:
    try:
        with _locked(objects, exclusive=True) as dir_fd:
            # Sidecar first: a sidecar object is gone the moment its sidecar is. A
            # sidecar alone is no object, so a crash between the two leaves none.
            (objects / (name + META_SUFFIX)).unlink(missing_ok=True)
            (objects / name).unlink(missing_ok=True)
            os.fsync(dir_fd)
    except FileNotFoundError:
        return  # no folder for this container yet: nothing to delete


def _create_upload(uploads: Path, upload_id: str, meta: dict[str, Any]) -> None:
    """Make the upload folder whole before it appears, so a listing never meets half of one."""
    uploads.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=uploads, prefix=_TEMP_PREFIX))
    try:
        meta_temp = _write_json_temp(staging, meta)
        os.replace(meta_temp, staging / _UPLOAD_META)
        os.replace(staging, uploads / upload_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(uploads)


def _load_upload(upload_dir: Path, key: str) -> dict[str, Any]:
    try:
        with open(upload_dir / _UPLOAD_META, "rb") as f:
            meta: dict[str, Any] = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "no upload has this id") from None
    if meta.get("key") != key:  # as S3: an upload id belongs to one key
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "no upload has this id for this key")
    return meta


def _create_part_temp(upload_dir: Path) -> tuple[int, Path]:
    try:
        return _create_temp(upload_dir, make_dirs=False)
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "the upload was aborted") from None


def _store_part(upload_dir: Path, temp: Path, part_number: int) -> None:
    try:
        os.replace(temp, upload_dir / part_file_name(part_number))
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "the upload was aborted") from None
    fsync_dir(upload_dir)


def _check_parts(upload_dir: Path, parts: list[CompletedPart]) -> None:
    for index, part in enumerate(parts):
        try:
            st = os.stat(upload_dir / part_file_name(part.part_number))
        except FileNotFoundError:
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part {part.part_number} was not uploaded"
            ) from None
        if file_etag(st) != part.etag.strip('"'):
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part {part.part_number}: the ETag does not match"
            )
        if index < len(parts) - 1 and st.st_size < MIN_PART_SIZE:
            raise StorageError(
                StorageErrorKind.INVALID_PART,
                f"part {part.part_number} is smaller than {MIN_PART_SIZE} bytes"
                " and is not the last (EntityTooSmall)",
            )


def _append_part(out_fd: int, upload_dir: Path, part: CompletedPart) -> None:
    """Copy one part onto the end of the output, in the kernel where it can."""
    try:
        src = open(upload_dir / part_file_name(part.part_number), "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "the upload was aborted") from None
    with src:
        st = os.fstat(src.fileno())
        if file_etag(st) != part.etag.strip('"'):  # replaced since it was checked
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part {part.part_number}: the ETag does not match"
            )
        remaining = st.st_size
        if remaining and hasattr(os, "copy_file_range"):
            try:
                while remaining:
                    copied = os.copy_file_range(src.fileno(), out_fd, remaining)
                    if copied == 0:
                        raise StorageError(
                            StorageErrorKind.UNAVAILABLE, f"part {part.part_number} shrank"
                        )
                    remaining -= copied
            except OSError as exc:
                # Some file systems cannot copy in the kernel; that is known before a byte moves.
                fallback = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)
                if exc.errno not in fallback or remaining != st.st_size:
                    raise
        if remaining:
            with open(out_fd, "wb", closefd=False) as out:
                shutil.copyfileobj(src, out, READ_CHUNK)


def _remove_upload(uploads: Path, upload_id: str) -> None:
    """Take the folder out of sight in one rename, then delete it at leisure."""
    trash = uploads / f"{_TEMP_PREFIX}trash-{upload_id}-{secrets.token_hex(4)}"
    try:
        os.replace(uploads / upload_id, trash)
    except FileNotFoundError:
        raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, "no upload has this id") from None
    shutil.rmtree(trash, ignore_errors=True)


def _list_uploads(uploads: Path) -> list[tuple[str, str]]:
    pending: list[tuple[str, str]] = []
    try:
        entries = sorted(os.listdir(uploads))
    except FileNotFoundError:
        return pending
    for upload_id in entries:
        if not is_upload_id(upload_id):
            continue
        try:
            with open(uploads / upload_id / _UPLOAD_META, "rb") as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            continue  # removed while listing
        pending.append((str(meta["key"]), upload_id))
    return pending


def _sweep_temporary(root: Path, before: float) -> int:
    """Remove the temp files and folders under `root` last changed before `before` (unix
    time) whose writer is gone; returns how many went."""
    removed = 0
    for objects, uploads in _container_folders(root):
        places = [objects, uploads]
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            places += [uploads / name for name in os.listdir(uploads) if is_upload_id(name)]
        for place in places:
            try:
                names = [name for name in os.listdir(place) if name.startswith(_TEMP_PREFIX)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            removed += sum(_remove_if_abandoned(place / name, before) for name in names)
    return removed


def _container_folders(root: Path) -> list[tuple[Path, Path]]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [(root / name / "objects", root / name / "uploads") for name in names]


def _remove_if_abandoned(path: Path, before: float) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if st.st_mtime >= before:
        return False
    if stat.S_ISDIR(st.st_mode):
        # An upload folder being made or thrown away: both take a moment, not `older_than`.
        shutil.rmtree(path, ignore_errors=True)
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive, only slow
        except OSError:
            pass  # no locks on this file system: its age is all there is to go by
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return True


# ------------------------------------------------------------------ the driver


class LocalFileReader:
    """An open object file: the fd was opened in `get`, so a later replace or delete of
    the object does not disturb a read that has begun."""

    def __init__(self, fd: int, info: ObjectInfo, byte_range: ByteRange | None) -> None:
        self._fd = fd
        self._info = info
        self._range = byte_range

    @property
    def info(self) -> ObjectInfo:
        return self._info

    @property
    def byte_range(self) -> ByteRange | None:
        return self._range

    async def chunks(self) -> AsyncIterator[bytes]:
        span = self._range or ByteRange(0, self._info.size - 1)
        offset, end = span.first, span.last + 1
        while offset < end:
            if self._fd < 0:
                raise StorageError(StorageErrorKind.UNAVAILABLE, "the reader is closed")
            data = await _io(os.pread, self._fd, min(READ_CHUNK, end - offset), offset)
            if not data:
                raise StorageError(StorageErrorKind.UNAVAILABLE, "the object file was truncated")
            offset += len(data)
            yield data

    async def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            await _io(os.close, fd)


class LocalDiskStorage:
    """The `Storage` protocol over a directory tree."""

    def __init__(self, root: Path, default_container: str) -> None:
        self._root = root
        self._default_container = default_container

    @property
    def default_container(self) -> str:
        return self._default_container

    @property
    def root(self) -> Path:
        return self._root

    def _objects(self, container: str) -> Path:
        check_container(container)
        return self._root / container / "objects"

    def _uploads(self, container: str) -> Path:
        check_container(container)
        return self._root / container / "uploads"

    async def put(
        self,
        container: str,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> ObjectInfo:
        name = object_name(key)
        objects = self._objects(container)
        meta = {"key": key, "content_type": content_type, "access": access.value}
        chunks = aiter(body)
        first, ended = await read_ahead(chunks, WRITE_CHUNK)
        if ended:
            # All of it fits one write: temp file, fsync and rename in a single thread
            # hop instead of three (most objects a POP stores are small).
            st = await _io(_put_whole, objects, name, first, meta)
            return ObjectInfo(container, key, st.st_size, content_type, file_etag(st), access)
        fd, temp = await _io_acquire(_release_temp, _create_temp, objects, make_dirs=True)
        try:
            await self._write_stream(fd, chunks, limit=None, pending=first)
            sealing, fd = fd, -1
            st = await _io(_seal_and_commit, objects, sealing, temp, name, meta)
        except BaseException:
            await _io(_discard, fd, temp)
            raise
        return ObjectInfo(container, key, st.st_size, content_type, file_etag(st), access)

    async def _write_stream(self, fd: int, body: AsyncIterable[bytes], limit: int | None,
                            pending: list[bytes] | None = None) -> int:
        """Write a stream as it arrives, after the chunks already taken from it
        (`pending`); refuse to go past `limit` bytes. Returns the size."""
        # The chunks themselves, written with one writev: gathering them into one buffer
        # first would copy every byte once more on its way to the disk.
        pending = pending if pending is not None else []
        pending_bytes = written = sum(len(chunk) for chunk in pending)
        async for chunk in body:
            written += len(chunk)
            if limit is not None and written > limit:
                raise StorageError(
                    StorageErrorKind.INVALID_PART, f"the part is longer than {limit} bytes"
                )
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= WRITE_CHUNK:
                await _io(_writev_all, fd, pending)
                pending, pending_bytes = [], 0
        if pending:
            await _io(_writev_all, fd, pending)
        return written

    async def head(self, container: str, key: str) -> ObjectInfo:
        name = object_name(key)
        return await _io(_head, self._objects(container), name, container, key)

    async def get(
        self, container: str, key: str, byte_range: ByteRange | None = None
    ) -> LocalFileReader:
        name = object_name(key)
        fd, info = await _io_acquire(
            _release_opened, _open, self._objects(container), name, container, key)
        try:
            clipped = clip_range(byte_range, info.size)
        except StorageError:
            await _io(os.close, fd)
            raise
        return LocalFileReader(fd, info, clipped)

    async def delete(self, container: str, key: str) -> None:
        await _io(_delete, self._objects(container), object_name(key))

    async def create_multipart(
        self,
        container: str,
        key: str,
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> str:
        check_key(key)
        upload_id = secrets.token_urlsafe(24)
        meta = {"key": key, "content_type": content_type, "access": access.value}
        await _io(_create_upload, self._uploads(container), upload_id, meta)
        return upload_id

    async def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        size: int,
    ) -> str:
        check_key(key)
        check_upload_id(upload_id)
        if not 1 <= part_number <= MAX_PARTS:
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part number {part_number} is out of range"
            )
        if not 0 <= size <= MAX_PART_SIZE:
            raise StorageError(StorageErrorKind.INVALID_PART, f"a part of {size} bytes")
        upload_dir = self._uploads(container) / upload_id
        await _io(_load_upload, upload_dir, key)
        fd, temp = await _io_acquire(_release_temp, _create_part_temp, upload_dir)
        try:
            written = await self._write_stream(fd, body, limit=size)
            if written != size:
                raise StorageError(
                    StorageErrorKind.INVALID_PART, f"the part has {written} bytes, not {size}"
                )
            sealing, fd = fd, -1
            st = await _io(_seal, sealing)
            await _io(_store_part, upload_dir, temp, part_number)
        except BaseException:
            await _io(_discard, fd, temp)
            raise
        # The ETag is a function of the part file's stat, so replacing the file replaces
        # its ETag in the same rename: there is no second file to keep in step.
        return file_etag(st)

    async def complete_multipart(
        self, container: str, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> ObjectInfo:
        name = object_name(key)
        check_upload_id(upload_id)
        uploads = self._uploads(container)
        upload_dir = uploads / upload_id
        meta = await _io(_load_upload, upload_dir, key)
        check_part_list(parts)
        await _io(_check_parts, upload_dir, parts)
        objects = self._objects(container)
        fd, temp = await _io_acquire(_release_temp, _create_temp, objects, make_dirs=True)
        try:
            for part in parts:  # one thread call per part, so cancellation can stop between
                await _io(_append_part, fd, upload_dir, part)
            access = Access(meta.get("access", Access.PRIVATE.value))
            content_type = str(meta.get("content_type", "application/octet-stream"))
            object_meta = {"key": key, "content_type": content_type, "access": access.value}
            sealing, fd = fd, -1
            st = await _io(_seal_and_commit, objects, sealing, temp, name, object_meta)
        except BaseException:
            await _io(_discard, fd, temp)
            raise
        with contextlib.suppress(StorageError):  # the object is stored; a leftover is harmless
            await _io(_remove_upload, uploads, upload_id)
        return ObjectInfo(container, key, st.st_size, content_type, file_etag(st), access)

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        check_key(key)
        check_upload_id(upload_id)
        uploads = self._uploads(container)
        await _io(_load_upload, uploads / upload_id, key)
        await _io(_remove_upload, uploads, upload_id)

    async def list_multipart_uploads(self, container: str) -> list[tuple[str, str]]:
        return await _io(_list_uploads, self._uploads(container))

    async def sweep_temporary(self, older_than: float) -> int:
        """The `SweepsTemporary` capability: the temp files of writers that died mid-write
        (an object, a part, an upload folder), untouched for `older_than` seconds."""
        return await _io(_sweep_temporary, self._root, time.time() - older_than)

# ------------------------------------------------------------------ opening a location


@contextlib.asynccontextmanager
async def open_local(config: StorageConfig) -> AsyncIterator[LocalDiskStorage]:
    """The local-disk location `config` names. Nothing to open or close: each call opens
    the files it needs."""
    yield LocalDiskStorage(settings_of(config, LocalSettings).root, config.container)
