"""tus 1.0 (tus.io/protocols/resumable-upload) as cin reads and writes its headers: pure.

Every header a tus client sends is parsed here, strictly (a value the specification does
not allow is a 400, never a 500 or a guess); what cin answers is spelled here too. The
POP's routes (edge/tus/) do the IO.

A tus upload's bytes go to the bucket as parts of a multipart upload while they arrive:
`part_size` says how many bytes each part takes, a function of the upload's length alone,
so that any POP holding the upload's length places its bytes the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_OBJECT_SIZE, MAX_PARTS, MIN_PART_SIZE
from common.protocol.tags import validate_tags

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "expiration",
              "checksum", "termination", "concatenation")
CHECKSUM_ALGORITHMS = ("sha1", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
PREFIX = "/files"  # where the creation URL is, and every upload's URL below it

# Parts of at least this size: few requests to the bucket per GiB, and a part reaches it
# while the client still sends the next one. Larger uploads get larger parts, so that no
# upload needs more than MAX_PARTS.
PART_SIZE = 8 * 1024 * 1024
_MiB = 1024 * 1024

_DIGITS = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII, no space, no comma
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_METADATA = 16 * 1024


def check_version(value: str | None) -> None:
    """Every request but OPTIONS names the version it speaks; 412 if it is not ours."""
    if value != VERSION:
        raise CinError(Code.TUS_VERSION, f"Tus-Resumable: {value!r}; this server speaks "
                                         f"{VERSION}")


def parse_size(value: str, header: str) -> int:
    """Upload-Length or Upload-Offset: a non-negative decimal integer, nothing else."""
    if not _DIGITS.fullmatch(value):
        raise CinError(Code.BAD_PARAMETER, f"{header}: not a non-negative integer")
    return int(value)


def parse_defer_length(value: str | None) -> bool:
    if value is None:
        return False
    if value != "1":
        raise CinError(Code.BAD_PARAMETER, "Upload-Defer-Length: the only value is 1")
    return True


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """Upload-Metadata: comma-separated `key base64value` pairs (the value may be
    omitted), keys unique. Values are decoded as UTF-8: cin keeps text only."""
    if value is None or not value.strip():
        return {}
    if len(value) > MAX_METADATA:
        raise CinError(Code.BAD_PARAMETER, f"Upload-Metadata: over {MAX_METADATA} bytes")
    pairs: dict[str, str | None] = {}
    for item in value.split(","):
        key, space, encoded = item.lstrip(" ").partition(" ")
        if not _METADATA_KEY.fullmatch(key):
            raise CinError(Code.BAD_PARAMETER, f"Upload-Metadata: {item[:80]!r} is not "
                                               "`key base64value`")
        if key in pairs:
            raise CinError(Code.BAD_PARAMETER, f"Upload-Metadata: {key[:80]!r} twice")
        pairs[key] = _decode_value(key, encoded.rstrip(" ")) if space else None
    return pairs


def _decode_value(key: str, encoded: str) -> str:
    if not _BASE64.fullmatch(encoded) or len(encoded) % 4:
        raise CinError(Code.BAD_PARAMETER, f"Upload-Metadata: {key[:80]!r} is not base64")
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise CinError(Code.BAD_PARAMETER,
                       f"Upload-Metadata: {key[:80]!r} is not base64 of UTF-8 text") from exc


def encode_metadata(pairs: Mapping[str, str | None]) -> str:
    return ",".join(key if value is None else
                    f"{key} {base64.b64encode(value.encode()).decode()}"
                    for key, value in pairs.items())


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


_DIGEST_SIZES = {"sha1": 20, "md5": 16}


def parse_checksum(value: str | None) -> Checksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; an algorithm cin does not offer
    is a 400, as the checksum extension says."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise CinError(Code.BAD_CHECKSUM_ALGORITHM, f"Upload-Checksum: {algorithm[:40]!r}; "
                       f"cin offers {', '.join(CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise CinError(Code.BAD_PARAMETER, "Upload-Checksum: the digest is not base64") from exc
    if len(digest) != _DIGEST_SIZES[algorithm]:
        raise CinError(Code.BAD_PARAMETER, f"Upload-Checksum: not a {algorithm} digest")
    return Checksum(algorithm, digest)


@dataclass(frozen=True)
class Concat:
    """Upload-Concat: a partial upload (`partials` empty) or a final one (the ids of its
    partial uploads, in order)."""

    partials: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return bool(self.partials)

    def header(self, public_url: str) -> str:
        if not self.final:
            return "partial"
        return "final;" + " ".join(f"{public_url}{PREFIX}/{tus_id}" for tus_id in self.partials)


def parse_concat(value: str | None) -> Concat | None:
    """`partial`, or `final;` and the partial uploads' URLs (absolute or paths),
    separated by spaces: each must be an upload URL of this protocol."""
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return Concat()
    if not value.startswith("final;"):
        raise CinError(Code.BAD_PARAMETER, "Upload-Concat: `partial` or `final;<urls>`")
    ids = tuple(upload_id_of(url) for url in value[len("final;"):].split())
    if not ids:
        raise CinError(Code.BAD_PARAMETER, "Upload-Concat: a final upload names its partials")
    if len(ids) > MAX_PARTS:
        raise CinError(Code.BAD_PARAMETER, f"Upload-Concat: over {MAX_PARTS} partial uploads")
    return Concat(ids)


def upload_id_of(url: str) -> str:
    """The upload id at the end of an upload URL (`.../files/<id>`)."""
    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    head, _, tus_id = path.rpartition("/")
    if not head.endswith(PREFIX) or not valid_id(tus_id):
        raise CinError(Code.BAD_PARAMETER, f"Upload-Concat: {url[:200]!r} is no upload URL")
    return tus_id


def valid_id(tus_id: str) -> bool:
    return bool(_UPLOAD_ID.fullmatch(tus_id))


def part_size(length: int | None) -> int:
    """The bytes of each bucket part of an upload of `length` (None: not known yet,
    placed as for the largest object), a whole number of MiB, at least the bucket's
    smallest part."""
    most = length if length is not None else MAX_OBJECT_SIZE
    needed = -(-most // MAX_PARTS)
    return max(PART_SIZE, MIN_PART_SIZE, -(-needed // _MiB) * _MiB)


def part_of(offset: int, size: int) -> tuple[int, int]:
    """The part number (from 1) and offset within it of the upload's byte `offset`."""
    return offset // size + 1, offset % size


