"""The POP journal's own ceiling: stores recorded per second by concurrent writers, and
the commits (each one fsync of the WAL) they share.

Each writer does what a REST store does to the journal: takes a handle, begins the file,
records its FileStored event (two durable writes), over and over, for `--seconds`. The
journal lives in a new folder under --dir (default: the system's temp dir, which should
be on the disk under test) and is removed at the end.

    python -m bench.journal --writers 50 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import MAX_BLOCK_SIZE, new_block_id
from common.protocol.pop_events import FileStored, new_event_id
from common.protocol.records import FileRecord
from edge.journal.sqlite_journal import SqliteJournal

SECRET = secrets.token_hex(16)  # handles made here are never checked elsewhere


def _record(handle: str, status: FileStatus) -> FileRecord:
    return FileRecord(handle=handle, apikey="BENCHAPIKEY", storage="bucket", provider="s3",
                      container="bench", key=f"{handle}_f.bin", filename="f.bin",
                      mimetype="application/octet-stream", size=10240, status=status,
                      pop="bench", uploaded=time.time(),
                      etag="e" if status is FileStatus.COMPLETE else None)


async def measure(folder: Path, writers: int, seconds: float) -> dict[str, float]:
    commits: list[float] = []
    journal = SqliteJournal(folder, SECRET, on_commit=commits.append)
    await journal.open()
    await journal.add_lease(new_block_id(), MAX_BLOCK_SIZE)
    commits.clear()
    stores = 0
    until = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal stores
        while time.perf_counter() < until:
            handle = await journal.take_handle()
            await journal.begin(_record(handle, FileStatus.STARTED))
            done = _record(handle, FileStatus.COMPLETE)
            await journal.record(FileStored(id=new_event_id(), handle=handle,
                                            at=time.time(), record=done), done)
            stores += 1

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    await journal.close()
    return {"stores_per_second": stores / elapsed, "commits_per_store": len(commits) / stores,
            "cpu_ms_per_store": 1000 * cpu / stores,
            "mean_commit_ms": 1000 * sum(commits) / max(1, len(commits))}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cin-journal-", dir=args.dir))
    try:
        figures = asyncio.run(measure(folder, args.writers, args.seconds))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.writers} writers, {args.seconds:g} s: "
          f"{figures['stores_per_second']:.0f} stores/s, "
          f"{figures['commits_per_store']:.3f} commits (fsyncs of the WAL) per store, "
          f"{figures['cpu_ms_per_store']:.3f} ms CPU per store, "
          f"mean commit {figures['mean_commit_ms']:.2f} ms")


if __name__ == "__main__":
    main()
