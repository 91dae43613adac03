"""The contract every engine of the coordinator's state keeps.

The coordinator sees its state only through `StateStore`, so the embedded SQLite engine
and a server database (for several coordinators) are interchangeable. An engine keeps:

* Durability: a write returns once it is committed; what it returned survives a crash of
  the coordinator, and a store opened again on the same database sees it.
* Atomicity: each method is one transaction. A change and the webhook events it writes
  (`events`) commit together or not at all; a method that raises has changed nothing.
* The rules: a change reads the record it is about in its own transaction and lets
  coordinator/state/rules.py decide what it may do and what it writes. A refusal is a
  typed `CinError`: `IllegalTransition` (409) for a status the table forbids, CONFLICT
  for another change the file's status does not allow, FILE_NOT_FOUND for a change to a
  file that is not there.
* Concurrency: any number of calls may be in flight at once; each sees the others whole.
* Sharing: every coordinator on the same database sees the same state, the POPs'
  heartbeats included, and `locked` excludes a holder in any of them. An engine that one
  coordinator alone can use (SQLite) keeps heartbeats and locks in that process.

tests/state/test_state_conformance.py is this contract as tests; an engine runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from common.config import AppConfig
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import HandleBlock
from common.protocol.pop_events import PopEvent
from common.protocol.pop_load import PopLoad
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.wire import PopHeartbeat
from coordinator.events import Delivery, WebhookEvent

# Given the record as a change leaves it, the webhook events to write with the change.
EventsFor = Callable[[FileRecord], Sequence[WebhookEvent]]


@dataclass(frozen=True)
class PendingAbort:
    """A bucket multipart upload of an upload the coordinator ended (it expired), still to
    be aborted. It carries all the abort needs, so it outlives a delete of the file."""

    upload_id: str
    handle: str
    storage: str
    container: str
    key: str
    storage_upload_id: str
    reason: str


@dataclass(frozen=True)
class PendingRemoval:
    """What a REST store the coordinator failed (its POP stopped mid-store) may have left
    in the bucket, still to be removed: the object at its key, or a pending multipart
    upload of the driver's own put there."""

    handle: str
    storage: str
    container: str
    key: str


@dataclass(frozen=True)
class OutboxEntry:
    """A webhook delivery in the outbox, with what its attempts so far came to: what the
    operator's page shows of the backlog."""

    id: int
    apikey: str
    endpoint: str
    action: str
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    abandoned: bool


@dataclass(frozen=True)
class EventOutcome:
    """What became of one event of a POP's batch: "applied" now, "repeated" (applied
    before: its id is known), or "refused" (`reason`; nothing of it was written)."""

    event: PopEvent
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class AppliedBatch:
    outcomes: list[EventOutcome]
    statuses: dict[str, FileStatus]  # each file the batch named that is recorded, after it


@dataclass(frozen=True)
class HeardPop:
    """A POP's latest heartbeat, as any coordinator on the state heard it."""

    pop: str
    instance: str
    load: PopLoad
    draining: bool
    disk_full: bool
    age: float  # seconds since it was heard, by the engine's own clock (never a POP's)


