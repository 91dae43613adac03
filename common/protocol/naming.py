"""Handles, object keys and file names: pure functions, no IO.

A handle is a file's public identity (20 URL-safe characters from `secrets`); a key is
where its bytes live in the bucket. They are independent so that a file can be
overwritten, moved or re-stored without its link changing.
"""

from __future__ import annotations

import re
import secrets
import string
import unicodedata

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_KEY_BYTES

HANDLE_ALPHABET = string.ascii_letters + string.digits
HANDLE_LENGTH = 20
HANDLE_PATTERN = f"[A-Za-z0-9]{{{HANDLE_LENGTH}}}"
MAX_FILENAME_CHARS = 255
DEFAULT_FILENAME = "untitled"

_HANDLE_RE = re.compile(HANDLE_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Lone surrogates that surrogateescape did not make from a byte.
_NOT_A_BYTE_RE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def new_handle() -> str:
    return random_text(HANDLE_ALPHABET, HANDLE_LENGTH)


def random_text(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly from `alphabet` (at most 256 of them), from
    one read of the system's randomness rather than one per character (every store
    names a key with this)."""
    size = len(alphabet)
    # Bytes at or past the last whole multiple of `size` are redrawn: kept, they would
    # favour the first characters.
    limit = 256 - 256 % size
    chars: list[str] = []
    while len(chars) < length:
        chars += [alphabet[byte % size] for byte in secrets.token_bytes(length + length // 2)
                  if byte < limit]
    return "".join(chars[:length])


def is_handle(text: str) -> bool:
    return bool(_HANDLE_RE.fullmatch(text))  # `$` would let a trailing newline through


def is_unicode(text: str) -> bool:
    """False for a string with a lone surrogate (JSON can spell `"\\ud800"`): it is no
    character, and nothing downstream (UTF-8, msgpack, SQLite, S3) can encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_text(text: str) -> str:
    """`text` as valid Unicode: aiohttp keeps undecodable header bytes as lone surrogates
    (U+DC80 to U+DCFF, each one byte), which nothing downstream (msgpack, SQLite, HTTP
    headers) can encode. Those bytes are decoded again as UTF-8; any other lone surrogate
    (a JSON body can carry one) is replaced, as an undecodable byte is."""
    if is_unicode(text):
        return text
    text = _NOT_A_BYTE_RE.sub("\ufffd", text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def clean_filename(name: str | None) -> str:
    """A client's file name made safe to show and to put in a key.

    Directories are dropped (a browser may send `C:\\Users\\me\\cat.png`), control
    characters removed, and the name bounded; what is left is only ever used inside a
    key or a header, never as a file-system path.
    """
    if not name:
        return DEFAULT_FILENAME
    name = unicodedata.normalize("NFC", valid_text(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL_RE.sub("", name).strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    return name[:MAX_FILENAME_CHARS]


def validate_path(path: str) -> str:
    """Check a client's `path` parameter; returns it without a leading '/'."""
    if _CONTROL_RE.search(path):
        raise CinError(Code.BAD_PATH, "the path contains control characters")
    if not is_unicode(path):
        raise CinError(Code.BAD_PATH, "the path is not valid Unicode text")
    stripped = path.lstrip("/")  # "" (from "/") is the bucket's root folder
    if any(segment in ("..", ".") for segment in stripped.split("/")):
        raise CinError(Code.BAD_PATH, "the path may not contain '.' or '..' segments")
    if len(stripped.encode()) > MAX_KEY_BYTES:
        raise CinError(Code.BAD_PATH, f"the path is longer than {MAX_KEY_BYTES} bytes")
    return stripped


def object_key(path: str | None, filename: str) -> str:
    """The bucket key for a new file, following Filestack's `path` rules.

    No path: `<random id>_<filename>`. A path ending in '/' is a folder: the same name
    inside it. Any other path is the key itself.
    """
    unique = f"{new_handle()}_{filename}"
    if path is None:
        key = unique
    else:
        folder_or_key = validate_path(path)
        is_folder = not folder_or_key or folder_or_key.endswith("/")
        key = folder_or_key + unique if is_folder else folder_or_key
    if len(key.encode()) > MAX_KEY_BYTES:
        raise CinError(Code.BAD_PATH, f"the key would be longer than {MAX_KEY_BYTES} bytes")
    return key
