"""The local-disk driver's metadata on the object file, the sidecars of objects written
before it (or on a file system without user attributes), and the directory fsync that
puts into one container share."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.storage import Access, CompletedPart, StorageError, StorageErrorKind, _dir_sync
from common.storage._local import LocalDiskStorage
from common.storage._local_meta import XATTR, read_tag
from common.storage._local_names import file_etag, object_name


@pytest.fixture
def local(tmp_path: Path) -> LocalDiskStorage:
    return LocalDiskStorage(tmp_path / "root", "files")


async def stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def read(local: LocalDiskStorage, key: str) -> bytes:
    reader = await local.get("files", key)
    try:
        return b"".join([chunk async for chunk in reader.chunks()])
    finally:
        await reader.close()


def objects(local: LocalDiskStorage) -> Path:
    return local.root / "files" / "objects"


def write_sidecar_object(local: LocalDiskStorage, key: str, data: bytes,
                         content_type: str = "text/csv") -> Path:
    """An object as the driver laid it out before metadata moved onto the file."""
    folder = objects(local)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / object_name(key)
    path.write_bytes(data)
    sidecar = {"key": key, "content_type": content_type, "access": "public",
               "etag": file_etag(os.stat(path))}
    (folder / (path.name + ".meta")).write_text(json.dumps(sidecar))
    return path


async def test_a_put_leaves_one_file_that_carries_its_metadata(local: LocalDiskStorage) -> None:
    info = await local.put("files", "k", stream(b"data"), content_type="text/plain",
                           access=Access.PUBLIC)

    assert os.listdir(objects(local)) == ["k"]
    assert read_tag(objects(local) / "k") == {
        "key": "k", "content_type": "text/plain", "access": "public"}
    assert await local.head("files", "k") == info


async def test_a_completed_multipart_upload_carries_its_metadata(
        local: LocalDiskStorage) -> None:
    upload_id = await local.create_multipart("files", "big", content_type="video/mp4")
    etag = await local.upload_part("files", "big", upload_id, 1, stream(b"part"), 4)
    await local.complete_multipart("files", "big", upload_id, [CompletedPart(1, etag)])

    assert os.listdir(objects(local)) == ["big"]
    assert (await local.head("files", "big")).content_type == "video/mp4"


async def test_an_object_written_with_a_sidecar_still_reads(local: LocalDiskStorage) -> None:
    write_sidecar_object(local, "old/one", b"old bytes")

    info = await local.head("files", "old/one")
    assert (info.size, info.content_type, info.access) == (9, "text/csv", Access.PUBLIC)
    assert await read(local, "old/one") == b"old bytes"


async def test_a_put_over_a_sidecar_object_removes_its_sidecar(
        local: LocalDiskStorage) -> None:
    path = write_sidecar_object(local, "old", b"old bytes")

    await local.put("files", "old", stream(b"new"), content_type="text/plain")

    assert os.listdir(objects(local)) == [path.name]
    assert (await local.head("files", "old")).content_type == "text/plain"
    assert await read(local, "old") == b"new"


async def test_a_sidecar_left_beside_a_newer_object_is_not_read(
        local: LocalDiskStorage) -> None:
    """A crash between a put's rename and its removing the old sidecar: the file's own
    metadata wins."""
    await local.put("files", "k", stream(b"new"), content_type="text/plain")
    stale = {"key": "k", "content_type": "text/csv", "access": "public", "etag": "x"}
    (objects(local) / "k.meta").write_text(json.dumps(stale))

    info = await local.head("files", "k")
    assert (info.content_type, info.access) == ("text/plain", Access.PRIVATE)


async def test_deleting_a_sidecar_object_removes_both_files(local: LocalDiskStorage) -> None:
    write_sidecar_object(local, "old", b"old bytes")

    await local.delete("files", "old")

    assert os.listdir(objects(local)) == []
    with pytest.raises(StorageError) as caught:
        await local.head("files", "old")
    assert caught.value.kind is StorageErrorKind.NOT_FOUND


async def test_corrupt_metadata_is_unavailable_not_a_crash(local: LocalDiskStorage) -> None:
    await local.put("files", "k", stream(b"data"), content_type="text/plain")
    os.setxattr(objects(local) / "k", XATTR, b"{ not json")

    with pytest.raises(StorageError) as caught:
        await local.head("files", "k")
    assert caught.value.kind is StorageErrorKind.UNAVAILABLE


async def test_without_user_attributes_a_put_writes_a_sidecar(
        local: LocalDiskStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a file system that keeps no user extended attributes (ENOTSUP)."""
    def unsupported(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    info = await local.put("files", "k", stream(b"data"), content_type="text/plain")

    assert sorted(os.listdir(objects(local))) == ["k", "k.meta"]
    assert json.loads((objects(local) / "k.meta").read_text())["key"] == "k"
    assert await local.head("files", "k") == info
    assert await read(local, "k") == b"data"


# ------------------------------------------------------------------ shared directory fsyncs


def test_concurrent_renames_share_directory_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every writer returns only after an fsync that began after its rename, and
    writers that came at once share fsyncs."""
    syncs: list[tuple[float, float]] = []

    def slow_fsync(directory: Path) -> None:
        began = time.monotonic()
        time.sleep(0.02)
        syncs.append((began, time.monotonic()))

    monkeypatch.setattr(_dir_sync, "fsync_dir", slow_fsync)
    spans: list[tuple[float, float]] = []
    start = threading.Barrier(16)

    def writer() -> None:
        start.wait()
        renamed = time.monotonic()
        _dir_sync.sync_after_rename(tmp_path)
        spans.append((renamed, time.monotonic()))

    threads = [threading.Thread(target=writer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(spans) == 16
    assert 1 <= len(syncs) < 16
    for renamed, returned in spans:
        assert any(renamed <= began and ended <= returned for began, ended in syncs)


def test_a_failed_directory_fsync_fails_its_caller_and_the_next_one_syncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [OSError(errno.EIO, "I/O error")]

    def flaky_fsync(directory: Path) -> None:
        if failures:
            raise failures.pop()

    monkeypatch.setattr(_dir_sync, "fsync_dir", flaky_fsync)
    with pytest.raises(OSError):
        _dir_sync.sync_after_rename(tmp_path)
    _dir_sync.sync_after_rename(tmp_path)  # returns: this one synced
