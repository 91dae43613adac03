"""What type a file is: the client's word, else its first bytes, else its name."""

from __future__ import annotations

import mimetypes
import re

import filetype

SNIFF_BYTES = 8192  # as much as the magic-number table looks at
DEFAULT_MIMETYPE = "text/plain"  # Filestack's documented default for raw data
_NAME_CHARS = r"[A-Za-z0-9!#$&^_.+-]+"  # RFC 6838 restricted-name characters
_MIMETYPE_RE = re.compile(f"{_NAME_CHARS}/{_NAME_CHARS}")
_UNINFORMATIVE = {"application/octet-stream", "application/x-www-form-urlencoded",
                  "multipart/form-data", "binary/octet-stream"}


def is_mimetype(text: str) -> bool:
    return bool(_MIMETYPE_RE.fullmatch(text)) and len(text) <= 255


def choose_mimetype(given: str | None, head: bytes, filename: str | None) -> str:
    """`given` when it says something; else sniffed from `head`; else from the name."""
    if given:
        base = given.split(";", 1)[0].strip().lower()
        if is_mimetype(base) and base not in _UNINFORMATIVE:
            return base
    if head:
        sniffed = filetype.guess_mime(head[:SNIFF_BYTES])
        if sniffed:
            return str(sniffed)
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return DEFAULT_MIMETYPE
