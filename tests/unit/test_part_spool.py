"""The part spool on a real disk: chunks written, fsync'd and journaled, read back,
recovered after a restart. Its decisions alone are tested in test_part_ledger.py."""

import asyncio
import base64
import hashlib
import json
import os
import random
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import edge.multipart.part_spool as part_spool_module
from common.protocol.errors import CinError, Code
from edge.multipart.part_ledger import ChunkReceipt, Extent, PartState
from edge.multipart.part_spool import FLUSH_BYTES, READ_BYTES, PartSpool, SpooledUpload

UPLOAD = "upload-0123456789"
KiB = 1024
MiB = 1024 * KiB


def pattern(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def stream(data: bytes, piece: int = 64 * KiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


class Gated:
    """A body that yields its first half, then waits for `gate` before the rest (or,
    with `cut`, fails there as a connection the client dropped)."""

    def __init__(self, data: bytes, *, cut: bool = False) -> None:
        self.data = data
        self.cut = cut
        self.started = asyncio.Event()
        self.stalled = asyncio.Event()  # the first half was taken, and written if it filled a batch
        self.gate = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        half = len(self.data) // 2
        self.started.set()
        yield self.data[:half]
        self.stalled.set()
        await self.gate.wait()
        if self.cut:
            raise ConnectionResetError("the client went away")
        yield self.data[half:]


@pytest.fixture
async def spool(tmp_path: Path) -> PartSpool:
    made = PartSpool(tmp_path / "spool")
    await made.prepare()
    await made.open_upload(UPLOAD, {"filename": "movie.mp4", "size": 123})
    return made


def part_file(tmp_path: Path, part: int = 1, kind: str = "data") -> Path:
    return tmp_path / "spool" / "uploads" / UPLOAD / f"part-{part}.{kind}"


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def put(spool: PartSpool, offset: int, data: bytes, part: int = 1,
              md5: str | None = None) -> ChunkReceipt:
    return await spool.write_chunk(UPLOAD, part, offset, stream(data), len(data), md5)


# Writing chunks.

async def test_chunks_in_any_order_assemble_the_part(spool: PartSpool, tmp_path: Path) -> None:
    data = pattern(3 * MiB + 12345)
    cuts = sorted(random.Random(7).sample(range(1, len(data)), 9))
    pieces = list(zip([0, *cuts], [*cuts, len(data)], strict=True))
    random.Random(8).shuffle(pieces)
    for start, end in pieces:
        receipt = await put(spool, start, data[start:end])
        assert receipt == ChunkReceipt(1, start, end - start,
                                       hashlib.md5(data[start:end]).hexdigest())

    assert hashlib.sha256(part_file(tmp_path).read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    finished = await spool.finish_part(UPLOAD, 1, expected_size=len(data))
    assert finished.size == len(data)
    assert await spool.part_md5(finished) == hashlib.md5(data).hexdigest()
    blocks = [block async for block in spool.read_part(finished)]
    assert max(len(block) for block in blocks) <= READ_BYTES
    assert hashlib.sha256(b"".join(blocks)).digest() == hashlib.sha256(data).digest()


async def test_the_journal_has_one_line_per_acknowledged_chunk(spool: PartSpool,
                                                                tmp_path: Path) -> None:
    await put(spool, 0, b"hello")
    await put(spool, 5, b" world")
    lines = part_file(tmp_path, kind="journal").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"offset": 0, "size": 5, "md5": hashlib.md5(b"hello").hexdigest()},
        {"offset": 5, "size": 6, "md5": hashlib.md5(b" world").hexdigest()},
    ]


@pytest.mark.parametrize(
    ("md5", "error"),
    [
        (md5_b64(b"x" * 1000), None),
        (None, None),
        (md5_b64(b"y" * 1000), "Content-MD5 does not match"),
        ("not base64!", "Content-MD5 is not valid base64"),
        (base64.b64encode(b"short").decode(), "Content-MD5 is not the base64 of an MD5 digest"),
    ],
)
async def test_content_md5(spool: PartSpool, md5: str | None, error: str | None) -> None:
    if error is None:
        receipt = await put(spool, 0, b"x" * 1000, md5=md5)
        assert receipt.md5_hex == hashlib.md5(b"x" * 1000).hexdigest()
        assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, 1000),)
    else:
        with pytest.raises(CinError) as caught:
            await put(spool, 0, b"x" * 1000, md5=md5)
        assert (caught.value.code, caught.value.detail) == (Code.BAD_PARAMETER, error)
        assert (await spool.part_state(UPLOAD, 1)).extents == ()


