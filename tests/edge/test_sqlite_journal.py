"""The POP's journal on a real SQLite file: what it keeps across a reopen and a kill -9,
handles given out once, events in order until acknowledged, views pruned, and writes
that arrive together sharing a commit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from journal_support import (
    SECRET,
    file_record,
    part_stored,
    stored,
    upload_started,
)

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import leased_handle, new_block_id
from edge.journal.sqlite_journal import JOURNAL_FILE, RESERVE_AHEAD, SqliteJournal


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    opened = SqliteJournal(tmp_path, SECRET)
    await opened.open()
    yield opened
    await opened.close()


async def reopened(path: Path, **kwargs: Any) -> SqliteJournal:
    journal = SqliteJournal(path, SECRET, **kwargs)
    await journal.open()
    return journal


async def test_handles_come_from_the_lease_once_each(journal: SqliteJournal) -> None:
    with pytest.raises(CinError) as raised:
        await journal.take_handle()
    assert raised.value.code is Code.NO_HANDLES
    first, second = new_block_id(), new_block_id()
    await journal.add_lease(first, 100)
    await journal.add_lease(first, 100)  # the same grant twice counts once
    await journal.add_lease(second, 50)
    assert journal.handles_left() == 150

    handles = await asyncio.gather(*(journal.take_handle() for _ in range(150)))
    assert len(set(handles)) == 150
    made = [leased_handle(SECRET, handle) for handle in handles]
    assert all(found is not None for found in made)
    # The older block is used up first, each index once.
    assert sorted((m.block, m.index) for m in made if m is not None) == sorted(
        [(first, i) for i in range(100)] + [(second, i) for i in range(50)])
    assert journal.handles_left() == 0
    with pytest.raises(CinError) as raised:
        await journal.take_handle()
    assert raised.value.code is Code.NO_HANDLES


async def test_a_reopened_journal_goes_on_past_every_reserved_handle(tmp_path: Path) -> None:
    journal = await reopened(tmp_path)
    block = new_block_id()
    await journal.add_lease(block, 1000)
    given = [await journal.take_handle() for _ in range(10)]
    await journal.close()

    journal = await reopened(tmp_path)
    # What was reserved is counted as given: at most one reservation's worth is lost.
    assert 1000 - 10 - RESERVE_AHEAD <= journal.handles_left() < 990
    more = [await journal.take_handle() for _ in range(200)]
    await journal.close()
    assert not set(given) & set(more)
    assert len(set(more)) == 200


async def test_callers_cancelled_while_handles_are_reserved_leave_no_gap_in_safety(
        tmp_path: Path) -> None:
    """Callers that give up while the reservation they wait on is being written: the
    reservation stands, the others get their handles, and none comes twice."""
    journal = await reopened(tmp_path)
    await journal.add_lease(new_block_id(), 10_000)
    waiting = [asyncio.ensure_future(journal.take_handle()) for _ in range(20)]
    await asyncio.sleep(0)  # every one is waiting on the first reservation
    for task in waiting[::2]:
        task.cancel()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    taken = [h for h in outcomes if isinstance(h, str)]
    assert len(taken) == 10
    taken += [await journal.take_handle() for _ in range(100)]
    await journal.close()
    journal = await reopened(tmp_path)
    taken += [await journal.take_handle() for _ in range(100)]
    await journal.close()
    assert len(set(taken)) == len(taken) == 210


# Run in a child process: takes handles as fast as it can, printing each one it got,
# until it is killed.
_TAKER = """
import asyncio, sys
from pathlib import Path
from typing import Any
from edge.journal.sqlite_journal import SqliteJournal

async def main() -> None:
    journal = SqliteJournal(Path(sys.argv[1]), sys.argv[2])
    await journal.open()
    print("open", flush=True)
    while True:
        handles = await asyncio.gather(*(journal.take_handle() for _ in range(7)))
        print(" ".join(handles), flush=True)

