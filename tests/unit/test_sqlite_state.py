import asyncio
from pathlib import Path

import pytest

from common.errors import CinError, Code
from common.files import FileRecord
from common.status import FileStatus
from coordinator.sqlite_state import SqliteStateStore


def record(handle: str = "h" * 20) -> FileRecord:
    return FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                      container="c", key=f"k/{handle}", filename="f.txt",
                      mimetype="text/plain", size=3, status=FileStatus.STARTED,
                      pop="us-east-1", uploaded=1.25, tags={"user": "42"})


async def test_files_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    await store.open()
    await store.create_file(record(), origin="pop:1")
    await store.set_status("h" * 20, FileStatus.COMPLETE, size=3, etag="e1")
    await store.close()

    reopened = SqliteStateStore(path)
    await reopened.open()
    found = await reopened.get_file("h" * 20)
    await reopened.close()
    assert found == record().with_changes(status=FileStatus.COMPLETE, etag="e1")


async def test_same_origin_returns_the_first_file(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    first = await store.create_file(record("a" * 20), origin="pop:1")
    again = await store.create_file(record("b" * 20), origin="pop:1")
    await store.close()
    assert again.handle == first.handle == "a" * 20


async def test_illegal_transition_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.set_status("h" * 20, FileStatus.FAILED)
    with pytest.raises(CinError) as caught:
        await store.set_status("h" * 20, FileStatus.COMPLETE)
    assert caught.value.code is Code.CONFLICT
    found = await store.get_file("h" * 20)
    await store.close()
    assert found is not None and found.status is FileStatus.FAILED


async def test_hashes_belong_to_one_version(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.save_hashes("h" * 20, 2, {"md5": "stale"})  # a version that is not current
    assert (await store.get_file("h" * 20)).hashes is None  # type: ignore[union-attr]
    await store.save_hashes("h" * 20, 1, {"md5": "abc"})
    assert (await store.get_file("h" * 20)).hashes == {"md5": "abc"}  # type: ignore[union-attr]
    await store.close()


async def test_concurrent_writers_are_serialized(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    handles = [f"{i:020d}" for i in range(200)]
    await asyncio.gather(*(store.create_file(record(h), origin=h) for h in handles))
    found = await asyncio.gather(*(store.get_file(h) for h in handles))
    await store.close()
    assert all(f is not None for f in found)