class StateStore(Protocol):
    async def open(self) -> None:
        """Connect, and create or upgrade the schema. `open_state_store` calls it."""
        ...

    async def close(self) -> None:
        """Let the writes in flight commit, then disconnect."""
        ...

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        """Record the apps of the config (never their secrets)."""
        ...

    # Files.

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        """Insert a new file. If `origin` was seen before, return that file instead,
        unchanged: a POP retrying a request it did not hear the answer to gets the same
        handle."""
        ...

    async def get_file(self, handle: str) -> FileRecord | None: ...

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
        events: EventsFor | None = None,
    ) -> FileRecord:
        """Move a file to `status` (`rules.with_status`: checked against the status
        table) with its size and etag if given, and return it, writing the change's
        webhook events in the same transaction."""
        ...

    async def overwrite_file(self, handle: str, *, size: int, etag: str, mimetype: str,
                             events: EventsFor) -> FileRecord:
        """Record new bytes under a Complete file's handle (`rules.overwritten`): a new
        version, its hashes unknown, `uploaded` now."""
        ...

    async def delete_file(self, handle: str, *, events: EventsFor) -> FileRecord:
        """Remove a file's record, its upload and its parts (not an abort it is owed),
        unless it is still uploading (`rules.check_delete`); returns what it was. The
        handle is remembered as deleted (`was_deleted`)."""
        ...

    async def was_deleted(self, handle: str) -> bool:
        """Whether a file of this handle was deleted: for a handle leased to a POP, no
        record means "not reported yet" (a redirect to that POP) unless it was deleted
        (then it is gone, a 404)."""
        ...

    async def forget_deleted_files(self, deleted_before: float) -> int:
        """Forget the handles of files deleted before then (`was_deleted` is False for
        them from now on); returns how many."""
        ...

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        """Keep the hashes of one version (`rules.hashes_apply`); ignored if the file
        has moved on since, or is gone."""
        ...

    # Multipart uploads (the Upload API) and their parts.

    async def create_upload(self, record: FileRecord, upload: UploadRecord,
                            origin: str) -> UploadRecord:
        """Insert a Started file and the multipart upload that will bring its bytes, and
        return `upload`. If `origin` was seen before, return that upload instead and
        insert nothing: a start repeated to two coordinators at once makes one upload."""
        ...

    async def get_upload(self, upload_id: str | None = None, *, origin: str | None = None,
                         handle: str | None = None) -> UploadRecord | None:
        """An upload by its id, by the origin of the start that made it, or by the handle
        of the file it brings; with, once it expired, why (`failure`)."""
        ...

    async def upload_in_transit(self, handle: str, parts: Sequence[PartRecord],
                                tags: dict[str, str]) -> FileRecord:
        """Every byte is durable at POPs: record the parts they hold (`rules.held_parts`)
        and the tags, and move the file to In Transit (`rules.in_transit`); a file In
        Transit already is returned as it is."""
        ...

    async def part_stored(self, handle: str, part: PartRecord) -> None:
        """A part is in the bucket (from whichever POP sent it): recorded as stored
        (`rules.stored_part`), whatever was recorded of it before."""
        ...

    async def parts_of(self, handle: str) -> list[PartRecord]:
        """The parts recorded of a file's upload, in part order."""
        ...

    # Expiry of abandoned uploads.

    async def expire_uploads(self, started_before: float, reason: str, now: float,
                             limit: int) -> list[PendingAbort]:
        """Fail up to `limit` uploads, the longest started first, whose file is still
        Started and which started strictly before `started_before` (`rules.expired`);
        note their bucket uploads as to be aborted, and the reason on the upload, in one
        transaction. In Transit uploads are never chosen: their bytes are acknowledged.
        Files stored whole (the REST store) have no upload and are never chosen."""
        ...

    async def pending_aborts(self, limit: int) -> list[PendingAbort]:
        """Ended uploads whose bucket upload is not known to be aborted, oldest first."""
        ...

    async def abort_done(self, upload_id: str, now: float) -> None:
        """The bucket upload is gone: no longer pending. Repeating it changes nothing."""
        ...

    # Expiry of interrupted REST stores.

    async def expire_stores(self, started_before: float, now: float,
                            limit: int) -> list[PendingRemoval]:
        """Fail up to `limit` REST stores (files no Upload API upload brings), the
        longest started first, still Started and started strictly before
        `started_before` (`rules.expired`); note what they may have left in the bucket as
        to be removed, in one transaction. Files of the Upload API are never chosen."""
        ...

    async def pending_removals(self, limit: int) -> list[PendingRemoval]:
        """Failed stores whose leftovers are not known to be removed, oldest first."""
        ...

    async def removal_done(self, handle: str) -> None:
        """The leftovers are gone: no longer pending. Repeating it changes nothing."""
        ...

    async def key_in_use(self, storage: str, container: str, key: str, *,
                         besides: str) -> bool:
        """Whether a file other than `besides`, and not Failed, has this key in this
        container: an object there is that file's (a store may name its key with
        `path`)."""
        ...

    # Handle leases (common/protocol/handle_lease.py): the blocks of handles each POP
    # gives out on its own.

    async def grant_lease(self, block: HandleBlock) -> None:
        """Record a block as leased to `block.pop`. CONFLICT if a block with this id was
        leased before (ids are random: the caller tries again with another)."""
        ...

    async def lease(self, block: str) -> HandleBlock | None: ...

    async def leases(self) -> list[HandleBlock]:
        """Every block ever leased, oldest first."""
        ...

    # What POPs report in batches (common/protocol/pop_events.py).

    async def apply_pop_events(self, pop: str, events: Sequence[PopEvent], *, now: float,
                               stored: EventsFor) -> AppliedBatch:
        """Apply `events`, sent by `pop`, in order and in one transaction, each as
        coordinator/state/pop_event_rules.py says, each at most once: an event whose id
        was applied before is "repeated" and skipped; one the rules refuse is undone
        alone (a savepoint) and the others go on. A file made Complete writes `stored`'s
        webhook events with it. The ids of applied events are kept (with `now`) until
        `forget_applied_events`. One outcome per event, in their order."""
        ...

    async def forget_applied_events(self, applied_before: float) -> int:
        """Forget the ids of events applied before then; returns how many."""
        ...

    async def finishable_uploads(self, limit: int) -> list[str]:
        """Up to `limit` handles of files In Transit whose parts are all stored: only the
        bucket's multipart upload is left to complete."""
        ...

    # The webhook outbox: events written by the changes above, delivered by
    # coordinator.webhooks; each has an id of its own, the one its receivers see.

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries due at `now` and not abandoned, the earliest due
        first (then the oldest)."""
        ...

    async def claim_deliveries(self, now: float, limit: int, until: float) -> list[Delivery]:
        """Take up to `limit` deliveries due at `now` (as `due_deliveries` chooses them)
        to send: none of them is due again, for this coordinator or another, until
        `until` (a coordinator that dies while sending leaves them to be taken then). Two
        claims at once never take the same delivery."""
        ...

    async def release_deliveries(self, delivery_ids: Collection[int], now: float) -> None:
        """Claimed deliveries that will not be sent after all (their coordinator is
        stopping): due again at `now`, for any coordinator, rather than when the claim
        would have run out."""
        ...

    async def next_delivery_time(self, excluding: Collection[int] = ()) -> float | None:
        """When the earliest pending delivery not in `excluding` (those being sent) is due."""
        ...

    async def delivery_done(self, delivery_id: int) -> None:
        """Delivered: it leaves the outbox."""
        ...

    async def delivery_failed(self, delivery_id: int, error: str, *,
                              retry_at: float | None) -> None:
        """Count a failed attempt; try again at `retry_at`, or never (abandoned) when it
        is None."""
        ...

    async def outbox_counts(self) -> dict[str, int]:
        """{"pending": deliveries still to make, "abandoned": those given up on}."""
        ...

    # What the operator's page reads: bounded, each through an index, so the page costs
    # the same however many files the state holds.

    async def files_in_flight(self, limit: int) -> list[FileRecord]:
        """Up to `limit` files still Started or In Transit, the latest started first."""
        ...

    async def failed_files(self, limit: int) -> list[FileRecord]:
        """Up to `limit` Failed files, the latest started first."""
        ...

    async def outbox_entries(self, *, abandoned: bool, limit: int) -> list[OutboxEntry]:
        """Up to `limit` deliveries: pending ones the earliest due first (as
        `due_deliveries` orders them), or abandoned ones, the latest event first."""
        ...

    # What several coordinators share besides the records.

    async def pop_heard(self, beat: PopHeartbeat) -> None:
        """Keep a POP's heartbeat (a checked one) as its latest, heard now."""
        ...

    async def pops_heard(self) -> list[HeardPop]:
        """The latest heartbeat of every POP heard since the state was created (SQLite:
        since the store opened)."""
        ...

    def locked(self, key: str, *, wait: bool = True) -> AbstractAsyncContextManager[bool]:
        """`async with state.locked(key) as held:` hold `key` until the block ends, against
        every other holder of it on this state, in this coordinator or another; a holder
        that dies lets go. With `wait=False`, `held` is False at once when another holds
        it (and nothing is held): for work that one coordinator at a time does, and that
        the other does meanwhile. Else it waits its turn, and `held` is True."""
        ...
