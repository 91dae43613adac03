"""What type a file is: the client's word, else its first bytes, else its name."""

from __future__ import annotations

import mimetypes
import re

import filetype
from filetype.types.document import ZippedDocumentBase
from filetype.types.video import Mkv, Webm

SNIFF_BYTES = 8192  # as much as the magic-number table looks at
DEFAULT_MIMETYPE = "text/plain"  # Filestack's documented default for raw data
_NAME_CHARS = r"[A-Za-z0-9!#$&^_.+-]+"  # RFC 6838 restricted-name characters
_MIMETYPE_RE = re.compile(f"{_NAME_CHARS}/{_NAME_CHARS}")
_UNINFORMATIVE = {"application/octet-stream", "application/x-www-form-urlencoded",
                  "multipart/form-data", "binary/octet-stream"}


def _matchers_for(prefix: bytes) -> tuple[object, ...]:
    """`filetype`'s matchers, in its order, less those that cannot match a head that
    starts with `prefix`. The matchers of zipped documents (docx, odt, ...) and of
    Matroska (mkv, webm) scan the whole head, most of a sniff's cost for a head that
    matches nothing, yet each matches only a head that starts with its container's
    signature; every other matcher runs as before, so the answer is the same."""
    def may_match(matcher: object) -> bool:
        if isinstance(matcher, ZippedDocumentBase):
            return prefix == _ZIP
        if isinstance(matcher, (Mkv, Webm)):
            return prefix == _EBML
        return True

    return tuple(matcher for matcher in filetype.types if may_match(matcher))


_ZIP = b"PK\x03\x04"  # a zip's first local file header
_EBML = b"\x1a\x45\xdf\xa3"  # a Matroska (EBML) header
_MATCHERS = {prefix: _matchers_for(prefix) for prefix in (_ZIP, _EBML, b"")}


def is_mimetype(text: str) -> bool:
    return bool(_MIMETYPE_RE.fullmatch(text)) and len(text) <= 255


def choose_mimetype(given: str | None, head: bytes, filename: str | None) -> str:
    """`given` when it says something; else sniffed from `head`; else from the name."""
    if given:
        base = given.split(";", 1)[0].strip().lower()
        if is_mimetype(base) and base not in _UNINFORMATIVE:
            return base
    if head:
        prefix = head[:4] if head[:4] in (_ZIP, _EBML) else b""
        kind = filetype.match(head[:SNIFF_BYTES], matchers=_MATCHERS[prefix])
        if kind is not None:
            return str(kind.mime)
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return DEFAULT_MIMETYPE
