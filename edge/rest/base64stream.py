"""Decode base64 as it streams, in either alphabet, holding at most 3 undecoded chars."""

from __future__ import annotations

import binascii
import re
from collections.abc import AsyncIterable, AsyncIterator

from common.protocol.errors import CinError, Code

_WHITESPACE = re.compile(rb"\s+")
_URLSAFE = bytes.maketrans(b"-_", b"+/")


class Base64Decoder:
    """Feed text chunks, get bytes back; `finish` checks the input ended cleanly."""

    def __init__(self) -> None:
        self._pending = b""
        self._ended = False  # padding seen: nothing may follow

    def feed(self, text: bytes) -> bytes:
        text = _WHITESPACE.sub(b"", text).translate(_URLSAFE)
        if not text:
            return b""
        if self._ended:
            raise CinError(Code.BAD_BASE64, "data after the '=' padding")
        text = self._pending + text
        usable = len(text) - len(text) % 4
        self._pending = text[usable:]
        chunk = text[:usable]
        if b"=" in chunk[:-2] or (chunk.endswith(b"=") and self._pending):
            raise CinError(Code.BAD_BASE64, "'=' padding in the middle of the data")
        if chunk.endswith(b"="):
            self._ended = True
        try:
            return binascii.a2b_base64(chunk, strict_mode=True)
        except binascii.Error as exc:
            raise CinError(Code.BAD_BASE64, str(exc)) from exc

    def finish(self) -> bytes:
        if not self._pending:
            return b""
        # Unpadded input is common (and the URL-safe form often drops '='): pad it here.
        if len(self._pending) == 1:
            raise CinError(Code.BAD_BASE64, "the data ends with a lone character")
        tail, self._pending = self._pending, b""
        return self.feed(tail + b"=" * (-len(tail) % 4))


async def decode_stream(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    decoder = Base64Decoder()
    async for chunk in chunks:
        decoded = decoder.feed(chunk)
        if decoded:
            yield decoded
    tail = decoder.finish()
    if tail:
        yield tail
