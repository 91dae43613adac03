"""The contract of a POP's journal: what the store and Upload API routes rely on.

A POP takes uploads without asking the coordinator (README, "The edge stands on its
own"). For that it keeps, durably on its own disk:

* the blocks of handles the coordinator leased it, and which of their handles are used:
  a handle is given out once, even across a crash (indexes are reserved on disk ahead of
  use, a few at a time, so that taking a handle rarely waits for a disk write);
* the facts it acknowledged (common/protocol/pop_events.py), in order, until the
  coordinator has acknowledged them: a store or upload step is answered only once its
  event is fsync'd here;
* its view of each file it began (the record, and the upload for the Upload API), so it
  can answer for a file the coordinator has not heard of yet, and so that a store it
  began and never finished is found when it starts again.

`PopJournal` is that; edge/journal/shipper.py ships the events and edge/journal/leases.py
keeps the lease topped up, both in the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.protocol.pop_events import PopEvent
from common.protocol.records import FileRecord, UploadRecord


@dataclass(frozen=True)
class LocalFile:
    """A file as this POP knows it. `acknowledged`: the coordinator has applied every
    event of it recorded so far (from then on the coordinator's view is the authority)."""

    record: FileRecord
    upload: UploadRecord | None
    acknowledged: bool


@dataclass(frozen=True)
class Unshipped:
    seq: int  # the journal's order: ship in increasing seq
    event: PopEvent


class PopJournal(Protocol):
    async def open(self) -> None:
        """Open (creating) the journal's database in the POP's spool folder."""
        ...

    async def close(self) -> None: ...

    # Handles.

    async def take_handle(self) -> str:
        """A handle of this POP's lease never given out before. CinError(NO_HANDLES) if
        the lease is used up (the lease keeper could not reach the coordinator)."""
        ...

    def handles_left(self) -> int:
        """Handles still to give out, over every block held."""
        ...

    async def add_lease(self, block: str, size: int) -> None:
        """A block the coordinator granted: durable before it returns."""
        ...

    # Facts: each call is one transaction, durable (fsync'd) before it returns.

    async def begin(self, record: FileRecord, upload: UploadRecord | None = None,
                    event: PopEvent | None = None) -> None:
        """A file begun here: a REST store (no upload, no event: nothing is acknowledged
        yet) or an Upload API start (its upload, and its `UploadStarted` event)."""
        ...

    async def record(self, event: PopEvent, record: FileRecord | None = None,
                     upload: UploadRecord | None = None) -> None:
        """Append `event` (and replace this POP's view of its file with `record` and
        `upload` where given)."""
        ...

    async def forget(self, handle: str) -> None:
        """A file begun here that ended with nothing acknowledged (a REST store that
        failed and cleaned up after itself): no view of it is kept, no event sent."""
        ...

    # This POP's view.

    async def file(self, handle: str) -> LocalFile | None: ...

    async def upload(self, upload_id: str) -> LocalFile | None: ...

    async def interrupted_stores(self) -> list[FileRecord]:
        """REST stores begun and neither finished nor forgotten: at start-up, those the
        POP was taking when it stopped."""
        ...

    # Shipping (edge/journal/shipper.py).

    async def unshipped(self, limit: int) -> list[Unshipped]:
        """The oldest events not yet acknowledged by the coordinator, in order."""
        ...

    async def acknowledged(self, seqs: Sequence[int], statuses: dict[str, str]) -> None:
        """The coordinator applied (or refused for good) these events: drop them, mark
        the files they named acknowledged if no later event of theirs is pending, and
        note the statuses it answered with (a file now Complete or Failed)."""
        ...

    async def pending_count(self) -> int:
        """Events waiting to be shipped (a gauge, and a drain waits for 0)."""
        ...

    def wake_shipper(self) -> None:
        """A new event is durable: the shipper should send soon."""
        ...
