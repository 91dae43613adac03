import io
import random
import zipfile

import filetype
import pytest

from common.protocol.errors import CinError, Code
from common.protocol.ranges import parse_range
from common.protocol.sniff import DEFAULT_MIMETYPE, SNIFF_BYTES, choose_mimetype
from common.storage import ByteRange

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\x00" * 32


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("bytes=5-2", None),  # invalid: ignored
        ("bytes=0-1,5-6", None),  # several ranges: the whole object
        ("items=0-1", None),
    ],
)
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(CinError) as caught:
        parse_range(header, 100)
    assert caught.value.code is Code.RANGE_NOT_SATISFIABLE


def test_mimetype_given_wins() -> None:
    assert choose_mimetype("image/jpeg", PNG, "x.txt") == "image/jpeg"


def test_mimetype_sniffed_from_content_before_name() -> None:
    assert choose_mimetype(None, PNG, "x.txt") == "image/png"
    assert choose_mimetype("application/octet-stream", PNG, None) == "image/png"


def test_mimetype_from_extension_then_text_plain() -> None:
    assert choose_mimetype(None, b"hello", "notes.pdf") == "application/pdf"
    assert choose_mimetype(None, b"hello", None) == "text/plain"
    assert choose_mimetype("application/x-www-form-urlencoded", b"hi", None) == "text/plain"


def _zip(*names: bytes, first: bytes = b"") -> bytes:
    """A zip whose entries are `names` in order, the first holding `first` (stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, name in enumerate(names):
            archive.writestr(name.decode(), first if index == 0 else b"<x/>")
    return out.getvalue()


_EBML = b"\x1a\x45\xdf\xa3"
SNIFFED_HEADS = [
    PNG,
    b"%PDF-1.7\n" + bytes(range(256)) * 4,
    _zip(b"mimetype", first=b"application/vnd.oasis.opendocument.text"),
    _zip(b"mimetype", first=b"application/vnd.oasis.opendocument.spreadsheet"),
    _zip(b"[Content_Types].xml", b"_rels/.rels", b"word/document.xml"),
    _zip(b"[Content_Types].xml", b"_rels/.rels", b"xl/workbook.xml"),
    _zip(b"[Content_Types].xml", b"_rels/.rels", b"ppt/presentation.xml"),
    _zip(b"plain.txt", b"other.txt"),  # a zip, but no document
    b"\x00" * 40 + _zip(b"word/document.xml"),  # a zip header, but not first
    _EBML + b"\x00" * 20 + b"\x42\x82\x88matroska" + b"\x00" * 64,
    _EBML + b"\x00" * 20 + b"\x42\x82\x84webm" + b"\x00" * 64,
    _EBML + b"\x00" * 200,  # EBML, but neither doctype
    b"\x00" * 20 + b"\x42\x82\x84webm",  # a doctype without the EBML header
    b"PK\x03",  # shorter than a signature
    b"hello, world\n" * 700,
    *(random.Random(seed).randbytes(10 * 1024) for seed in range(8)),
]


@pytest.mark.parametrize("head", SNIFFED_HEADS)
def test_sniff_answers_as_every_matcher_would(head: bytes) -> None:
    """The sniff skips the matchers that cannot match a head; what it finds is what
    all of `filetype`'s matchers, run in their order, find."""
    expected = filetype.guess_mime(head[:SNIFF_BYTES]) or DEFAULT_MIMETYPE
    assert choose_mimetype("application/octet-stream", head, None) == expected


def test_sniff_finds_zipped_documents_and_matroska() -> None:
    assert choose_mimetype(None, SNIFFED_HEADS[4], None) == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    assert choose_mimetype(None, SNIFFED_HEADS[2], None) == (
        "application/vnd.oasis.opendocument.text")
    assert choose_mimetype(None, SNIFFED_HEADS[9], None) == "video/x-matroska"
    assert choose_mimetype(None, SNIFFED_HEADS[10], None) == "video/webm"
