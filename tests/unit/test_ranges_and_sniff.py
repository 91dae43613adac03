import pytest

from common.protocol.errors import CinError, Code
from common.protocol.ranges import parse_range
from common.protocol.sniff import choose_mimetype
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