async def test_a_short_body_is_not_acknowledged(spool: PartSpool) -> None:
    with pytest.raises(CinError) as caught:
        await spool.write_chunk(UPLOAD, 1, 0, stream(b"a" * 60), 100, None)
    assert caught.value.code is Code.BAD_PARAMETER
    assert caught.value.detail == "the chunk is 60 bytes, the request said 100"
    assert (await spool.part_state(UPLOAD, 1)).extents == ()


async def test_a_long_body_stops_before_its_extent_ends(spool: PartSpool) -> None:
    after = pattern(100, seed=2)
    await put(spool, 100, after)  # acknowledged right after the long chunk's extent
    asked = 0

    async def long_body() -> AsyncIterator[bytes]:
        nonlocal asked
        for _ in range(10):
            asked += 1
            yield b"z" * 40

    with pytest.raises(CinError) as caught:
        await spool.write_chunk(UPLOAD, 1, 0, long_body(), 100, None)
    assert caught.value.code is Code.BAD_PARAMETER
    assert caught.value.detail == "the chunk is at least 120 bytes, the request said 100"
    assert asked == 3  # stopped at the piece that went past the size
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(100, 100),)
    assert await collect(await spool.read_range(UPLOAD, 1, 100, 100)) == after
    await asyncio.wait_for(put(spool, 0, b"a" * 100), timeout=2)  # the range was released
    assert (await spool.part_state(UPLOAD, 1)).contiguous == 200


async def test_an_exact_duplicate_is_accepted_without_a_write(
        spool: PartSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = pattern(5000)
    first = await put(spool, 10, data)
    writes: list[int] = []
    real_pwritev = os.pwritev

    def counting_pwritev(fd: int, buffers: Any, offset: int) -> int:
        writes.append(offset)
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", counting_pwritev)
    assert await put(spool, 10, data) == first
    assert await put(spool, 10, data, md5=md5_b64(data)) == first
    assert writes == []
    assert len(part_file(tmp_path, kind="journal").read_text().splitlines()) == 1


async def test_a_chunk_straddling_acknowledged_bytes_writes_only_the_new_ones(
        spool: PartSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = pattern(1000)
    await put(spool, 100, data[100:300])
    await put(spool, 500, data[500:600])
    writes: list[tuple[int, int]] = []
    real_pwritev = os.pwritev
    data_file = part_file(tmp_path, kind="data").stat().st_ino

    def counting_pwritev(fd: int, buffers: Any, offset: int) -> int:
        if os.fstat(fd).st_ino == data_file:  # not the journal's lines
            writes.append((offset, sum(len(buffer) for buffer in buffers)))
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", counting_pwritev)
    receipt = await put(spool, 0, data[:800], md5=md5_b64(data[:800]))
    assert (receipt.offset, receipt.size, receipt.md5_hex) == (
        0, 800, hashlib.md5(data[:800]).hexdigest())
    assert writes == [(0, 100), (300, 200), (600, 200)]  # around the acknowledged bytes
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, 800),)
    assert await collect(await spool.read_range(UPLOAD, 1, 0, 800)) == data[:800]
    journal = part_file(tmp_path, kind="journal").read_text().splitlines()
    assert len(journal) == 5  # two chunks before, three runs written now


async def test_a_straddling_chunk_with_other_bytes_conflicts_and_acknowledges_nothing(
        spool: PartSpool) -> None:
    data = pattern(300)
    await put(spool, 100, data[100:200])
    other = data[:150] + bytes(50) + data[200:]
    with pytest.raises(CinError) as caught:
        await put(spool, 0, other)
    assert caught.value.code is Code.CONFLICT
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(100, 100),)
    assert await collect(await spool.read_range(UPLOAD, 1, 100, 100)) == data[100:200]