def http_date(timestamp: float) -> str:
    """Upload-Expires: an HTTP date (RFC 9110 IMF-fixdate)."""
    return formatdate(timestamp, usegmt=True)


# ------------------------------------------------------------------ metadata to a store

# Upload-Metadata keys cin reads, as the popular clients name them: Uppy and
# tus-js-client's examples send `filename` and `filetype` (Uppy also `name` and `type`).
_FILENAME_KEYS = ("filename", "name")
_MIMETYPE_KEYS = ("filetype", "mimetype", "type", "contentType")
_STORE_KEYS = ("path", "container", "location", "region", "access")
CREDENTIAL_KEYS = ("apikey", "policy", "signature")


def start_fields(metadata: Mapping[str, str | None], *, apikey: str | None,
                 size: int) -> dict[str, Any]:
    """The Upload API start's fields (common/protocol/upload_api.py `StartRequest`) that a
    tus creation stands for: the apikey from the request (metadata `apikey`, or the
    query or header the route reads), the file's name and type, where to store it."""
    def first(keys: tuple[str, ...]) -> str | None:
        return next((value for key in keys if (value := metadata.get(key))), None)

    key = metadata.get("apikey") or apikey
    if not key:
        raise CinError(Code.MISSING_APIKEY, "tus: an `apikey` in Upload-Metadata, the "
                                            "`key` query parameter, or a Cin-Apikey header")
    if apikey and metadata.get("apikey") and apikey != metadata["apikey"]:
        raise CinError(Code.BAD_PARAMETER, "tus: two different apikeys")
    store = {name: value for name in _STORE_KEYS if (value := metadata.get(name))}
    return {"apikey": key, "filename": first(_FILENAME_KEYS) or "upload",
            "mimetype": first(_MIMETYPE_KEYS), "size": size, "store": store}


def upload_tags(metadata: Mapping[str, str | None]) -> dict[str, str]:
    """`upload_tags` in Upload-Metadata: a JSON object of strings, checked as the
    Upload API's complete checks its tags."""
    text = metadata.get("upload_tags")
    if not text:
        return {}
    try:
        tags = json.loads(text)
    except ValueError as exc:
        raise CinError(Code.BAD_TAGS, "upload_tags: not JSON") from exc
    return validate_tags(tags)


def credential_fields(metadata: Mapping[str, str | None]) -> dict[str, str]:
    """The policy and signature a client put in Upload-Metadata."""
    return {key: value for key in ("policy", "signature") if (value := metadata.get(key))}


def shown_metadata(metadata: Mapping[str, str | None]) -> dict[str, str | None]:
    """Upload-Metadata as HEAD gives it back: without the credentials."""
    return {key: value for key, value in metadata.items() if key not in CREDENTIAL_KEYS}
