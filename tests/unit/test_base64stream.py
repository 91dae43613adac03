import base64
import os
from collections.abc import AsyncIterator

import pytest

from common.protocol.errors import CinError, Code
from edge.rest.base64stream import Base64Decoder, decode_stream


def decode_in_steps(text: bytes, step: int) -> bytes:
    decoder = Base64Decoder()
    out = b"".join(decoder.feed(text[i:i + step]) for i in range(0, len(text), step))
    return out + decoder.finish()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000, 65537])
@pytest.mark.parametrize("step", [1, 3, 4, 7, 4096])
def test_decodes_whatever_the_chunking(size: int, step: int) -> None:
    data = os.urandom(size)
    assert decode_in_steps(base64.b64encode(data), step) == data


def test_accepts_urlsafe_unpadded_and_wrapped_input() -> None:
    data = os.urandom(301)
    assert decode_in_steps(base64.urlsafe_b64encode(data).rstrip(b"="), 5) == data
    assert decode_in_steps(base64.encodebytes(data), 10) == data  # 76-column lines


@pytest.mark.parametrize("bad", [b"not base64!", b"QQ==QQ==", b"A", b"QUJD\x00"])
def test_bad_base64_is_a_clear_error(bad: bytes) -> None:
    with pytest.raises(CinError) as caught:
        decode_in_steps(bad, 2)
    assert caught.value.code is Code.BAD_BASE64


async def test_stream_decoding() -> None:
    data = os.urandom(5000)
    text = base64.b64encode(data)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(text), 333):
            yield text[i:i + 333]

    assert b"".join([c async for c in decode_stream(chunks())]) == data
