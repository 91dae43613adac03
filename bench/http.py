"""A minimal HTTP/1.1 client over asyncio streams, for load generation.

The benchmarks run the client on the same two cores as the server under test, so every
microsecond the client spends is taken from the server. aiohttp's client costs several
times more per request than writing a prepared request to a socket, so the load
generator speaks HTTP itself: requests are assembled once, bodies are sent as slices of
one prepared buffer (no copy per request), and responses are parsed only as far as the
status, the headers and a `Content-Length` body (every cin and ceiling answer has one,
but a 204, which has no body; Node's chunked answers are read too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SEND_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Body:
    """`size` bytes made of `block` repeated (and cut at the end): a large body without a
    large buffer, and the same bytes every run."""

    block: bytes
    size: int

    def pieces(self) -> list[memoryview]:
        view = memoryview(self.block)
        whole, rest = divmod(self.size, len(self.block))
        return [view] * whole + ([view[:rest]] if rest else [])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def check(self, *expected: int) -> Response:
        if self.status not in (expected or (200,)):
            raise HttpError(f"HTTP {self.status}: {self.body[:300]!r}")
        return self


class HttpError(Exception):
    pass


@dataclass
class Connection:
    """One keep-alive connection to `host:port`; requests on it go one at a time."""

    host: str
    port: int
    _reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False)

    @classmethod
    def to(cls, url: str) -> Connection:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    async def request(self, method: str, target: str, body: bytes | Body | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        size = 0 if body is None else (body.size if isinstance(body, Body) else len(body))
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {size}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if isinstance(body, Body):
            for piece in body.pieces():
                writer.write(piece)
                if writer.transport.get_write_buffer_size() >= SEND_BLOCK:
                    await writer.drain()
        elif body:
            writer.write(body)
        await writer.drain()
        return await self._response(reader)

    async def _response(self, reader: asyncio.StreamReader) -> Response:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if status == 204 or 100 <= status < 200 or status == 304:
            return Response(status, headers, b"")  # no body, whatever the headers say
        if headers.get("transfer-encoding", "").lower() == "chunked":
            # @tus/server (Node) answers so: read it whole, then go on on the connection.
            pieces = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                pieces.append(await reader.readexactly(size))
                await reader.readexactly(2)
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return Response(status, headers, b"".join(pieces))
        if "content-length" not in headers:
            raise HttpError(f"HTTP {status} without Content-Length: {lines[:4]}")
        body = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body)

    async def json(self, method: str, target: str, payload: Any) -> Any:
        response = await self.request(method, target, json.dumps(payload).encode(),
                                      {"Content-Type": "application/json"})
        return response.check().json()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
