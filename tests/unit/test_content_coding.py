"""The body decoder: any split of the input gives the same bytes, output comes in bounded
pieces, and a stream that does not end with the body is refused."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from common.protocol.content_coding import PIECE_BYTES, BodyDecoder, content_coding
from common.protocol.errors import CinError, Code

DATA = os.urandom(50_000) + b"z" * 300_000


def decode(coding: str, *pieces: bytes) -> bytes:
    decoder = BodyDecoder(coding)
    out = b"".join(piece for data in pieces for piece in decoder.feed(data))
    decoder.finish()
    return out


def test_every_split_of_the_stream_decodes_the_same() -> None:
    encoded = gzip.compress(DATA)
    assert decode("gzip", encoded) == DATA
    one_byte_at_a_time = [encoded[i:i + 1] for i in range(len(encoded))]
    assert decode("gzip", *one_byte_at_a_time) == DATA
    # The end of one member and the start of the next may arrive in one read.
    two = gzip.compress(DATA[:7]) + gzip.compress(DATA[7:])
    assert decode("x-gzip", two[:40], two[40:]) == DATA


def test_output_comes_in_bounded_pieces() -> None:
    bomb = gzip.compress(bytes(20 * PIECE_BYTES))  # 5 MiB of zeros in about 5 KiB
    decoder = BodyDecoder("gzip")
    sizes = [len(piece) for piece in decoder.feed(bomb)]
    decoder.finish()
    assert max(sizes) <= PIECE_BYTES and sum(sizes) == 20 * PIECE_BYTES


@pytest.mark.parametrize("encoded", [zlib.compress(DATA), zlib.compress(DATA)[2:-4]],
                         ids=["zlib", "raw"])
def test_deflate_with_and_without_its_zlib_wrapper(encoded: bytes) -> None:
    assert decode("deflate", encoded) == DATA


@pytest.mark.parametrize(("coding", "encoded", "naming"), [
    ("gzip", gzip.compress(DATA)[:-1], "ended before"),
    ("gzip", gzip.compress(DATA)[:10], "ended before"),
    ("gzip", gzip.compress(DATA) + b"\x1f", "ended before"),  # a second member begun
    ("gzip", gzip.compress(DATA) + b"junk", "not a valid gzip"),
    ("gzip", b"plain text", "not a valid gzip"),
    ("deflate", zlib.compress(DATA) + b"x", "after the end"),
    ("deflate", zlib.compress(DATA)[:-5], "ended before"),
])
def test_a_broken_stream_is_refused(coding: str, encoded: bytes, naming: str) -> None:
    with pytest.raises(CinError) as caught:
        decode(coding, encoded)
    assert caught.value.code is Code.BAD_CONTENT_ENCODING
    assert naming in str(caught.value)


def test_an_empty_body_is_an_empty_file() -> None:
    assert decode("gzip") == b""


def test_which_codings_are_inflated() -> None:
    assert content_coding(None) is None
    assert content_coding(" Identity ") is None
    assert content_coding("GZIP") == "gzip"
    for header in ("br", "zstd", "gzip, deflate", "compress"):
        with pytest.raises(CinError) as caught:
            content_coding(header)
        assert caught.value.code is Code.UNSUPPORTED_CONTENT_ENCODING