async def test_a_smaller_retry_inside_acknowledged_bytes_is_accepted_if_it_matches(
        spool: PartSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An FII client that lost a chunk's answer halves the chunk and sends it again."""
    data = pattern(4000)
    await put(spool, 0, data[:2000])
    await put(spool, 2000, data[2000:])
    writes: list[int] = []
    real_pwritev = os.pwritev

    def counting_pwritev(fd: int, buffers: Any, offset: int) -> int:
        writes.append(offset)
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", counting_pwritev)
    for offset, size in ((0, 1000), (1000, 1000), (1500, 1000)):  # the last spans two
        piece = data[offset:offset + size]
        receipt = await put(spool, offset, piece, md5=md5_b64(piece))
        assert (receipt.offset, receipt.size, receipt.md5_hex) == (
            offset, size, hashlib.md5(piece).hexdigest())
    with pytest.raises(CinError) as caught:
        await put(spool, 1000, pattern(1000, seed=9))
    assert caught.value.code is Code.CONFLICT
    assert writes == []
    assert len(part_file(tmp_path, kind="journal").read_text().splitlines()) == 2
    assert await collect(await spool.read_range(UPLOAD, 1, 0, 4000)) == data


@pytest.mark.parametrize("with_md5", [False, True])
async def test_different_bytes_at_an_acknowledged_range_conflict(spool: PartSpool,
                                                                 with_md5: bool) -> None:
    data, other = pattern(3000, seed=3), pattern(3000, seed=4)
    await put(spool, 0, data)
    with pytest.raises(CinError) as caught:
        await put(spool, 0, other, md5=md5_b64(other) if with_md5 else None)
    assert caught.value.code is Code.CONFLICT
    assert await collect(await spool.read_range(UPLOAD, 1, 0, 3000)) == data
    assert await spool.part_md5(await spool.finish_part(UPLOAD, 1)) == \
        hashlib.md5(data).hexdigest()


async def test_chunks_of_one_part_are_written_in_parallel(spool: PartSpool) -> None:
    first, second = Gated(b"a" * 1000), Gated(b"b" * 1000)

    async def open_gates() -> None:
        # Both bodies are being read at once, or this never returns.
        await first.started.wait()
        await second.started.wait()
        first.gate.set()
        second.gate.set()

    await asyncio.wait_for(asyncio.gather(
        spool.write_chunk(UPLOAD, 1, 0, first, 1000, None),
        spool.write_chunk(UPLOAD, 1, 1000, second, 1000, None),
        open_gates(),
    ), timeout=2)
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, 2000),)


@pytest.mark.parametrize("ending", ["same bytes", "other bytes", "cut", "cancelled"])
async def test_a_stalled_chunk_does_not_hold_up_a_retry_of_its_bytes(
        spool: PartSpool, ending: str) -> None:
    """A client whose chunk stalls mid-body retries it on a new connection: the retry
    takes the range over at once, and the stalled request, however it ends, changes
    nothing."""
    data = pattern(3 * MiB, seed=5)
    half = len(data) // 2
    rest = data[half:] if ending == "same bytes" else pattern(len(data) - half, seed=6)
    stalled = Gated(data[:half] + rest, cut=ending == "cut")
    writing = asyncio.create_task(spool.write_chunk(UPLOAD, 1, 0, stalled, len(data), None))
    await asyncio.wait_for(stalled.stalled.wait(), timeout=2)  # 1.5 MiB written, then nothing

    retried = await asyncio.wait_for(put(spool, 0, data, md5=md5_b64(data)), timeout=2)
    assert retried == ChunkReceipt(1, 0, len(data), hashlib.md5(data).hexdigest())
    assert await collect(await spool.read_range(UPLOAD, 1, 0, len(data))) == data

    if ending == "cancelled":
        writing.cancel()
    stalled.gate.set()
    with pytest.raises((CinError, ConnectionResetError, asyncio.CancelledError)) as caught:
        await asyncio.wait_for(writing, timeout=2)
    if isinstance(caught.value, CinError):
        assert caught.value.code is Code.CONFLICT
        assert caught.value.detail == "bytes 0-3145727 of part 1 were taken over by a newer " \
                                      "request for them"
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, len(data)),)
    assert await collect(await spool.read_range(UPLOAD, 1, 0, len(data))) == data
    finished = await spool.finish_part(UPLOAD, 1)
    assert finished.md5_hex == hashlib.md5(data).hexdigest()
    await asyncio.wait_for(put(spool, 0, data), timeout=2)  # the range is free again


