"""The local-disk driver's sweep of its temp files: what a writer that died mid-write left
goes; what a live writer holds stays, however long it has been idle.

The dead writer is a real process killed with SIGKILL in the middle of a put, so the lock
that tells the two apart is the kernel's, released as it is in a crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import REPO

from common.storage import SweepsTemporary
from common.storage._local import LocalDiskStorage

MiB = 1024 * 1024
HOUR = 3600.0


@pytest.fixture
def local(tmp_path: Path) -> LocalDiskStorage:
    return LocalDiskStorage(tmp_path / "bucket", "files")


def temp_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob(".tmp-*"))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def wait_for_temp_file(root: Path, size: int) -> Path:
    """The one temp file under `root`, once `size` bytes are written to it."""
    deadline = time.monotonic() + 20
    while not ((found := temp_files(root)) and found[0].stat().st_size >= size):
        assert time.monotonic() < deadline, f"no temp file of {size} bytes appeared"
        await asyncio.sleep(0.02)
    return found[0]


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from common.storage._local import LocalDiskStorage

    async def body():
        for _ in range(2):  # the driver writes once a chunk comes after the first MiB
            yield b"x" * (1024 * 1024)
        await asyncio.Event().wait()  # and then the client goes quiet

    asyncio.run(LocalDiskStorage(Path(sys.argv[1]), "files").put(
        "files", "key", body(), content_type="a/b"))
""")


async def test_a_writer_killed_mid_put_leaves_a_temp_file_the_sweep_removes(
        local: LocalDiskStorage) -> None:
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(local.root)], cwd=REPO)
    try:
        temp = await wait_for_temp_file(local.root, 2 * MiB)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)

    # Not old enough yet: a writer may have just made it.
    assert await local.sweep_temporary(older_than=HOUR) == 0
    age(temp, 2 * HOUR)
    assert await local.sweep_temporary(older_than=HOUR) == 1
    assert temp_files(local.root) == []


async def test_a_live_writer_keeps_its_temp_file_however_long_it_idles(
        local: LocalDiskStorage) -> None:
    more = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(2):  # the driver writes once a chunk comes after the first MiB
            yield b"a" * MiB
        await more.wait()
        yield b"b"

    put = asyncio.create_task(local.put("files", "slow", slow_body(), content_type="a/b"))
    temp = await wait_for_temp_file(local.root, 2 * MiB)
    age(temp, 2 * HOUR)  # idle, as far as the file's times tell
    assert await local.sweep_temporary(older_than=HOUR) == 0
    assert temp.exists()

    more.set()
    info = await asyncio.wait_for(put, 20)
    assert info.size == 2 * MiB + 1
    reader = await local.get("files", "slow")
    try:
        assert b"".join([chunk async for chunk in reader.chunks()])[-2:] == b"ab"
    finally:
        await reader.close()
    assert temp_files(local.root) == []


async def test_leftover_upload_folders_and_part_files_go_and_nothing_else(
        local: LocalDiskStorage) -> None:
    await local.put("files", "kept", _stream(b"object"), content_type="a/b")
    upload_id = await local.create_multipart("files", "big", content_type="a/b")
    await local.upload_part("files", "big", upload_id, 1, _stream(b"part"), 4)
    uploads = local.root / "files" / "uploads"
    # What a process killed at the wrong moment leaves: a half-made upload folder, one
    # being thrown away, and a part file that was never renamed into place.
    leftovers = [uploads / ".tmp-making", uploads / f".tmp-trash-{upload_id}-0000",
                 uploads / upload_id / ".tmp-part"]
    for path in leftovers[:2]:
        path.mkdir()
        (path / "meta.json").write_bytes(b"{}")
    leftovers[2].write_bytes(b"half a part")
    for path in leftovers:
        age(path, 2 * HOUR)

    assert await local.sweep_temporary(older_than=HOUR) == 3
    assert temp_files(local.root) == []
    assert (await local.head("files", "kept")).size == 6
    assert await local.list_multipart_uploads("files") == [("big", upload_id)]
    assert sorted(os.listdir(uploads / upload_id)) == ["meta.json", "part-00001"]


async def test_an_empty_or_missing_root_has_nothing_to_sweep(local: LocalDiskStorage) -> None:
    assert await local.sweep_temporary(older_than=0) == 0


def test_only_the_local_driver_has_temp_files_to_sweep(local: LocalDiskStorage) -> None:
    from common.storage._s3 import S3Storage

    assert isinstance(local, SweepsTemporary)
    assert not hasattr(S3Storage, "sweep_temporary")


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data
