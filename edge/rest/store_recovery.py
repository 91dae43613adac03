"""REST stores this POP began and never finished: it stopped mid-store.

Found in the journal when the POP starts again, each becomes a `StoreAbandoned` fact: the
coordinator records the file Failed and removes what the store may have left at its key
(the bucket's half of a put, or an object whose store was never acknowledged), as it does
for a store that outlived the store TTL. The client was never told the file exists.
"""

from __future__ import annotations

import logging
import time

from common.protocol.file_status import FileStatus
from common.protocol.pop_events import StoreAbandoned, new_event_id
from edge.journal.protocol import PopJournal

log = logging.getLogger("cin.edge.store")


async def report_interrupted_stores(journal: PopJournal) -> int:
    """Journal a `StoreAbandoned` for each interrupted store; returns how many."""
    interrupted = await journal.interrupted_stores()
    for record in interrupted:
        log.warning("store of %s was interrupted when this POP stopped; reporting it failed",
                    record.handle)
        await journal.record(StoreAbandoned(new_event_id(), record.handle, time.time(), record),
                             record=record.with_changes(status=FileStatus.FAILED))
    if interrupted:
        journal.wake_shipper()
    return len(interrupted)