async def test_a_retry_waits_for_a_write_of_the_stalled_chunk_already_under_way(
        spool: PartSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stalled request may be inside a disk write when the retry comes: the retry
    waits for that write (bounded by the disk, not the client), or it would land over
    the retry's acknowledged bytes."""
    data = pattern(2 * MiB, seed=7)
    stale = pattern(2 * MiB, seed=8)
    in_write, go = threading.Event(), threading.Event()
    real_pwrite_all = part_spool_module._pwrite_all
    blocked_once: list[bool] = []

    def first_write_blocks(fd: int, buffers: Any, offset: int) -> None:
        if not blocked_once:
            blocked_once.append(True)
            in_write.set()
            assert go.wait(5)
        real_pwrite_all(fd, buffers, offset)

    monkeypatch.setattr(part_spool_module, "_pwrite_all", first_write_blocks)
    stalled = Gated(stale)
    writing = asyncio.create_task(spool.write_chunk(UPLOAD, 1, 0, stalled, len(stale), None))
    assert await asyncio.to_thread(in_write.wait, 2)
    retrying = asyncio.create_task(put(spool, 0, data))
    done, _ = await asyncio.wait({retrying}, timeout=0.3)
    assert not done  # the stalled request's write is still running
    go.set()
    await asyncio.wait_for(retrying, timeout=2)
    stalled.gate.set()
    with pytest.raises(CinError):
        await asyncio.wait_for(writing, timeout=2)
    assert await collect(await spool.read_range(UPLOAD, 1, 0, len(data))) == data


async def test_a_chunk_being_made_durable_is_waited_for_then_compared(
        spool: PartSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk whose body has all arrived is being fsync'd and journaled (disk work, not
    the client's): a retry of it waits for that, then is compared with it."""
    data = pattern(2000, seed=9)
    in_fsync, go = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if not in_fsync.is_set():
            in_fsync.set()
            assert go.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    writing = asyncio.create_task(put(spool, 0, data))
    assert await asyncio.to_thread(in_fsync.wait, 2)
    same = asyncio.create_task(put(spool, 0, data))
    other = asyncio.create_task(put(spool, 0, pattern(2000, seed=10)))
    done, _ = await asyncio.wait({same, other}, timeout=0.1)
    assert not done
    go.set()
    receipt = await asyncio.wait_for(writing, timeout=2)
    assert await asyncio.wait_for(same, timeout=2) == receipt
    with pytest.raises(CinError) as caught:
        await asyncio.wait_for(other, timeout=2)
    assert caught.value.code is Code.CONFLICT
    assert await collect(await spool.read_range(UPLOAD, 1, 0, 2000)) == data


async def test_a_cancelled_chunk_is_not_acknowledged_and_frees_its_range(
        spool: PartSpool) -> None:
    gated = Gated(b"c" * 4000)
    writing = asyncio.create_task(spool.write_chunk(UPLOAD, 1, 0, gated, 4000, None))
    await gated.started.wait()
    await asyncio.sleep(0.01)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert (await spool.part_state(UPLOAD, 1)).extents == ()
    await asyncio.wait_for(put(spool, 0, b"d" * 4000), timeout=2)
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, 4000),)


# Finishing and reading parts.

