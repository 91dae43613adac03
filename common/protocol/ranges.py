"""HTTP `Range` headers: parsed and resolved against a size, without IO."""

from __future__ import annotations

import re

from common.protocol.errors import CinError, Code
from common.storage import ByteRange

# At most 19 ASCII digits: a longer number is no real offset (and `int` refuses 4300+).
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*$",
                       re.IGNORECASE)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks of an object of `size` bytes.

    None means "send the whole object": no header, a syntax we do not serve (several
    ranges, other units), which RFC 9110 lets a server ignore. A well-formed range that
    lies wholly past the end raises RANGE_NOT_SATISFIABLE.
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix range: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise CinError(Code.RANGE_NOT_SATISFIABLE, f"bytes=-{length} of {size} bytes")
        return ByteRange(max(0, size - length), size - 1)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid: ignore the header, as RFC 9110 says
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise CinError(Code.RANGE_NOT_SATISFIABLE, f"byte {first} is past the end ({size} bytes)")
    return ByteRange(first, min(last, size - 1))
