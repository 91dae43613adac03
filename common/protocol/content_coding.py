"""Undoing a request body's Content-Encoding: fed the bytes as they arrive, told of the end.

cin inflates bodies itself rather than leave it to aiohttp, whose inflater never asks
whether a gzip stream reached its end: a body cut short inside the stream would be read
as a shorter file, with no error. Here the end of the body must be the end of the stream
(a gzip stream's CRC and length checked), and anything else is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from common.protocol.errors import CinError, Code

DECODED = ("gzip", "x-gzip", "deflate")
# At most this many inflated bytes come out per piece, so a small body that inflates to
# gigabytes is handed on (and refused by the size limits) a piece at a time.
PIECE_BYTES = 256 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


def content_coding(header: str | None) -> str | None:
    """The one coding a Content-Encoding header names, None for none (or identity)."""
    if header is None:
        return None
    coding = header.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in DECODED:
        raise CinError(Code.UNSUPPORTED_CONTENT_ENCODING,
                       f"{header[:40]!r}; cin inflates gzip or deflate, one coding at a time")
    return coding


class BodyDecoder:
    """Inflates one body: `feed` each piece as it arrives, `finish` at its end."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._gzip = coding in ("gzip", "x-gzip")
        self._inflater: zlib._Decompress | None = None
        self._fed = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated bytes `data` gives, in pieces of at most PIECE_BYTES."""
        self._fed += len(data)
        while data:
            inflater = self._inflater
            if inflater is None or inflater.eof:
                # Bytes after the end of a stream: gzip allows another member; deflate
                # does not (and zlib refuses anything that is not a gzip header).
                if inflater is not None and not self._gzip:
                    raise self._error("data after the end of the deflate stream")
                inflater = self._open(data)
            yield from self._inflate(inflater, data)
            data = inflater.unused_data

    def _inflate(self, inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                piece = inflater.decompress(data, PIECE_BYTES)
            except zlib.error as exc:
                raise self._error(f"not a valid {self.coding} stream ({exc})") from exc
            if piece:
                yield piece
            # Only a full piece can leave input (or output) behind, so each turn gives
            # PIECE_BYTES. What follows the stream's end is in `unused_data`; CPython may
            # leave a copy in `unconsumed_tail`, which must not be fed again.
            if inflater.eof or len(piece) < PIECE_BYTES:
                return
            data = inflater.unconsumed_tail

    def finish(self) -> None:
        """The body has ended: refused unless its stream did too."""
        if self._fed == 0:
            return  # an empty body is an empty file, however it says it is encoded
        if self._inflater is None or not self._inflater.eof:
            raise self._error(f"the body ended before its {self.coding} stream did "
                              f"(after {self._fed} encoded bytes)")

    def _open(self, first: bytes) -> zlib._Decompress:
        if self._gzip:
            wbits = _GZIP_WBITS
        else:
            # RFC 9110's deflate is a zlib stream, but some clients send raw deflate:
            # a zlib header's low nibble is 8 (the deflate method), as aiohttp also checks.
            wbits = _ZLIB_WBITS if first[0] & 0x0F == 8 else _RAW_DEFLATE_WBITS
        self._inflater = zlib.decompressobj(wbits)
        return self._inflater

    def _error(self, detail: str) -> CinError:
        return CinError(Code.BAD_CONTENT_ENCODING, detail)