@pytest.mark.parametrize(
    ("chunks", "expected", "detail"),
    [
        ([(0, 10), (20, 10)], None, "part 1 has a gap at byte 10"),
        ([(5, 10)], None, "part 1 has a gap at byte 0"),
        ([], None, "part 1 has a gap at byte 0"),
        ([(0, 30)], 40, "part 1 has a gap at byte 30"),
        ([(0, 30)], 20, "part 1 has 30 bytes, its size is 20"),
    ],
)
async def test_finish_part_refuses_an_incomplete_part(
        spool: PartSpool, chunks: list[tuple[int, int]], expected: int | None,
        detail: str) -> None:
    for offset, size in chunks:
        await put(spool, offset, b"p" * size)
    with pytest.raises(CinError) as caught:
        await spool.finish_part(UPLOAD, 1, expected_size=expected)
    assert (caught.value.code, caught.value.detail) == (Code.CONFLICT, detail)


async def test_read_range_serves_only_acknowledged_bytes(spool: PartSpool) -> None:
    data = pattern(2 * MiB + 10)
    await put(spool, 0, data)
    await put(spool, len(data) + 100, b"later")
    blocks = [block async for block in await spool.read_range(UPLOAD, 1, 5, 2 * MiB)]
    assert b"".join(blocks) == data[5:5 + 2 * MiB]
    assert max(len(block) for block in blocks) <= READ_BYTES
    for start, length in ((len(data) - 1, 2), (-1, 5), (len(data) + 50, 10)):
        with pytest.raises(CinError) as caught:
            await spool.read_range(UPLOAD, 1, start, length)
        assert caught.value.code is Code.RANGE_NOT_SATISFIABLE


# Restarts.

async def test_recovery_finds_the_acknowledged_bytes_only(spool: PartSpool,
                                                          tmp_path: Path) -> None:
    await put(spool, 0, b"a" * 200)
    with pytest.raises(CinError):  # written to the data file, never acknowledged
        await put(spool, 200, b"b" * 100, md5=md5_b64(b"other"))
    await put(spool, 0, b"x" * 50, part=2)
    await put(spool, 50, b"y" * 50, part=2)
    await put(spool, 0, b"z" * 10, part=3)
    # A crash while journaling: part 1 gets a torn extra line; part 2's last line is cut.
    with part_file(tmp_path, 1, "journal").open("ab") as journal:
        journal.write(b'{"offset":200,"si')
    second = part_file(tmp_path, 2, "journal")
    second.write_bytes(second.read_bytes()[:-20])
    # Debris that is not an upload.
    (tmp_path / "spool" / "uploads" / "not-opened-upload").mkdir()
    (tmp_path / "spool" / "uploads" / "x.y").mkdir()

    restarted = PartSpool(tmp_path / "spool")
    await restarted.prepare()
    assert await restarted.recover() == [SpooledUpload(
        UPLOAD, {"filename": "movie.mp4", "size": 123},
        (PartState(1, (Extent(0, 200),)), PartState(2, (Extent(0, 50),)),
         PartState(3, (Extent(0, 10),))),
    )]

    # Writing on after the restart cuts the torn line first, so the next restart reads all.
    await restarted.write_chunk(UPLOAD, 1, 200, stream(b"b" * 100), 100, None)
    await restarted.write_chunk(UPLOAD, 2, 50, stream(b"y" * 50), 50, None)
    again = await PartSpool(tmp_path / "spool").recover()
    assert again[0].parts[:2] == (PartState(1, (Extent(0, 300),)),
                                  PartState(2, (Extent(0, 100),)))
    for part in (1, 2):
        for line in part_file(tmp_path, part, "journal").read_text().splitlines():
            json.loads(line)
    finished = await restarted.finish_part(UPLOAD, 1, expected_size=300)
    assert finished.md5_hex is None  # two chunks: it takes a read
    assert await restarted.part_md5(finished) == hashlib.md5(b"a" * 200 + b"b" * 100).hexdigest()


async def test_a_failed_journal_append_is_not_acknowledged_and_is_cut(
        spool: PartSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await put(spool, 0, b"a" * 10)
    journal = part_file(tmp_path, kind="journal")
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if os.path.samefile(f"/proc/self/fd/{fd}", journal):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):  # its line was written, but is not known to be durable
        await put(spool, 1_000_000, b"b" * 100_000)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (await spool.part_state(UPLOAD, 1)).extents == (Extent(0, 10),)

    await put(spool, 10, b"c")  # a shorter line than the failed one
    lines = journal.read_text().splitlines()
    assert [json.loads(line)["offset"] for line in lines] == [0, 10]
    assert (await PartSpool(tmp_path / "spool").recover())[0].parts == (
        PartState(1, (Extent(0, 11),)),)


