"""Everything tus asks of cin's uploads, in one place: start an upload, look one up,
complete it, end it.

Each call is what the Upload API's routes do for the same step (edge/multipart/
start_routes.py and part_routes.py, through edge/multipart/uploads.py): a tus upload is an
Upload API upload whose requests speak tus. One started at this POP is named from its
lease and journaled, without asking the coordinator; one started elsewhere is asked of
the coordinator. Only termination always asks the coordinator (it fails the file).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from common.config import Config, PopConfig
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.handle_lease import handle_of_upload_id
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.security import Credentials
from common.protocol.upload_start import start_message
from common.storage import StorageError
from common.storage.storage_set import StorageSet
from edge.coordinator_client import CoordinatorClient
from edge.multipart.part_transfer import PartTransfer
from edge.multipart.uploads import FLUSH_SECONDS, KnownUpload, PopUploads

log = logging.getLogger("cin.edge.tus")


@dataclass(frozen=True)
class CinUpload:
    record: FileRecord
    upload: UploadRecord
    parts: tuple[PartRecord, ...] = ()  # as recorded (lookup only)
    local: bool = False  # started at this POP: its journal describes it

    @property
    def known(self) -> KnownUpload:
        return KnownUpload(self.record, self.upload, self.local)

    def meta(self) -> dict[str, Any]:
        """What the part spool keeps of it: what the transfer reads (part_transfer.py)."""
        return {"record": self.record.to_wire(), "upload": self.upload.to_wire(),
                "local": self.local}


class CinUploads:
    """The coordinator's side of tus uploads at one POP."""

    def __init__(self, config: Config, pop: PopConfig, coordinator: CoordinatorClient,
                 storage: StorageSet, uploads: PopUploads, transfer: PartTransfer) -> None:
        self.config = config
        self.pop = pop
        self.coordinator = coordinator
        self.storage = storage
        self.uploads = uploads
        self.transfer = transfer

    def check_start(self, fields: Mapping[str, Any], creds: Credentials) -> wire.StartUpload:
        """The start as the Upload API checks it (app, credentials, policy, size, store
        options), without asking anyone: a refused creation costs no round trip."""
        return start_message(self.config, fields, creds, pop=self.pop.name,
                             origin=f"{self.pop.name}:{secrets.token_hex(12)}")

    async def start(self, message: wire.StartUpload) -> CinUpload:
        """The file's handle (from this POP's lease) and the bucket's multipart upload."""
        record, upload = await self.uploads.start(message)
        return CinUpload(record, upload, local=True)

    async def lookup(self, upload_id: str) -> CinUpload:
        """The upload, its file and its stored parts; FILE_NOT_FOUND when nobody started
        it."""
        known = await self.uploads.find(upload_id)
        parts = (self.transfer.stored_parts(upload_id) if known.local
                 else await self.uploads.recorded_parts(known))
        return CinUpload(known.record, known.upload, tuple(parts), known.local)

    async def complete(self, cin: CinUpload, parts: Mapping[int, int],
                       tags: Mapping[str, str]) -> FileRecord:
        """Every byte is durable (here, or stored from here or another POP): In Transit,
        or Complete when every part is in the bucket already."""
        return await self.uploads.complete(cin.known, dict(parts), dict(tags))

    async def terminate(self, cin: CinUpload) -> FileRecord:
        """The client ended the upload (tus termination): the file is Failed and the
        bucket's multipart upload, if it has one, aborted."""
        # Failed first: from then on no complete can make it In Transit, so the abort
        # destroys no acknowledged byte. The coordinator decides: it must have heard of
        # the upload first.
        if cin.local:
            await self.uploads.flush(FLUSH_SECONDS)
        record = await self.coordinator.file(wire.FileFailed(
            handle=cin.record.handle, reason="terminated by the client"))
        if not cin.upload.in_one_put:
            try:
                await self.storage[cin.record.storage].abort_multipart(
                    cin.record.container, cin.record.key, cin.upload.storage_upload_id)
            except StorageError as exc:  # the bucket expires what it keeps of it
                log.warning("terminated upload %s not aborted in the bucket: %s",
                            cin.upload.upload_id, exc)
        return record


    async def stored_whole(self, upload_id: str, *, ask_coordinator: bool) -> FileRecord | None:
        """The file a creation that carried all its bytes stored as a REST store does
        (edge/tus/one_shot.py): it has no upload, and its tus id is the upload id minted
        from its handle. From this POP's journal; then, if `ask_coordinator`, the
        coordinator's record. None when the id names no such file."""
        handle = handle_of_upload_id(self.config.internal_secret, upload_id)
        if handle is None:
            return None
        local = await self.uploads.journal.file(handle)
        if local is not None:
            return local.record if local.upload is None else None
        if not ask_coordinator:
            return None
        try:
            return await self.coordinator.file(wire.LookupFile(handle=handle))
        except CinError as error:
            if error.code is Code.FILE_NOT_FOUND:
                return None
            raise


CIN_UPLOADS = web.AppKey("tus_cin_uploads", CinUploads)
