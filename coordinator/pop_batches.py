"""The facts POPs ship in batches (`wire.EventBatch`), applied at the coordinator.

A POP takes stores and uploads on its own and records what it did as events
(common/protocol/pop_events.py), shipped oldest first until acknowledged. Here a batch:

1. is judged event by event: one that is malformed, or names a handle not leased to the
   POP sending it (another POP's, one never leased, a bad MAC), or an upload id not made
   for its handle, is refused with a reason and its position in the batch (its id may be
   unreadable), logged, and changes nothing;
2. is applied in one transaction (`StateStore.apply_pop_events`): each event at most once
   (by id: a batch sent again, or retried after a lost reply, changes nothing), in order,
   one the rules refuse undone alone;
3. then the webhook outbox is woken for files made Complete, the store expiry for leftovers
   owed removal, and each upload of the batch now In Transit with all its parts stored is
   finished (the bucket's multipart upload completed, the file Complete) before the reply,
   so the statuses it gives are as final as they can be. An upload left In Transit by a
   coordinator that stopped in between is finished by coordinator/upload_finisher.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from common.config import Config
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import handle_of_upload_id
from common.protocol.pop_events import (
    FileStored,
    PopEvent,
    StoreAbandoned,
    UploadStarted,
    UploadStored,
    event_from_wire,
)
from common.storage import StorageError
from coordinator import events
from coordinator.files import FileAuthority
from coordinator.leases import HandleLeases
from coordinator.metrics import CoordinatorMetrics
from coordinator.multipart import MultipartUploads
from coordinator.state import AppliedBatch, StateStore
from coordinator.state.pop_event_rules import refusal

log = logging.getLogger("cin.coordinator.pop_batches")

# How long the ids of applied events are kept. A POP retries a batch until it is
# acknowledged, so a replay comes within the length of an outage; a week is far past it.
# A replay after that is still harmless (pop_event_rules.py: every event finds its effect
# there already), the ids are only the first guard.
EVENT_ID_RETENTION = 7 * 86400.0


class PopBatches:
    def __init__(self, state: StateStore, config: Config, leases: HandleLeases,
                 files: FileAuthority, uploads: MultipartUploads, metrics: CoordinatorMetrics,
                 on_removals: Callable[[], None] = lambda: None) -> None:
        self.state = state
        self.secret = config.internal_secret
        self.pops = frozenset(pop.name for pop in config.pops)
        self.leases = leases
        self.files = files
        self.uploads = uploads
        self.metrics = metrics
        self.on_removals = on_removals

    async def apply(self, batch: wire.EventBatch) -> wire.BatchReply:
        if batch.pop not in self.pops:
            raise CinError(Code.BAD_MESSAGE, f"no POP named {str(batch.pop)[:64]!r} is "
                                             "configured")
        if not isinstance(batch.events, list):
            raise CinError(Code.BAD_MESSAGE, "events is a list")
        started = time.perf_counter()
        # Each refusal names the event's position in the batch too: an event too
        # malformed to have a readable id is still one the POP can name and drop.
        refused: list[list[str]] = []
        accepted: list[PopEvent] = []
        positions: list[int] = []  # of the accepted events, in the batch
        for position, body in enumerate(batch.events):
            event, why = await self._judge(batch.pop, body)
            if event is None or why is not None:
                event_id = event.id if event is not None else _id_of(body)
                kind = event.KIND if event is not None else "malformed"
                log.warning("POP %s: %s event %s (#%d of the batch) refused: %s", batch.pop,
                            kind, event_id or "with no id", position, why)
                self.metrics.pop_event(kind, "refused")
                refused.append([event_id, why or "refused", str(position)])
                continue
            accepted.append(event)
            positions.append(position)
        applied = AppliedBatch([], {})
        if accepted:
            applied = await self.state.apply_pop_events(
                batch.pop, accepted, now=time.time(),
                stored=self.files.events_for(events.UPLOAD))
        kinds_applied: set[type[PopEvent]] = set()
        # One outcome for each accepted event, in their order (StateStore.apply_pop_events).
        for position, outcome in zip(positions, applied.outcomes, strict=True):
            self.metrics.pop_event(outcome.event.KIND, outcome.outcome)
            if outcome.outcome == "refused":
                log.warning("POP %s: %s event %s of %s refused: %s", batch.pop,
                            outcome.event.KIND, outcome.event.id, outcome.event.handle,
                            outcome.reason)
                refused.append([outcome.event.id, outcome.reason, str(position)])
            elif outcome.outcome == "applied":
                kinds_applied.add(type(outcome.event))
        if kinds_applied & {FileStored, UploadStored}:
            self.files.on_events()
        if StoreAbandoned in kinds_applied:
            self.on_removals()
        statuses = dict(applied.statuses)
        finishing = [handle for handle, status in statuses.items()
                     if status is FileStatus.IN_TRANSIT]
        for handle, status in zip(finishing, await asyncio.gather(
                *(self._finish(handle) for handle in finishing)), strict=True):
            statuses[handle] = status
        self.metrics.pop_batch(time.perf_counter() - started)
        return wire.BatchReply(refused=refused,
                               statuses={handle: status.value
                                         for handle, status in statuses.items()})

    async def _judge(self, pop: str, body: Any) -> tuple[PopEvent | None, str | None]:
        """The event `body` stands for, and why it is refused (None if it is not)."""
        try:
            event = event_from_wire(body)
        except CinError as exc:
            return None, refusal(exc)
        holder = await self.leases.holder(event.handle)
        if holder != pop:
            why = ("its handle is POP " + holder + "'s" if holder is not None
                   else "its handle was never leased")
            return event, why
        upload_id = (event.upload.upload_id if isinstance(event, UploadStarted)
                     else getattr(event, "upload_id", None))
        if upload_id is not None and not _upload_id_of(self.secret, upload_id, event.handle):
            return event, "its upload id was not made for its handle"
        return event, None

    async def _finish(self, handle: str) -> FileStatus:
        """Finish an upload the batch left In Transit, if its parts are all stored; its
        status after. A bucket that fails now leaves it to the finisher's next round."""
        try:
            return (await self.uploads.finish(handle)).status
        except (CinError, StorageError) as exc:
            log.warning("upload of %s not finished yet: %s", handle, exc)
            return FileStatus.IN_TRANSIT

    async def forget_old_ids(self) -> int:
        return await self.state.forget_applied_events(time.time() - EVENT_ID_RETENTION)


def _upload_id_of(secret: str, upload_id: Any, handle: str) -> bool:
    return isinstance(upload_id, str) and handle_of_upload_id(secret, upload_id) == handle


def _id_of(body: Any) -> str:
    """The id of an event too malformed to read, as far as it has one."""
    event_id = body.get("id") if isinstance(body, dict) else None
    return event_id[:64] if isinstance(event_id, str) else ""
