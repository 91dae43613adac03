"""`AsyncClient`: cin's Upload API and File API for Python programs (asyncio)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from sdk.credentials import Credentials
from sdk.errors import UploadFailed
from sdk.files import DOWNLOAD_READ_BYTES, FileStatus, write_response
from sdk.pops import DEFAULT_PROBES, DEFAULT_TTL, PopCache, PopFinder, PopInfo, PopProbe
from sdk.progress import ProgressCallback
from sdk.resume import ResumeStore
from sdk.state_files import default_state_dir
from sdk.transport import Transport
from sdk.uploader import Destination, Uploader, UploadResult, UploadSettings


class AsyncClient:
    """A client of one cin deployment: its coordinator's `url` and an app's `apikey`.

    Credentials, when the app needs them: `policy` and `signature`, or the app `secret`
    (each call then signs a policy for itself, valid for an hour). Uploads go to the
    nearest POP (`pop="auto"`) or the one named, in chunks sized to the network
    (`chunk_size=None`) or of a fixed size, each request bounded by `request_timeout`
    seconds. Upload and POP state lives in `state_dir` (default `$XDG_CACHE_HOME/cin`);
    `keep_state=False` keeps nothing on disk (no resume across processes).
    """

    def __init__(self, url: str, apikey: str, *, policy: str | None = None,
                 signature: str | None = None, secret: str | None = None,
                 pop: str = "auto", request_timeout: float = 60.0,
                 chunk_size: int | None = None, parallel_parts: int = 3,
                 failover_after: int = 3, max_rate: float | None = None,
                 state_dir: str | Path | None = None, keep_state: bool = True,
                 pop_cache_ttl: float = DEFAULT_TTL, probes: int = DEFAULT_PROBES) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the coordinator URL must start with http:// or https://: "
                             f"{url!r}")
        if not apikey:
            raise ValueError("an apikey is required")
        self.url = url.rstrip("/")
        self.apikey = apikey
        self.credentials = Credentials(policy, signature, secret)
        self.settings = UploadSettings(pop=pop, request_timeout=request_timeout,
                                       chunk_size=chunk_size, parallel_parts=parallel_parts,
                                       failover_after=failover_after, max_rate=max_rate)
        self.state_dir = (Path(state_dir).expanduser() if state_dir is not None
                          else default_state_dir()) if keep_state else None
        self.pop_cache_ttl = pop_cache_ttl
        self.probes = probes
        self._session: aiohttp.ClientSession | None = None
        self._finder: PopFinder | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._finder = None

    def _transport(self) -> Transport:
        # Made on first use, inside the running loop, as aiohttp wants.
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return Transport(self._session, self.settings.request_timeout)

    def _pop_finder(self) -> PopFinder:
        if self._finder is None:
            cache = PopCache(self.state_dir) if self.state_dir is not None else None
            self._finder = PopFinder(self._transport(), self.url, cache=cache,
                                     ttl=self.pop_cache_ttl, probes=self.probes)
        return self._finder

    # ------------------------------------------------------------------ uploads

    async def upload(self, path: str | Path, *, filename: str | None = None,
                     mimetype: str | None = None, store_path: str | None = None,
                     container: str | None = None, location: str = "s3",
                     region: str | None = None, access: str | None = None,
                     tags: Mapping[str, str] | None = None,
                     progress: ProgressCallback | None = None) -> UploadResult:
        """Upload the file at `path`; its handle and link once every byte is durable at
        a POP (status `In Transit`; `wait_until_complete` waits for the bucket).

        Calling it again for the same file after it was interrupted carries on where it
        stopped. Raises UploadInterrupted when every POP failed (call again to resume),
        ApiError when cin refused it, CinClientError when the file cannot be read."""
        destination = Destination(filename=filename, mimetype=mimetype, path=store_path,
                                  container=container, location=location, region=region,
                                  access=access, tags=dict(tags or {}))
        store = ResumeStore(self.state_dir) if self.state_dir is not None else None
        uploader = Uploader(self._transport(), self.url, self.apikey, self.credentials,
                            self._pop_finder(), store, self.settings)
        return await uploader.upload(Path(path), destination, progress)

    async def part_status(self, upload_id: str) -> dict[str, Any]:
        """`POST /multipart/status` at the coordinator: which parts of an upload are
        stored."""
        return await self._transport().json("POST", f"{self.url}/multipart/status", body={
            "apikey": self.apikey, "upload_id": upload_id,
            **self.credentials.fields("store", "pick")})

    # --------------------------------------------------------------------- POPs

    async def pops(self) -> list[PopProbe]:
        """Every POP the coordinator lists, in its order, with its measured round trips
        (`rtt` is None for a POP that did not answer)."""
        finder = self._pop_finder()
        return await finder.probe(await finder.listed())

    async def nearest_pop(self, *, refresh: bool = False) -> PopInfo:
        """The POP uploads go to with `pop="auto"` (measured, or remembered)."""
        return (await self._pop_finder().ranking(refresh=refresh)).pops[0]

    # -------------------------------------------------------------------- files

    async def metadata(self, handle: str, *fields: str) -> dict[str, Any]:
        """The file's metadata: every field, or only `fields` (e.g. "size", "sha256")."""
        params = {name: "true" for name in fields}
        params.update(self.credentials.fields("stat", handle=handle))
        return await self._transport().json("GET", f"{self.url}/api/file/{handle}/metadata",
                                            params=params)

    async def status(self, handle: str) -> FileStatus:
        metadata = await self.metadata(handle)
        return FileStatus.from_metadata(handle, metadata)

    async def wait_until_complete(self, handle: str, *, max_wait: float = 600.0,
                                  interval: float = 0.5) -> FileStatus:
        """Poll until the file is Complete (in the bucket). Raises UploadFailed if it
        ends Failed, TimeoutError after `max_wait` seconds."""
        deadline = time.monotonic() + max_wait
        while True:
            status = await self.status(handle)
            if status.status == "Complete":
                return status
            if status.status == "Failed":
                raise UploadFailed(f"file {handle} is Failed at cin")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"file {handle} is still {status.status} after "
                                   f"{max_wait:g} s")
            await asyncio.sleep(interval)

    def _download_params(self, handle: str) -> dict[str, str]:
        return self.credentials.fields("read", handle=handle)

    async def download(self, handle: str, destination: str | Path) -> int:
        """Save the file's bytes at `destination` (whole or not at all); the byte count.
        A file In Transit comes from the POP that holds it."""
        async with self._transport().stream(f"{self.url}/api/file/{handle}",
                                            params=self._download_params(handle)) as response:
            return await write_response(response, Path(destination))

    async def iter_download(self, handle: str) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive."""
        async with self._transport().stream(f"{self.url}/api/file/{handle}",
                                            params=self._download_params(handle)) as response:
            async for piece in response.content.iter_chunked(DOWNLOAD_READ_BYTES):
                yield piece

    async def delete(self, handle: str, *, skip_storage: bool = False) -> dict[str, Any]:
        """Delete the file (and its object in the bucket, unless `skip_storage`). Needs
        credentials that allow `remove`, even for an app with optional security."""
        params = {"key": self.apikey, **self.credentials.fields("remove", handle=handle)}
        if skip_storage:
            params["skip_storage"] = "true"
        return await self._transport().json("DELETE", f"{self.url}/api/file/{handle}",
                                            params=params)

