"""The storage conformance suite: every test runs against local disk and S3 (moto).

What passes on one driver must pass on the other, so a deployment can switch backends
without the edge or the coordinator noticing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from common.protocol.limits import MIN_PART_SIZE
from common.storage import (
    Access,
    ByteRange,
    CompletedPart,
    ObjectReader,
    Storage,
    StorageError,
    StorageErrorKind,
)
from common.storage._local import LocalDiskStorage
from common.storage._local_meta import read_tag
from common.storage._local_names import object_name
from common.storage._s3 import PART_SIZE, split_parts

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 7919 + seed).randbytes(size)


async def stream(data: bytes, chunk: int = 256 * 1024 + 7) -> AsyncIterator[bytes]:
    """An upload as the network delivers it: chunks that do not line up with parts."""
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def read_all(reader: ObjectReader) -> bytes:
    try:
        return b"".join([chunk async for chunk in reader.chunks()])
    finally:
        await reader.close()


def new_key(name: str = "object") -> str:
    return f"conformance/{uuid.uuid4().hex}/{name}"


async def expect(kind: StorageErrorKind, pending: Awaitable[object]) -> StorageError:
    with pytest.raises(StorageError) as caught:
        await pending
    assert caught.value.kind is kind, caught.value
    return caught.value


# ------------------------------------------------------------------ whole objects


@pytest.mark.parametrize(
    "size",
    [0, 1, PART_SIZE, PART_SIZE + 1, 20 * MiB + 13],
    ids=["empty", "one-byte", "one-part", "one-part-plus-one", "twenty-mib"],
)
async def test_put_head_get_round_trip(storage: Storage, size: int) -> None:
    container, key, data = storage.default_container, new_key(), payload(size)

    stored = await storage.put(container, key, stream(data), content_type="application/x-test")
    head = await storage.head(container, key)
    reader = await storage.get(container, key)
    assert reader.byte_range is None
    assert reader.info.size == size
    got = await read_all(reader)

    assert stored.size == head.size == size
    assert head.etag == stored.etag
    assert head.content_type == "application/x-test"
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("asked", "served"),
    [((0, 9), (0, 9)), ((100, 199), (100, 199)), ((1000, 5000), (1000, 1023))],
    ids=["first-bytes", "middle", "past-end-is-clipped"],
)
async def test_range_reads(
    storage: Storage, asked: tuple[int, int], served: tuple[int, int]
) -> None:
    container, key, data = storage.default_container, new_key(), payload(1024)
    await storage.put(container, key, stream(data), content_type="application/octet-stream")

    reader = await storage.get(container, key, ByteRange(*asked))

    assert reader.byte_range == ByteRange(*served)
    assert reader.info.size == len(data)
    assert await read_all(reader) == data[served[0] : served[1] + 1]


async def test_range_starting_past_the_end_is_refused(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    await storage.put(container, key, stream(payload(1024)), content_type="text/plain")

    await expect(StorageErrorKind.INVALID_RANGE, storage.get(container, key, ByteRange(1024, 2000)))


@pytest.mark.parametrize("access", [Access.PUBLIC, Access.PRIVATE])
async def test_content_type_and_access_are_kept(storage: Storage, access: Access) -> None:
    container, key = storage.default_container, new_key("picture.png")

    stored = await storage.put(
        container, key, stream(b"\x89PNG..."), content_type="image/png", access=access)
    head = await storage.head(container, key)

    assert stored.access is head.access is access
    assert head.content_type == "image/png"


async def test_overwrite_replaces_the_object(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    first = await storage.put(container, key, stream(b"first version"), content_type="text/plain")
    second = await storage.put(
        container, key, stream(b"second, longer version"), content_type="text/markdown")

    head = await storage.head(container, key)

    assert first.etag != second.etag == head.etag
    assert head.content_type == "text/markdown"
    assert await read_all(await storage.get(container, key)) == b"second, longer version"


async def test_missing_key_is_not_found(storage: Storage) -> None:
    container, key = storage.default_container, new_key()

    await expect(StorageErrorKind.NOT_FOUND, storage.head(container, key))
    await expect(StorageErrorKind.NOT_FOUND, storage.get(container, key))


async def test_delete_is_idempotent(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    await storage.put(container, key, stream(b"bye"), content_type="text/plain")

    await storage.delete(container, key)
    await storage.delete(container, key)

    await expect(StorageErrorKind.NOT_FOUND, storage.head(container, key))


@pytest.mark.parametrize(
    "key",
    ["dir/sub dir/file name.txt", "ünïcødé/ファイル 名.bin", "a+b=c&d?e#f%20g;h,i",
     "trailing.meta", ".hidden", "h_" + "0" * 64, "long/" + "segment-" * 40 + "end"],
    ids=["slashes-spaces", "unicode", "punctuation", "meta-suffix", "leading-dot",
         "hash-like", "long"],
)
async def test_unusual_keys_round_trip(storage: Storage, key: str) -> None:
    container, data = storage.default_container, payload(100)
    unique = f"{uuid.uuid4().hex}/{key}"

    await storage.put(container, unique, stream(data), content_type="text/plain")
    head = await storage.head(container, unique)
    got = await read_all(await storage.get(container, unique))
    await storage.delete(container, unique)

    assert head.key == unique
    assert got == data
    await expect(StorageErrorKind.NOT_FOUND, storage.head(container, unique))


async def test_keys_that_look_like_sidecars_stay_apart(storage: Storage) -> None:
    container, base = storage.default_container, new_key("photo")
    await storage.put(container, base, stream(b"the photo"), content_type="image/jpeg")
    await storage.put(
        container, base + ".meta", stream(b"not a sidecar"), content_type="text/plain")

    assert await read_all(await storage.get(container, base)) == b"the photo"
    assert (await storage.head(container, base)).content_type == "image/jpeg"
    assert await read_all(await storage.get(container, base + ".meta")) == b"not a sidecar"


async def test_failed_stream_leaves_nothing_behind(storage: Storage) -> None:
    container, key = storage.default_container, new_key()

    async def broken() -> AsyncIterator[bytes]:
        yield payload(PART_SIZE)
        yield payload(PART_SIZE, seed=1)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await storage.put(container, key, broken(), content_type="text/plain")

    await expect(StorageErrorKind.NOT_FOUND, storage.head(container, key))
    assert [k for k, _ in await storage.list_multipart_uploads(container) if k == key] == []


async def test_cancelled_put_leaves_nothing_behind(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield payload(PART_SIZE + MiB)
        started.set()
        await asyncio.Event().wait()
        yield b""  # never reached

    upload = asyncio.create_task(storage.put(container, key, stalled(), content_type="text/plain"))
    await started.wait()
    await asyncio.sleep(0.3)  # let the first part get on its way
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    await expect(StorageErrorKind.NOT_FOUND, storage.head(container, key))
    assert [k for k, _ in await storage.list_multipart_uploads(container) if k == key] == []


# ------------------------------------------------------------------ multipart uploads


async def upload(storage: Storage, key: str, upload_id: str, number: int, data: bytes) -> str:
    return await storage.upload_part(
        storage.default_container, key, upload_id, number, stream(data), len(data))


async def test_multipart_parts_out_of_order(storage: Storage) -> None:
    container, key = storage.default_container, new_key("video.mp4")
    parts = [payload(5 * MiB, seed=1), payload(5 * MiB, seed=2), payload(1024, seed=3)]
    upload_id = await storage.create_multipart(
        container, key, content_type="video/mp4", access=Access.PUBLIC)
    assert (key, upload_id) in await storage.list_multipart_uploads(container)

    etags = {n: await upload(storage, key, upload_id, n, parts[n - 1]) for n in (3, 1, 2)}
    done = await storage.complete_multipart(
        container, key, upload_id, [CompletedPart(n, etags[n]) for n in (1, 2, 3)])

    whole = b"".join(parts)
    head = await storage.head(container, key)
    assert done.size == head.size == len(whole)
    assert done.etag == head.etag
    assert head.content_type == "video/mp4"
    assert head.access is Access.PUBLIC
    assert await read_all(await storage.get(container, key)) == whole
    assert (key, upload_id) not in await storage.list_multipart_uploads(container)


async def test_reuploaded_part_replaces_the_first(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")
    old = await upload(storage, key, upload_id, 1, payload(5 * MiB, seed=1))
    new_part = payload(5 * MiB, seed=2)
    new = await upload(storage, key, upload_id, 1, new_part)
    last = await upload(storage, key, upload_id, 2, b"tail")
    assert old != new

    await expect(StorageErrorKind.INVALID_PART, storage.complete_multipart(
        container, key, upload_id, [CompletedPart(1, old), CompletedPart(2, last)]))
    await storage.complete_multipart(
        container, key, upload_id, [CompletedPart(1, new), CompletedPart(2, last)])

    assert await read_all(await storage.get(container, key)) == new_part + b"tail"


async def test_wrong_etag_is_an_invalid_part(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")
    await upload(storage, key, upload_id, 1, b"only part")

    await expect(StorageErrorKind.INVALID_PART, storage.complete_multipart(
        container, key, upload_id, [CompletedPart(1, "0" * 32)]))
    await storage.abort_multipart(container, key, upload_id)


async def test_small_part_that_is_not_last_is_invalid(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")
    small = await upload(storage, key, upload_id, 1, payload(MIN_PART_SIZE - 1))
    last = await upload(storage, key, upload_id, 2, b"end")

    await expect(StorageErrorKind.INVALID_PART, storage.complete_multipart(
        container, key, upload_id, [CompletedPart(1, small), CompletedPart(2, last)]))
    await storage.abort_multipart(container, key, upload_id)


async def test_part_numbers_must_ascend(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")
    one = await upload(storage, key, upload_id, 1, payload(MIN_PART_SIZE))
    two = await upload(storage, key, upload_id, 2, b"end")

    await expect(StorageErrorKind.INVALID_PART, storage.complete_multipart(
        container, key, upload_id, [CompletedPart(2, two), CompletedPart(1, one)]))
    await storage.abort_multipart(container, key, upload_id)


@pytest.mark.parametrize("sent", [5, 20], ids=["short", "long"])
async def test_part_must_have_its_declared_size(storage: Storage, sent: int) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")

    await expect(StorageErrorKind.INVALID_PART, storage.upload_part(
        container, key, upload_id, 1, stream(b"x" * sent), 10))
    await storage.abort_multipart(container, key, upload_id)


async def test_unknown_upload(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    unknown = "U" * 32
    part = [CompletedPart(1, "0" * 32)]

    await expect(StorageErrorKind.NO_SUCH_UPLOAD, storage.upload_part(
        container, key, unknown, 1, stream(b"data"), 4))
    await expect(StorageErrorKind.NO_SUCH_UPLOAD,
                 storage.complete_multipart(container, key, unknown, part))
    await expect(StorageErrorKind.NO_SUCH_UPLOAD, storage.abort_multipart(container, key, unknown))


async def test_abort_leaves_nothing_pending(storage: Storage) -> None:
    container, key = storage.default_container, new_key()
    upload_id = await storage.create_multipart(container, key, content_type="text/plain")
    await upload(storage, key, upload_id, 1, b"some bytes")

    await storage.abort_multipart(container, key, upload_id)

    assert all(uid != upload_id for _, uid in await storage.list_multipart_uploads(container))
    await expect(StorageErrorKind.NO_SUCH_UPLOAD, upload(storage, key, upload_id, 2, b"late"))


# ------------------------------------------------------------------ local disk only


@pytest.fixture
def local(tmp_path: Path) -> LocalDiskStorage:
    return LocalDiskStorage(tmp_path / "root", "files")


@pytest.mark.parametrize(
    "key",
    ["", "..", "../escape", "a/../b", "a/..", "nul\x00byte", "k" * 1025],
    ids=["empty", "dotdot", "leading-dotdot", "inner-dotdot", "trailing-dotdot", "nul", "long"],
)
async def test_every_driver_refuses_bad_keys(storage: Storage, key: str) -> None:
    """The same keys are refused everywhere, so what works on local disk works on S3."""
    box = storage.default_container
    await expect(StorageErrorKind.BAD_KEY, storage.put(box, key, stream(b"x"),
                                                       content_type="a/b"))
    await expect(StorageErrorKind.BAD_KEY, storage.head(box, key))
    await expect(StorageErrorKind.BAD_KEY, storage.get(box, key))
    await expect(StorageErrorKind.BAD_KEY, storage.delete(box, key))
    await expect(StorageErrorKind.BAD_KEY, storage.create_multipart(box, key,
                                                                    content_type="a/b"))


@pytest.mark.parametrize("key", ["../escape", "nul\x00byte"])
async def test_local_refuses_bad_keys_before_touching_the_disk(local: LocalDiskStorage,
                                                               key: str) -> None:
    await expect(StorageErrorKind.BAD_KEY, local.put("files", key, stream(b"x"),
                                                     content_type="a/b"))
    assert not local.root.exists()


@pytest.mark.parametrize("container", ["..", "../other", "UPPER", "a", "a/b", ""])
async def test_local_refuses_bad_containers(local: LocalDiskStorage, container: str) -> None:
    await expect(StorageErrorKind.NO_SUCH_CONTAINER,
                 local.put(container, "key", stream(b"x"), content_type="a/b"))
    await expect(StorageErrorKind.NO_SUCH_CONTAINER, local.list_multipart_uploads(container))


async def test_local_refuses_upload_ids_that_are_paths(local: LocalDiskStorage) -> None:
    await expect(StorageErrorKind.NO_SUCH_UPLOAD,
                 local.upload_part("files", "key", "../../objects", 1, stream(b"x"), 1))


async def test_local_reader_survives_overwrite_and_delete(local: LocalDiskStorage) -> None:
    old = payload(3 * MiB, seed=1)
    await local.put("files", "k", stream(old), content_type="a/b")
    reader = await local.get("files", "k")
    try:
        await local.put("files", "k", stream(b"new"), content_type="a/b")
        await local.delete("files", "k")
        assert b"".join([chunk async for chunk in reader.chunks()]) == old
    finally:
        await reader.close()


@pytest.mark.parametrize("before_failing", [1024, 3 * MiB], ids=["first batch", "streamed"])
async def test_local_failed_put_leaves_no_temp_file(local: LocalDiskStorage,
                                                    before_failing: int) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield payload(before_failing)
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        await local.put("files", "k", broken(), content_type="a/b")

    assert [path for path in local.root.rglob("*") if path.is_file()] == []


async def test_local_layout(local: LocalDiskStorage) -> None:
    await local.put("files", "a/b c", stream(b"data"), content_type="text/plain")
    upload_id = await local.create_multipart("files", "big", content_type="text/plain")
    await upload_part_bytes(local, "big", upload_id, 1, b"part")

    objects = local.root / "files" / "objects"
    # The metadata travels on the object file itself: no sidecar.
    assert sorted(os.listdir(objects)) == ["a%2Fb%20c"]
    assert read_tag(objects / "a%2Fb%20c") == {
        "key": "a/b c", "content_type": "text/plain", "access": "private"}
    upload_dir = local.root / "files" / "uploads" / upload_id
    assert sorted(os.listdir(upload_dir)) == ["meta.json", "part-00001"]


async def upload_part_bytes(
    storage: LocalDiskStorage, key: str, upload_id: str, number: int, data: bytes
) -> str:
    return await storage.upload_part("files", key, upload_id, number, stream(data), len(data))


# ------------------------------------------------------------------ pure rules, no backend


@pytest.mark.parametrize(
    ("sizes", "parts"),
    [([], [(0, True)]), ([9], [(9, True)]), ([10], [(10, True)]),
     ([11], [(10, False), (1, True)]), ([3, 3, 3, 3], [(10, False), (2, True)]),
     ([25], [(10, False), (10, False), (5, True)]), ([10, 0, 10], [(10, False), (10, True)])],
    ids=["empty", "part-minus-one", "one-part", "part-plus-one", "small-chunks", "big-chunk",
         "empty-chunk"],
)
async def test_split_parts_edges(sizes: list[int], parts: list[tuple[int, bool]]) -> None:
    async def body() -> AsyncIterator[bytes]:
        for size in sizes:
            yield b"x" * size

    assert [(len(data), last) async for data, last in split_parts(body(), 10)] == parts


def test_object_names_never_collide_with_the_drivers_own_files() -> None:
    keys = ["a", "a.meta", ".tmp-x", ".", "h_" + "0" * 64, "k" * 300, "a/b", "a%2Fb"]
    names = [object_name(key) for key in keys]

    assert len(set(names)) == len(names)
    assert not any(name.endswith(".meta") or name.startswith(".") for name in names)
    assert object_name("k" * 300).startswith("h_")
    assert object_name("h_" + "0" * 64).startswith("h%5F")
