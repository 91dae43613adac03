"""A request's body as its sender meant it: the Content-Encoding undone as it arrives.

Both services run with aiohttp's own inflating off (see `SERVER_ARGS`), so a handler
that reads a body as a file or as JSON reads it through here, and one that relays a body
(the coordinator's overwrite proxy) passes on the bytes and the header as they came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import hdrs, web

from common.protocol.content_coding import BodyDecoder, content_coding

# What `web.Application(handler_args=...)` gives each service's connections.
SERVER_ARGS: dict[str, Any] = {"auto_decompress": False}


def is_encoded(request: web.Request) -> bool:
    """Whether the body comes in a coding cin inflates; one it does not is refused (415)."""
    return content_coding(request.headers.get(hdrs.CONTENT_ENCODING)) is not None


def body_chunks(request: web.Request, read_bytes: int) -> AsyncIterator[bytes]:
    """The decoded body, read `read_bytes` at a time. An unknown coding is refused
    here, before anything is read; a stream that is corrupt or ends before the body
    does fails the iteration, so nothing takes it for the whole file."""
    coding = content_coding(request.headers.get(hdrs.CONTENT_ENCODING))
    raw = request.content.iter_chunked(read_bytes)
    return raw if coding is None else _decoded(raw, BodyDecoder(coding))


async def _decoded(raw: AsyncIterator[bytes], decoder: BodyDecoder) -> AsyncIterator[bytes]:
    async for chunk in raw:
        for piece in decoder.feed(chunk):
            yield piece
    decoder.finish()
