"""Signed part URLs: where `/multipart/upload` tells a client to PUT its bytes.

The URL names the upload, the part, the offset within the part, the size and the MD5 the
client announced, whether the PUT carries the whole part, and when it expires, all
signed with the deployment's internal secret.
A POP taking a PUT checks the signature, so a URL cannot be pointed at another upload,
part or offset, grown, or used after it expires; it needs no lookup to do so.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from common.protocol.errors import CinError, Code
from common.protocol.naming import is_unicode

URL_LIFETIME = 3600.0  # seconds; a part PUT is made right after it is asked for
PATH = "/multipart/part"


@dataclass(frozen=True)
class PartTarget:
    upload_id: str
    part: int
    offset: int
    size: int
    md5: str | None  # base64 of the raw digest, as the client announced it
    expires: int
    # A regular part arrives in one PUT, so the POP can send it to the bucket as soon as
    # it is written; an Intelligent Ingestion chunk is only part of one.
    whole: bool = False

    def _message(self) -> bytes:
        fields = [self.upload_id, str(self.part), str(self.offset), str(self.size),
                  self.md5 or "", str(self.expires)]
        if self.whole:  # absent from URLs signed before parts were sent early
            fields.append("whole")
        return "|".join(fields).encode()

    def signature(self, secret: str) -> str:
        return hmac.new(secret.encode(), b"part-url|" + self._message(),
                        hashlib.sha256).hexdigest()

    def url(self, base_url: str, secret: str) -> str:
        query = {"upload_id": self.upload_id, "part": self.part, "offset": self.offset,
                 "size": self.size, "expires": self.expires, "sig": self.signature(secret)}
        if self.md5:
            query["md5"] = self.md5
        if self.whole:
            query["whole"] = 1
        return f"{base_url}{PATH}?{urlencode(query)}"


def new_target(upload_id: str, part: int, offset: int, size: int, md5: str | None,
               now: float | None = None, *, whole: bool = False) -> PartTarget:
    expires = int((time.time() if now is None else now) + URL_LIFETIME)
    return PartTarget(upload_id, part, offset, size, md5, expires, whole)


def _count(text: str) -> int:
    """A number as cin writes one: ASCII digits, no leading zero (int() would take "٣",
    " 3", "1_0" or "03", and refuse 4,300 digits with a ValueError of its own)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 20) or text != str(int(text)):
        raise ValueError(text)
    return int(text)


def _text(text: str) -> str:
    """Text cin could have signed: a lone surrogate cannot be encoded to be signed."""
    if not is_unicode(text):
        raise ValueError(text)
    return text


def verify_target(query: Mapping[str, str], secret: str,
                  now: float | None = None) -> PartTarget:
    """The target a part PUT's query names, if its signature holds and it has not expired."""
    try:
        target = PartTarget(upload_id=_text(query["upload_id"]), part=_count(query["part"]),
                            offset=_count(query["offset"]), size=_count(query["size"]),
                            md5=_text(query.get("md5") or "") or None,
                            expires=_count(query["expires"]), whole=query.get("whole") == "1")
        given = query["sig"]
    except (KeyError, ValueError):
        raise CinError(Code.BAD_SIGNATURE, "this is not a part URL cin gave out") from None
    if not hmac.compare_digest(target.signature(secret).encode(), given.encode("ascii",
                                                                               "replace")):
        raise CinError(Code.BAD_SIGNATURE, "the part URL's signature does not match")
    if (time.time() if now is None else now) >= target.expires:
        raise CinError(Code.POLICY_EXPIRED, "the part URL has expired; ask for a new one")
    return target
