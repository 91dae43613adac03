"""Uploads in Intelligent Ingestion mode: 8 MiB parts, each sent as chunks at offsets
sized by `ChunkSizer` (or of one fixed size), committed part by part, several parts in
flight at once, then completed.

An upload keeps its state in a small file (sdk/resume.py) from its start to its
complete, so the same call carries on after a Ctrl-C, a dropped network or a crash.
Before sending anything it asks `POST /multipart/status` at the POP it is about to use
which parts are stored (from any POP) and how much of each other part that POP holds,
and sends only the rest. A POP that fails (it cannot be reached, says it is shutting
down, or keeps failing chunks of the smallest size) is left for the next nearest, where
the upload goes on in the same way: S3 takes the parts of one upload from anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.protocol.chunk_sizer import (
    DEFAULT_TARGET_SECONDS,
    MIN_CHUNK,
    NEXT_CHUNK_HEADER,
    PART_SIZE,
    THROUGHPUT_HEADER,
    ChunkSizer,
)
from sdk.credentials import Credentials
from sdk.errors import (
    ApiError,
    CinClientError,
    ConnectionFailed,
    NoPopAvailable,
    UploadInterrupted,
)
from sdk.pacing import RateLimiter
from sdk.pops import PopFinder, PopInfo
from sdk.progress import ProgressCallback, ProgressTracker
from sdk.resume import FileIdentity, ResumeState, ResumeStore, file_identity, state_key
from sdk.transport import Transport

log = logging.getLogger("cin.sdk.upload")

SLICE_BYTES = 256 * 1024  # a chunk goes to aiohttp in slices: progress, rate limit
RETRY_PAUSE = 0.2  # seconds before the first retry; doubled each time, up to the cap
RETRY_PAUSE_CAP = 5.0


@dataclass(frozen=True)
class UploadSettings:
    pop: str = "auto"  # "auto": the nearest; else a POP's name (then the others)
    request_timeout: float = 60.0  # seconds for any one request, a chunk's PUT included
    chunk_size: int | None = None  # fixed chunks of this size; None: adaptive
    parallel_parts: int = 3
    failover_after: int = 3  # failures in a row at the smallest chunk before moving on
    max_rate: float | None = None  # bytes per second, all chunks together
    part_size: int = PART_SIZE

    def __post_init__(self) -> None:
        if self.chunk_size is not None and not MIN_CHUNK <= self.chunk_size <= self.part_size:
            raise ValueError(f"chunk_size must be from {MIN_CHUNK} to {self.part_size} bytes")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if self.parallel_parts < 1 or self.failover_after < 1:
            raise ValueError("parallel_parts and failover_after must be at least 1")
        if self.max_rate is not None and self.max_rate <= 0:
            raise ValueError("max_rate must be positive")

    def sizer(self) -> ChunkSizer:
        if self.chunk_size is not None:  # fixed: the floor and the ceiling are the size
            return ChunkSizer(initial=self.chunk_size, minimum=self.chunk_size,
                              maximum=self.chunk_size)
        # Aim well within the timeout: a chunk that takes its target time on a link
        # that then halves its rate still finishes.
        target = min(DEFAULT_TARGET_SECONDS, self.request_timeout / 4)
        return ChunkSizer(initial=1024 * 1024, maximum=self.part_size, target_seconds=target)


@dataclass(frozen=True)
class Destination:
    """Where and how cin stores the file (the start's `store` and the file's name)."""

    filename: str | None = None  # default: the local file's name
    mimetype: str | None = None  # default: cin's guess from the name and content
    path: str | None = None  # the key in the bucket; ending in "/" makes it a folder
    container: str | None = None
    location: str = "s3"
    region: str | None = None
    access: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def store(self) -> dict[str, str]:
        values = {"location": self.location, "path": self.path, "container": self.container,
                  "region": self.region, "access": self.access}
        return {key: value for key, value in values.items() if value is not None}

    def identity(self) -> dict[str, Any]:
        """What makes two uploads of one file different uploads (the resume key)."""
        return {"store": self.store(), "filename": self.filename, "mimetype": self.mimetype,
                "tags": dict(self.tags)}


@dataclass(frozen=True)
class UploadResult:
    handle: str
    url: str
    size: int
    status: str  # the file's upload_status: "In Transit" (durable at a POP, its link
    # works already) or "Complete" (in the bucket)
    filename: str
    upload_id: str
    bytes_sent: int  # file bytes put on the wire by this call, retries included
    resumed_bytes: int  # bytes stored or held before this call, not sent again
    elapsed: float  # seconds
    pops: tuple[str, ...]  # the POPs this call sent to, in order
    chunk_failures: int  # chunks that failed or timed out and were sent again

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "url": self.url, "size": self.size,
                "status": self.status, "filename": self.filename,
                "upload_id": self.upload_id, "bytes_sent": self.bytes_sent,
                "resumed_bytes": self.resumed_bytes, "elapsed": round(self.elapsed, 3),
                "pops": list(self.pops), "chunk_failures": self.chunk_failures}


# A POP that answers these will not take this upload's bytes however often it is asked:
# it is shutting down, or its disk is full.
_POP_CANNOT_TAKE_BYTES = frozenset({"shutting_down", "insufficient_storage"})


class _PopFailed(Exception):
    """The POP in use failed: the upload moves to the next."""

    def __init__(self, cause: CinClientError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _StartAfresh(Exception):
    """The upload the state names is over at cin (expired, or unknown to it)."""


@dataclass
class _Part:
    number: int
    start: int  # in the file
    size: int
    offset: int = 0  # the next byte of the part to send


@dataclass
class _Finished:
    handle: str
    status: str
    filename: str


class Uploader:
    """Uploads through the POPs `finder` knows, keeping state in `store` (None: none)."""

    def __init__(self, transport: Transport, coordinator: str, apikey: str,
                 credentials: Credentials, finder: PopFinder, store: ResumeStore | None,
                 settings: UploadSettings) -> None:
        self.transport = transport
        self.coordinator = coordinator
        self.apikey = apikey
        self.credentials = credentials
        self.finder = finder
        self.store = store
        self.settings = settings

    async def upload(self, path: Path, destination: Destination,
                     progress: ProgressCallback | None = None) -> UploadResult:
        try:
            identity = await asyncio.to_thread(file_identity, path)
        except OSError as error:
            raise CinClientError(f"cannot read {path}: {error.strerror or error}") from error
        if identity.size == 0:
            raise CinClientError(f"{path} is empty: cin stores files of at least one byte")
        run = _Run(self, path, identity, destination, ProgressTracker(identity.size, progress))
        return await run.go()


class _Run:
    """One call of `upload`: its file, its state, and the POPs it has tried."""

    def __init__(self, uploader: Uploader, path: Path, identity: FileIdentity,
                 destination: Destination, tracker: ProgressTracker) -> None:
        self.up = uploader
        self.settings = uploader.settings
        self.path = path
        self.identity = identity
        self.destination = destination
        self.tracker = tracker
        self.key = state_key(uploader.coordinator, uploader.apikey, path,
                             destination.identity())
        self.state: ResumeState | None = None
        self.sizer = self.settings.sizer()
        self.limiter = (RateLimiter(self.settings.max_rate)
                        if self.settings.max_rate is not None else None)
        self.used: list[str] = []
        self.resumed: int | None = None
        self.floor_failures = 0
        self.chunk_failures = 0
        self.fd = -1

    @property
    def ids(self) -> dict[str, str]:
        assert self.state is not None
        return {"apikey": self.up.apikey, "upload_id": self.state.upload_id}

    @property
    def secured_ids(self) -> dict[str, str]:
        """The ids with credentials for storing the file, as complete and status need
        them (part URLs and commits go by the upload id alone)."""
        return {**self.ids, **self.up.credentials.fields("store", "pick")}

    @property
    def state_path(self) -> str | None:
        return str(self.up.store.path(self.key)) if self.up.store is not None else None

    async def go(self) -> UploadResult:
        if self.up.store is not None:
            self.state = await self.up.store.load(self.key, self.identity)
        candidates = await self._candidates()
        self.fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY)
        try:
            for pop in candidates:
                try:
                    return await self._at(pop)
                except _PopFailed as failed:
                    log.warning("POP %s failed (%s); moving to the next", pop.name,
                                failed.cause)
                    await self.up.finder.forget()
            tried = ", ".join(pop.name for pop in candidates)
            raise UploadInterrupted(
                f"every POP failed ({tried}); run the upload again to resume it",
                upload_id=self.state.upload_id if self.state else None,
                state_path=self.state_path)
        finally:
            await asyncio.to_thread(os.close, self.fd)

    async def _candidates(self) -> list[PopInfo]:
        """The POPs to try in order; a resumed upload goes back to its POP first (it may
        hold bytes that are not stored yet), even when the coordinator cannot be asked."""
        try:
            pops = await self.up.finder.candidates(self.settings.pop)
        except (ConnectionFailed, NoPopAvailable, ApiError):
            if self.state is None:
                raise
            pops = []
        if self.state is not None:
            own = PopInfo(self.state.pop, self.state.pop_url)
            pops = [own] + [pop for pop in pops if pop.name != own.name]
        return pops

    async def _at(self, pop: PopInfo) -> UploadResult:
        self.tracker.at(pop.name)
        self.floor_failures = 0
        for _ in range(2):  # once more after starting afresh
            try:
                if self.state is None:
                    await self._start(pop)
                elif self.state.pop != pop.name:
                    await self._save(self.state.moved_to(pop.name, pop.url))
                planned = await self._plan(pop)
                if isinstance(planned, _Finished):  # an earlier run got that far
                    await self._forget_state()
                    return self._result(planned.handle, planned.status, planned.filename)
                if planned:
                    self._used(pop)
                await self._send(pop, planned)
                self._used(pop)
                reply = await self._call(pop, "/multipart/complete", {
                    **self.secured_ids, "size": self.identity.size, "parts": [], "fii": True,
                    "upload_tags": dict(self.destination.tags)})
            except _StartAfresh as why:
                log.info("starting afresh: %s", why)
                await self._start_afresh()
                continue
            except ApiError as error:
                if error.status == 409 and self.state is not None \
                        and await self._expired(pop):
                    log.info("upload %s expired at cin: starting afresh", self.ids["upload_id"])
                    await self._start_afresh()
                    continue
                raise
            await self._forget_state()
            # complete says "Stored" for a file in the bucket, as Filestack does.
            status = "Complete" if reply.get("status") == "Stored" else "In Transit"
            return self._result(str(reply["handle"]), status, str(reply.get("filename", "")),
                                url=reply.get("url"))
        raise CinClientError("the upload expired twice in a row: is the coordinator's "
                             "upload_expiry.ttl shorter than an upload takes?")

    def _used(self, pop: PopInfo) -> None:
        if not self.used or self.used[-1] != pop.name:
            self.used.append(pop.name)

    def _result(self, handle: str, status: str, filename: str,
                url: Any = None) -> UploadResult:
        return UploadResult(
            handle=handle, url=str(url or f"{self.up.coordinator}/api/file/{handle}"),
            size=self.identity.size, status=status, filename=filename,
            upload_id=self.state.upload_id if self.state else "",
            bytes_sent=self.tracker.sent, resumed_bytes=self.resumed or 0,
            elapsed=self.tracker.elapsed, pops=tuple(self.used),
            chunk_failures=self.chunk_failures)

    # ----------------------------------------------------------------------- state

    async def _save(self, state: ResumeState) -> None:
        self.state = state
        if self.up.store is not None:
            await self.up.store.save(state)

    async def _forget_state(self) -> None:
        if self.up.store is not None:
            await self.up.store.remove(self.key)

    async def _start_afresh(self) -> None:
        await self._forget_state()
        self.state = None
        self.resumed = None

    async def _start(self, pop: PopInfo) -> None:
        fields: dict[str, Any] = {
            "apikey": self.up.apikey, "size": self.identity.size, "fii": True,
            "filename": self.destination.filename or self.path.name,
            "store": self.destination.store(), **self.up.credentials.fields("store", "pick")}
        if self.destination.mimetype:
            fields["mimetype"] = self.destination.mimetype
        reply = await self._call(pop, "/multipart/start", fields)
        await self._save(ResumeState(self.key, str(self.path.resolve()), self.identity,
                                     str(reply["upload_id"]), pop.name, pop.url,
                                     self.settings.part_size))

    async def _expired(self, pop: PopInfo) -> bool:
        try:
            status = await self._call(pop, "/multipart/status", self.secured_ids)
        except CinClientError:
            return False
        return status.get("status") == "Failed"

    async def _plan(self, pop: PopInfo) -> list[_Part] | _Finished:
        """What is left to send through `pop`, from the part status there."""
        assert self.state is not None
        try:
            status = await self._call(pop, "/multipart/status", self.secured_ids)
        except ApiError as error:
            if error.code == "file_not_found":
                raise _StartAfresh(f"cin does not know upload {self.state.upload_id}") from None
            raise
        if status.get("status") == "Failed":
            raise _StartAfresh(f"upload {self.state.upload_id} expired at cin")
        if status.get("status") in ("In Transit", "Complete"):
            return _Finished(str(status["handle"]), str(status["status"]),
                             self.destination.filename or self.path.name)
        known = {int(p["part_number"]): p for p in status.get("parts", [])
                 if isinstance(p, dict)}
        part_size, size = self.state.part_size, self.identity.size
        todo, have = [], 0
        for number, start in enumerate(range(0, size, part_size), 1):
            part = _Part(number, start, min(part_size, size - start))
            record = known.get(number)
            if record is not None and record.get("state") == "stored":
                have += part.size
                continue
            if (record is not None and record.get("state") == "spooled"
                    and record.get("pop") == pop.name):
                part.offset = min(int(record.get("size") or 0), part.size)
                have += part.offset
            todo.append(part)
        self.tracker.have(have)
        if self.resumed is None:
            self.resumed = have
        return todo

    # ---------------------------------------------------------------------- sending

    async def _send(self, pop: PopInfo, parts: list[_Part]) -> None:
        """Every part, `parallel_parts` at a time; the first failure stops them all."""
        queue = deque(parts)

        async def worker() -> None:
            while queue:
                await self._send_part(pop, queue.popleft())

        workers = [asyncio.create_task(worker())
                   for _ in range(min(self.settings.parallel_parts, len(parts)))]
        if not workers:
            return
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error

    async def _send_part(self, pop: PopInfo, part: _Part) -> None:
        while part.offset < part.size:
            size = min(self.sizer.size, part.size - part.offset)
            data, md5 = await asyncio.to_thread(self._read, part.start + part.offset, size)
            target = await self._call(pop, "/multipart/upload", {
                **self.ids, "part": part.number, "size": size, "md5": md5,
                "offset": part.offset, "fii": True})
            if await self._put(pop, target, data):
                part.offset += size
            else:
                await self._resync(pop, part)
        await self._call(pop, "/multipart/commit", {**self.ids, "part": part.number,
                                                    "size": self.identity.size})

    async def _resync(self, pop: PopInfo, part: _Part) -> None:
        """After a failed chunk, carry on from what the POP holds of the part: a failure
        may have lost only the answer, and a smaller chunk sent again at the same offset
        would end inside those bytes and the next one straddle their end."""
        status = await self._call(pop, "/multipart/status", self.secured_ids)
        for record in status.get("parts", []):
            if (isinstance(record, dict) and record.get("part_number") == part.number
                    and record.get("pop") == pop.name):
                held = min(int(record.get("size") or 0), part.size)
                if held > part.offset:
                    self.tracker.found(held - part.offset)
                    part.offset = held
                return

    def _read(self, offset: int, size: int) -> tuple[bytes, str]:
        """A chunk of the file and its MD5 (in a worker thread: megabytes of IO)."""
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise CinClientError(f"{self.path} changed while it was uploading (it is "
                                 "shorter now); upload it again")
        return data, base64.b64encode(hashlib.md5(data, usedforsecurity=False)
                                      .digest()).decode()

    async def _put(self, pop: PopInfo, target: Mapping[str, Any], data: bytes) -> bool:
        """PUT one chunk; False when it failed in a way worth another try (smaller)."""
        size, sent = len(data), 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            for start in range(0, size, SLICE_BYTES):
                piece = data[start:start + SLICE_BYTES]
                if self.limiter is not None:
                    await self.limiter.take(len(piece))
                sent += len(piece)
                self.tracker.sending(len(piece))
                yield piece

        headers = target.get("headers") or {}
        began = asyncio.get_running_loop().time()
        ok = False
        try:
            answer = await self.up.transport.put(str(target["url"]), body(), size,
                                                 {str(k): str(v) for k, v in headers.items()})
            ok = True
        except (ConnectionFailed, ApiError) as error:
            self._chunk_failed(pop, size, error)
            return False
        finally:
            self.tracker.settled(sent, ok=ok)
        self.floor_failures = 0
        self.sizer.succeeded(size, asyncio.get_running_loop().time() - began)
        self.sizer.hint(throughput=_number(answer.get(THROUGHPUT_HEADER)),
                        next_size=_number(answer.get(NEXT_CHUNK_HEADER)))
        return True

    def _chunk_failed(self, pop: PopInfo, size: int, error: CinClientError) -> None:
        """Halve and try again, unless the POP is gone or the failure is a refusal."""
        self._check_pop(error)
        self.chunk_failures += 1
        timeout = isinstance(error, ConnectionFailed) and error.timeout
        log.debug("a %d-byte chunk to %s failed: %s", size, pop.name, error)
        if size <= self.sizer.minimum:
            self.floor_failures += 1
            if self.floor_failures >= self.settings.failover_after:
                raise _PopFailed(error)
        self.sizer.failed(timeout=timeout)

    def _check_pop(self, error: CinClientError) -> None:
        """Raise what `error` means when a retry would not help: the POP is gone or
        cannot take the bytes (move on), or cin refused the request (give up)."""
        if isinstance(error, ConnectionFailed):
            if error.connect:
                raise _PopFailed(error)
            return
        if isinstance(error, ApiError):
            if error.code in _POP_CANNOT_TAKE_BYTES:
                raise _PopFailed(error)
            if not error.retryable:
                raise error

    async def _call(self, pop: PopInfo, route: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON call at the POP, tried again after a passing failure."""
        last: CinClientError | None = None
        for attempt in range(self.settings.failover_after):
            try:
                return await self.up.transport.json("POST", f"{pop.url}{route}", body=body)
            except (ConnectionFailed, ApiError) as error:
                self._check_pop(error)
                log.debug("%s at %s failed: %s", route, pop.name, error)
                last = error
            await asyncio.sleep(min(RETRY_PAUSE * 2**attempt, RETRY_PAUSE_CAP))
        assert last is not None
        raise _PopFailed(last)


def _number(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None