async def test_open_upload_keeps_the_first_meta(spool: PartSpool, tmp_path: Path) -> None:
    await spool.open_upload(UPLOAD, {"filename": "other"})
    assert (await spool.recover())[0].meta == {"filename": "movie.mp4", "size": 123}
    assert [path.name for path in (tmp_path / "spool" / "uploads" / UPLOAD).iterdir()] == \
        ["upload.json"]  # no temporary file left behind


async def test_an_upload_must_be_opened_first(spool: PartSpool) -> None:
    with pytest.raises(CinError) as caught:
        await spool.write_chunk("never-opened", 1, 0, stream(b"abc"), 3, None)
    assert caught.value.code is Code.FILE_NOT_FOUND


BAD_IDS = ["../../../../tmp/evil", "..", "short", "a" * 65, "abcdefgh/..", "abcdefgh\n",
           "abc.defgh", "", "abcdefgh\x00", "abcdefg/"]


@pytest.mark.parametrize("upload_id", BAD_IDS)
async def test_bad_upload_ids_are_refused(tmp_path: Path, upload_id: str) -> None:
    spool = PartSpool(tmp_path / "spool")
    await spool.prepare()
    calls: list[Callable[[], Any]] = [
        lambda: spool.open_upload(upload_id, {}),
        lambda: spool.write_chunk(upload_id, 1, 0, stream(b"abc"), 3, None),
        lambda: spool.part_state(upload_id, 1),
        lambda: spool.finish_part(upload_id, 1),
        lambda: spool.read_range(upload_id, 1, 0, 1),
        lambda: spool.remove_part(upload_id, 1),
        lambda: spool.remove_upload(upload_id),
    ]
    for call in calls:
        with pytest.raises(CinError) as caught:
            await call()
        assert caught.value.code is Code.BAD_PARAMETER
    assert [path.name for path in tmp_path.rglob("*")] == ["spool", "uploads"]


@pytest.mark.parametrize("part", [0, -1, 10_001, True, "1"])
async def test_bad_part_numbers_are_refused(spool: PartSpool, tmp_path: Path,
                                            part: Any) -> None:
    with pytest.raises(CinError) as caught:
        await spool.write_chunk(UPLOAD, part, 0, stream(b"abc"), 3, None)
    assert caught.value.code is Code.BAD_PARAMETER
    assert [path.name for path in (tmp_path / "spool" / "uploads" / UPLOAD).iterdir()] == \
        ["upload.json"]


async def test_chunk_bounds_are_checked(tmp_path: Path) -> None:
    spool = PartSpool(tmp_path / "spool", max_part_bytes=1000)
    await spool.prepare()
    await spool.open_upload(UPLOAD, {})
    for offset, size in ((-1, 10), (0, 0), (995, 10)):
        with pytest.raises(CinError) as caught:
            await spool.write_chunk(UPLOAD, 1, offset, stream(b"x" * 10), size, None)
        assert caught.value.code is Code.BAD_PARAMETER


# Removal and expiry.

async def test_remove_part_and_upload(spool: PartSpool, tmp_path: Path) -> None:
    await put(spool, 0, b"one", part=1)
    await put(spool, 0, b"two", part=2)
    await spool.remove_part(UPLOAD, 1)
    assert not part_file(tmp_path, 1).exists()
    assert not part_file(tmp_path, 1, "journal").exists()
    assert (await spool.part_state(UPLOAD, 1)).extents == ()
    assert (await spool.part_state(UPLOAD, 2)).extents == (Extent(0, 3),)

    await spool.remove_upload(UPLOAD)
    await spool.remove_upload(UPLOAD)  # again: nothing to do
    assert not (tmp_path / "spool" / "uploads" / UPLOAD).exists()
    with pytest.raises(CinError) as caught:
        await put(spool, 0, b"late", part=2)
    assert caught.value.code is Code.FILE_NOT_FOUND
    assert await spool.recover() == []


