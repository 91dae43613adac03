"""Directory fsyncs shared by the writers that renamed into one directory at once.

A rename is durable once its directory is fsynced, and one fsync covers every rename
that finished before it began. So a writer takes a ticket after its rename and waits for
an fsync that began after it: if one is already running, it waits for the next, which
then covers every writer that queued meanwhile. Under load many puts into one container
share one directory fsync instead of queueing for one each; a lone put syncs at once.
Called from worker threads (blocking).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class _Directory:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.renamed = 0  # tickets given out: renames finished
        self.synced = 0  # every ticket up to this is durable
        self.syncing = False


_directories: dict[Path, _Directory] = {}
_directories_lock = threading.Lock()


def _state(directory: Path) -> _Directory:
    with _directories_lock:
        state = _directories.get(directory)
        if state is None:
            state = _directories[directory] = _Directory()
        return state


def sync_after_rename(directory: Path) -> None:
    """Return once a rename this thread just finished in `directory` is durable."""
    state = _state(directory)
    with state.cond:
        state.renamed += 1
        ticket = state.renamed
        while state.synced < ticket:
            if state.syncing:
                state.cond.wait()
                continue
            state.syncing, covers = True, state.renamed
            ok = False
            state.cond.release()
            try:
                fsync_dir(directory)
                ok = True
            finally:
                state.cond.acquire()
                state.syncing = False
                if ok:
                    state.synced = max(state.synced, covers)
                state.cond.notify_all()


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