asyncio.run(main())
"""


async def test_no_handle_is_given_twice_across_kill_9(tmp_path: Path) -> None:
    """A POP killed while taking handles, three times over: after each restart none of
    the handles it had given out comes again."""
    journal = await reopened(tmp_path)
    await journal.add_lease(new_block_id(), 100_000)
    await journal.close()
    seen: set[str] = set()
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", _TAKER, str(tmp_path), SECRET],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "open"
            taken: list[str] = []
            while len(taken) < 300:
                taken.extend(child.stdout.readline().split())
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
        assert not seen & set(taken), "a handle was given out again after a kill -9"
        assert len(set(taken)) == len(taken)
        seen.update(taken)
    journal = await reopened(tmp_path)
    after = {await journal.take_handle() for _ in range(100)}
    await journal.close()
    assert not seen & after


async def test_facts_and_views_survive_a_reopen(tmp_path: Path) -> None:
    journal = await reopened(tmp_path)
    await journal.begin(file_record("A" * 20))
    await journal.record(stored("A" * 20), file_record("A" * 20, FileStatus.COMPLETE, "e"))
    started = upload_started("B" * 20)
    await journal.begin(started.record, started.upload, started)
    await journal.record(part_stored("B" * 20, 1))
    await journal.close()

    journal = await reopened(tmp_path)
    assert (tmp_path / JOURNAL_FILE).exists()
    pending = await journal.unshipped(10)
    assert [u.event.KIND for u in pending] == ["file_stored", "upload_started", "part_stored"]
    assert pending[1].event == started
    assert [u.seq for u in pending] == sorted(u.seq for u in pending)
    assert await journal.pending_count() == 3
    assert await journal.newest_seq() == pending[-1].seq

    a = await journal.file("A" * 20)
    assert a is not None and a.record.status is FileStatus.COMPLETE and a.upload is None
    assert not a.acknowledged
    b = await journal.upload(started.upload.upload_id)
    assert b is not None and b.upload == started.upload and b.record.handle == "B" * 20
    assert await journal.file("C" * 20) is None
    assert await journal.upload("no-such-upload") is None
    await journal.close()


async def test_interrupted_stores_are_those_begun_and_neither_finished_nor_forgotten(
        journal: SqliteJournal) -> None:
    for handle in ("A" * 20, "B" * 20, "C" * 20):
        await journal.begin(file_record(handle))
    started = upload_started("D" * 20)
    await journal.begin(started.record, started.upload, started)
    await journal.record(stored("B" * 20), file_record("B" * 20, FileStatus.COMPLETE, "e"))
    await journal.forget("C" * 20)
    assert [r.handle for r in await journal.interrupted_stores()] == ["A" * 20]
    assert await journal.file("C" * 20) is None
    assert await journal.pending_count() == 2  # the start and the store; nothing forgotten


async def test_acknowledged_drops_events_and_marks_files_once_nothing_waits(
        tmp_path: Path) -> None:
    clock = Clock()
    journal = await reopened(tmp_path, retention=60.0, started_retention=600.0, clock=clock)
    started = upload_started("U" * 20)
    await journal.begin(started.record, started.upload, started)
    await journal.begin(file_record("S" * 20))
    await journal.record(stored("S" * 20), file_record("S" * 20, FileStatus.COMPLETE, "e"))
    first = await journal.unshipped(10)
    await journal.record(part_stored("U" * 20, 1))  # after the batch was read

    await journal.acknowledged([u.seq for u in first],
                               {"U" * 20: "Started", "S" * 20: "Complete", "X" * 20: "odd"})
    upload = await journal.file("U" * 20)
    assert upload is not None and not upload.acknowledged  # its part is still pending
    store = await journal.file("S" * 20)
    assert store is not None and store.acknowledged
    left = await journal.unshipped(10)
    assert [u.event.KIND for u in left] == ["part_stored"]

    # The coordinator's answer is this POP's view from then on.
    await journal.acknowledged([left[0].seq], {"U" * 20: "In Transit"})
    upload = await journal.file("U" * 20)
    assert upload is not None and upload.acknowledged
    assert upload.record.status is FileStatus.IN_TRANSIT
    assert await journal.unshipped(10) == []
    assert await journal.pending_count() == 0

    # A finished file goes after `retention`, one under way after `started_retention`.
    clock.now += 61
    assert await journal.prune() == 1
    assert await journal.file("S" * 20) is None
    assert await journal.file("U" * 20) is not None
    clock.now += 600
    assert await journal.prune() == 1
    assert await journal.upload(started.upload.upload_id) is None
    await journal.close()


async def test_a_new_event_makes_an_acknowledged_file_pending_again(
        journal: SqliteJournal) -> None:
    started = upload_started("U" * 20)
    await journal.begin(started.record, started.upload, started)
    await journal.acknowledged([u.seq for u in await journal.unshipped(10)], {})
    found = await journal.file("U" * 20)
    assert found is not None and found.acknowledged
    woken: list[int] = []
    journal.on_event = lambda: woken.append(1)
    await journal.record(part_stored("U" * 20, 1))
    found = await journal.file("U" * 20)
    assert found is not None and not found.acknowledged
    assert woken == [1]


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    """50 stores at once, each a begin and a record: every event is kept, each file's in
    the order it was recorded, and the writes share far fewer commits than there are."""
    commits: list[float] = []
    journal = SqliteJournal(tmp_path, SECRET, on_commit=commits.append)
    await journal.open()
    await journal.add_lease(new_block_id(), 10_000)
    commits.clear()

    async def store() -> str:
        handle = await journal.take_handle()
        await journal.begin(file_record(handle))
        await journal.record(stored(handle), file_record(handle, FileStatus.COMPLETE, "e"))
        await journal.record(part_stored(handle, 1))
        return handle

    handles = await asyncio.gather(*(store() for _ in range(50)))
    events = await journal.unshipped(1000)
    assert len(events) == 100
    for handle in handles:
        kinds = [u.event.KIND for u in events if u.event.handle == handle]
        assert kinds == ["file_stored", "part_stored"]
    writes = 50 * 3
    assert len(commits) < writes // 3, f"{len(commits)} commits for {writes} writes"
    assert await journal.interrupted_stores() == []
    await journal.close()


async def test_a_bad_lease_is_refused(journal: SqliteJournal) -> None:
    with pytest.raises(ValueError):
        await journal.add_lease("short", 10)
    with pytest.raises(ValueError):
        await journal.add_lease(new_block_id(), 0)
    assert journal.handles_left() == 0
