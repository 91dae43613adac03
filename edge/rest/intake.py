"""Where a REST store's bytes come from: a multipart form, a raw body, or a URL.

Each source becomes an `IncomingFile` whose bytes are a stream; nothing here holds a
body in memory beyond one network read (and at most 64 KiB of a url-encoded form).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs

from aiohttp import BodyPartReader, MultipartReader, web

from common.protocol.errors import CinError, Code
from common.protocol.security import Grant
from common.streams import read_ahead
from common.web.request_body import body_chunks, is_encoded
from edge.rest.base64stream import decode_stream
from edge.rest.staging import StagedBody, Staging
from edge.rest.url_fetch import UrlFetcher

FILE_FIELD = "fileUpload"
READ_BYTES = 256 * 1024
MAX_FORM_BYTES = 64 * 1024  # a url-encoded form only ever carries `url=`
MAX_FIELD_BYTES = 8 * 1024


@dataclass
class IncomingFile:
    chunks: AsyncIterator[bytes]
    filename: str | None = None
    content_type: str | None = None
    source_url: str | None = None
    size: int | None = None  # known up front only for a raw body that declares its length


def from_url(url: str) -> IncomingFile:
    """A file to fetch from `url`: nothing comes with the request itself."""
    return IncomingFile(_nothing(), source_url=url)


async def receive(request: web.Request, *, base64: bool, limit: int) -> IncomingFile:
    """What a store or overwrite request carries: the file's bytes as a stream not yet
    read, or the URL to fetch them from (not yet fetched). Callers authorize in between:
    a policy can restrict the URL, and nothing should be fetched before it is checked."""
    _refuse_oversized(request, base64=base64, limit=limit)
    if request.content_type.startswith("multipart/"):
        return await _from_multipart(request)
    if request.content_type == "application/x-www-form-urlencoded":
        return await _from_urlencoded(request)
    return _from_raw(request)


@asynccontextmanager
async def open_incoming(
    incoming: IncomingFile, fetcher: UrlFetcher, *, base64: bool
) -> AsyncIterator[IncomingFile]:
    """The file's bytes, fetched from its URL if it has one, base64-decoded if asked."""
    if incoming.source_url is not None:
        async with fetcher.open(incoming.source_url) as fetched:
            incoming = IncomingFile(fetched.chunks(), fetched.filename, fetched.content_type,
                                    fetched.url)
            yield _decoded(incoming) if base64 else incoming
        return
    yield _decoded(incoming) if base64 else incoming


async def stage_within(staging: Staging, incoming: IncomingFile, *, limit: int,
                       grant: Grant) -> StagedBody:
    """Stage the file, refusing it once it passes the app's limit or the policy's maxSize
    (whichever is smaller, enforced as the bytes arrive), or if it is under minSize."""
    allowed = grant.max_size(limit)
    try:
        staged = await staging.take(incoming.chunks, limit=allowed)
    except CinError as exc:
        if exc.code is Code.TOO_LARGE and allowed < limit:
            raise CinError(Code.POLICY_DENIES,
                           f"maxSize: the file is over the policy's {allowed} bytes") from exc
        raise
    try:
        grant.check_size(staged.size)
    except CinError:
        await staged.remove()
        raise
    return staged


def refuse_size(size: int, *, grant: Grant, limit: int) -> None:
    """Refuse a file of a size known up front, as `stage_within` refuses one whose size
    it finds out as the bytes arrive."""
    allowed = grant.max_size(limit)
    if size > allowed and allowed == limit:
        raise CinError(Code.TOO_LARGE, f"the file is {size} bytes, over {limit}")
    grant.check_size(size)