async def test_uploads_older_than(spool: PartSpool, tmp_path: Path) -> None:
    await spool.open_upload("fresh-upload", {})
    await spool.open_upload("older-upload", {})
    await put(spool, 0, b"data")
    uploads = tmp_path / "spool" / "uploads"
    ages = {UPLOAD: 7200, "older-upload": 9000}
    for name, age in ages.items():
        for path in [*uploads.joinpath(name).iterdir(), uploads / name]:
            os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    assert await spool.uploads_older_than(3600) == ["older-upload", UPLOAD]
    assert await spool.uploads_older_than(8000) == ["older-upload"]
    # A write into an existing part file counts as activity, though the directory is old.
    await put(spool, 4, b"more")
    assert await spool.uploads_older_than(3600) == ["older-upload"]


# Resources.

async def test_a_64_mib_part_streams_through_bounded_memory(spool: PartSpool,
                                                             tmp_path: Path) -> None:
    period = MiB + 7  # not a multiple of the flush size, so a misplaced batch shows
    block = pattern(period + 64 * KiB)
    sizes = [32 * KiB << shift for shift in range(9)] + [8 * MiB] * 6 + [32 * KiB]
    assert sum(sizes) == 64 * MiB and max(sizes) == 8 * MiB
    whole = hashlib.sha256()
    data_path = part_file(tmp_path)
    worst_lag = 0

    async def body(offset: int, size: int) -> AsyncIterator[bytes]:
        nonlocal worst_lag
        for start in range(offset, offset + size, 64 * KiB):
            piece = block[start % period:start % period + min(64 * KiB, offset + size - start)]
            whole.update(piece)
            on_disk = data_path.stat().st_size if data_path.exists() else 0
            worst_lag = max(worst_lag, start - on_disk)  # read from the body, not yet written
            yield piece

    tracemalloc.start()
    try:
        offset = 0
        for size in sizes:
            await spool.write_chunk(UPLOAD, 1, offset, body(offset, size), size, None)
            offset += size
        finished = await spool.finish_part(UPLOAD, 1, expected_size=64 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB
    # One batch in a worker thread while the next is read: at most two behind the body.
    assert worst_lag <= 2 * FLUSH_BYTES
    assert finished.size == 64 * MiB
    read_back = hashlib.sha256()
    with data_path.open("rb") as data:
        while block_read := data.read(4 * MiB):
            read_back.update(block_read)
    assert read_back.digest() == whole.digest()


async def test_no_disk_io_on_the_event_loop(spool: PartSpool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    on_loop: list[str] = []
    seen: set[str] = set()

    def watch(name: str) -> None:
        real = getattr(os, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            seen.add(name)
            if threading.get_ident() == loop_thread:
                on_loop.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, watched)

    for name in ("open", "pwritev", "pread", "fsync", "close", "ftruncate", "link"):
        watch(name)
    data = pattern(3 * MiB)
    await spool.open_upload("another-upload", {"n": 1})
    await put(spool, MiB, data[MiB:])
    await put(spool, 0, data[:MiB])
    await put(spool, 0, data[:MiB])
    finished = await spool.finish_part(UPLOAD, 1)
    assert await collect(spool.read_part(finished)) == data
    assert await collect(await spool.read_range(UPLOAD, 1, 10, 100)) == data[10:110]
    await spool.recover()
    await spool.uploads_older_than(10)
    await spool.remove_part(UPLOAD, 1)
    await spool.remove_upload(UPLOAD)
    assert seen >= {"open", "pwritev", "pread", "fsync", "close", "link"}
    assert on_loop == []


async def test_a_part_sent_whole_knows_its_md5_without_a_read(
        spool: PartSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    data = pattern(200_000)
    await put(spool, 0, data)
    finished = await spool.finish_part(UPLOAD, 1)
    assert finished.md5_hex == hashlib.md5(data).hexdigest()
    monkeypatch.setattr("edge.multipart.part_spool._hash_range", None)  # any read would now fail
    assert await spool.part_md5(finished) == hashlib.md5(data).hexdigest()
