"""cin's Python SDK: uploads through the nearest POP, sized to the network, resumable.

    from sdk import AsyncClient

    async with AsyncClient("http://127.0.0.1:8700", "DEMOAPIKEY0123456789") as cin:
        result = await cin.upload("movie.mp4", store_path="/videos/", tags={"user": "42"})
        print(result.handle, result.url)             # the link works already (In Transit)
        await cin.wait_until_complete(result.handle)  # in the bucket
        await cin.download(result.handle, "copy.mp4")

`Client` (sdk/sync.py) has the same calls without asyncio: `with Client(url, apikey) as
cin: cin.upload(path)`.

The client: `AsyncClient(url, apikey, *, policy=None, signature=None, secret=None,
pop="auto", request_timeout=60.0, chunk_size=None, parallel_parts=3, failover_after=3,
max_rate=None, state_dir=None, keep_state=True, pop_cache_ttl=600.0, probes=3)`:

* `url` is the coordinator's; `apikey` the app's. Credentials when the app needs them:
  `policy` and `signature` (e.g. from `cin sign`), or the app `secret`, with which each
  call signs its own one-hour policy (common/protocol/security.py); the secret is never sent.
* `pop`: `"auto"` probes every healthy POP of `GET /pops` on `/health` (`probes` times
  each, all POPs at once) and uploads to the lowest median round trip; the choice is
  remembered for `pop_cache_ttl` seconds, in memory and in `state_dir/pops.json`. A POP
  name sends there first. Either way the other POPs, nearest first, take over when the
  one in use fails mid-upload: the upload finishes there, sending only the parts that
  `POST /multipart/status` does not list as stored.
* `request_timeout`: seconds any one request may take, a chunk's PUT included.
* `chunk_size`: None sizes chunks adaptively (common/protocol/chunk_sizer.py: halve on a failure
  or timeout down to 32 KiB, grow after fast successes, aim at a target duration from
  the measured throughput and the POP's `Cin-Throughput`/`Cin-Next-Chunk-Size` hints);
  an int (32 KiB to 8 MiB) sends chunks of that fixed size, retried at that size.
* `parallel_parts`: 8 MiB parts in flight at once. `failover_after`: failures in a row
  at the smallest chunk (or of a JSON call) before the POP is left for the next.
* `max_rate`: bytes per second at most, all chunks together (None: no limit).
* `state_dir`: where resume state and the POP choice live (default `$CIN_STATE_DIR`,
  else `$XDG_CACHE_HOME/cin`, else `~/.cache/cin`); `keep_state=False` keeps none.

Calls: `upload(path, *, filename, mimetype, store_path, container, location, region,
access, tags, progress)` → `UploadResult(handle, url, size, status, filename,
upload_id, bytes_sent, resumed_bytes, elapsed, pops, chunk_failures)`, where `bytes_sent`
counts every file byte put on the wire including retries, `elapsed` is in seconds and
`pops` names the POPs sent to, in order; `progress` is called with a `Progress(total,
done, acknowledged, sent, elapsed, pop)` as bytes go. An interrupted upload (cancelled,
or `UploadInterrupted`) is resumed by calling `upload` again for the same file: state is
one JSON file per upload under `state_dir/uploads/`, removed once it completes.
`status(handle)` → `FileStatus`, `wait_until_complete(handle, max_wait=600)`,
`metadata(handle, *fields)`, `download(handle, path)`, `iter_download(handle)`,
`delete(handle, skip_storage=False)`, `pops()` → every POP with its round trips,
`nearest_pop()`, `part_status(upload_id)`.

Errors (sdk/errors.py), all `CinClientError`: `ApiError` (cin refused: `.status`,
`.code` from cin's error table, `.message`), `ConnectionFailed`, `NoPopAvailable`,
`UploadInterrupted` (resumable), `UploadFailed` (the file ended Failed).
"""

from sdk.client import AsyncClient
from sdk.errors import (
    ApiError,
    CinClientError,
    ConnectionFailed,
    NoPopAvailable,
    UploadFailed,
    UploadInterrupted,
)
from sdk.files import FileStatus
from sdk.pops import PopInfo, PopProbe
from sdk.progress import Progress
from sdk.sync import Client
from sdk.uploader import UploadResult

__all__ = [
    "ApiError",
    "AsyncClient",
    "CinClientError",
    "Client",
    "ConnectionFailed",
    "FileStatus",
    "NoPopAvailable",
    "PopInfo",
    "PopProbe",
    "Progress",
    "UploadFailed",
    "UploadInterrupted",
    "UploadResult",
]
