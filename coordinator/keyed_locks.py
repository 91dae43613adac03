"""One asyncio lock per key (a handle, an upload), kept only while it is in use."""

from __future__ import annotations

import asyncio
import weakref


class KeyedLocks:
    """`locks(key)` is the same lock for everyone working on `key` at the same time.

    Locks are held weakly: once nobody holds or awaits a key's lock it is dropped, so a
    coordinator that has seen millions of handles keeps only the locks in use."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    def __len__(self) -> int:
        return len(self._locks)