async def take_head(chunks: AsyncIterator[bytes],
                    want: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first `want` bytes of a stream (fewer if it is shorter), and the whole stream,
    those bytes included, to read on."""
    taken, _ = await read_ahead(chunks, want)

    async def whole() -> AsyncIterator[bytes]:
        for chunk in taken:
            yield chunk
        async for chunk in chunks:
            yield chunk

    return b"".join(taken)[:want], whole()


async def exactly(size: int, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, failing unless they add up to `size` bytes: a body that ends early
    (or runs long) must never be stored as if it were the file."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise CinError(Code.INCOMPLETE_BODY, f"the body runs past its declared {size} bytes")
        yield chunk
    if seen < size:
        raise CinError(Code.INCOMPLETE_BODY,
                       f"the body ended after {seen} of its declared {size} bytes")


def _decoded(incoming: IncomingFile) -> IncomingFile:
    return IncomingFile(decode_stream(incoming.chunks), incoming.filename,
                        incoming.content_type, incoming.source_url)


def _refuse_oversized(request: web.Request, *, base64: bool, limit: int) -> None:
    """Refuse early a body whose declared length already exceeds the limit."""
    declared = request.content_length
    if declared is None:
        return  # chunked: staging counts as it writes
    allowed = limit * 4 // 3 + 4096 if base64 else limit
    if request.content_type.startswith("multipart/"):
        allowed += 64 * 1024  # boundaries and part headers
    if declared > allowed:
        raise CinError(Code.TOO_LARGE, f"the body declares {declared} bytes, over {limit}")


def _from_raw(request: web.Request,
              chunks: AsyncIterator[bytes] | None = None) -> IncomingFile:
    given = None if request.content_type == "application/octet-stream" else request.content_type
    # A compressed body is inflated as it is read: its Content-Length is not the file's.
    size = None if is_encoded(request) else request.content_length
    return IncomingFile(chunks or body_chunks(request, READ_BYTES), content_type=given,
                        size=size)


async def _from_urlencoded(request: web.Request) -> IncomingFile:
    # `curl -d url=...` arrives url-encoded, but so does `curl --data-binary @photo.jpg`
    # without a Content-Type: a body that is not a `url=` form is taken as the file.
    chunks = body_chunks(request, MAX_FORM_BYTES)
    taken, ended = await read_ahead(chunks, MAX_FORM_BYTES + 1)
    if ended:  # the whole body is at most a form's size: it may be one
        fields = parse_qs(b"".join(taken).decode("utf-8", "replace"), keep_blank_values=True)
        if "url" in fields:
            return from_url(fields["url"][0])
    return _from_raw(request, _prefixed(taken, chunks))


async def _prefixed(taken: list[bytes], chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in taken:
        yield chunk
    async for chunk in chunks:
        yield chunk


async def _from_multipart(request: web.Request) -> IncomingFile:
    if is_encoded(request):
        # aiohttp's form reader reads the connection itself: it cannot be handed an
        # inflated stream. No client compresses a form; a file is compressed raw.
        raise CinError(Code.UNSUPPORTED_CONTENT_ENCODING,
                       "a form is taken as sent; send a gzip or deflate body raw")
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise CinError(Code.MISSING_FILE, f"no '{FILE_FIELD}' field and no 'url' field")
            if isinstance(part, MultipartReader):
                continue  # nested multipart/mixed: not something a store form sends
            if part.name == FILE_FIELD:
                return IncomingFile(_part_chunks(part), filename=part.filename,
                                    content_type=part.headers.get("Content-Type"))
            if part.name == "url":
                value = await _small_field(part)
                return from_url(value)
            await part.release()
    except CinError:
        raise
    except (ValueError, AssertionError, LookupError, RuntimeError) as exc:
        raise CinError(Code.MALFORMED_MULTIPART, str(exc) or type(exc).__name__) from exc


async def _small_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise CinError(Code.BAD_PARAMETER, f"form field {part.name!r} is too long")
    return data.decode("utf-8", "replace").strip()


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(READ_BYTES):
            yield chunk
        if not part.at_eof():
            raise CinError(Code.MALFORMED_MULTIPART, "the body ended inside the file part")
    except (ValueError, AssertionError) as exc:
        raise CinError(Code.MALFORMED_MULTIPART, str(exc) or type(exc).__name__) from exc


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
