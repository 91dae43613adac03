"""Handles a POP may give out on its own: blocks leased by the coordinator, and upload
ids that prove themselves. Pure: no IO.

The coordinator assigns every handle, ahead of time. It leases a POP a *block*: an id of
`BLOCK_CHARS` random characters and a size. The POP makes the block's handles itself:

    handle = block (8) + index (4, base62) + mac (8, base62)    20 characters

where `mac` is an HMAC of the block and index under the deployment's internal secret.
So a handle names its block (and through the lease, its POP) without a row per handle
anywhere, any node with the secret can tell a handle made from a lease from a guess,
and knowing one handle of a block does not give the others. A block holds up to
`MAX_BLOCK_SIZE` handles; a POP uses each index once (edge/journal keeps which).

An upload id made at a POP is its file's handle and a MAC of it: any POP, and the
coordinator, can check one and read the handle from it without a lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from dataclasses import dataclass

from common.protocol.naming import HANDLE_LENGTH, is_handle, random_text

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
BLOCK_CHARS = 8
INDEX_CHARS = 4
MAC_CHARS = HANDLE_LENGTH - BLOCK_CHARS - INDEX_CHARS
MAX_BLOCK_SIZE = len(ALPHABET) ** INDEX_CHARS  # 14,776,336 handles
UPLOAD_MAC_CHARS = 22  # base64url: 132 bits

assert MAC_CHARS == 8


@dataclass(frozen=True)
class HandleBlock:
    """A lease: handles `block + index` for index in [0, size), given to `pop`."""

    block: str
    size: int
    pop: str
    granted: float = 0.0


def new_block_id() -> str:
    return random_text(ALPHABET, BLOCK_CHARS)


def is_block_id(text: str) -> bool:
    return len(text) == BLOCK_CHARS and all(c in ALPHABET for c in text)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    assert number == 0, "does not fit"
    return "".join(reversed(digits))


def _from_base62(text: str) -> int | None:
    number = 0
    for char in text:
        digit = ALPHABET.find(char)
        if digit < 0:
            return None
        number = number * len(ALPHABET) + digit
    return number


def _mac(secret: str, block: str, index_text: str) -> str:
    digest = hmac.new(secret.encode(), f"cin-handle:{block}{index_text}".encode(),
                      hashlib.sha256).digest()
    return _base62(int.from_bytes(digest[:8], "big") % len(ALPHABET) ** MAC_CHARS, MAC_CHARS)


def mint_handle(secret: str, block: str, index: int) -> str:
    """The handle at `index` of `block`."""
    if not is_block_id(block):
        raise ValueError(f"not a block id: {block!r}")
    if not 0 <= index < MAX_BLOCK_SIZE:
        raise ValueError(f"index {index} is outside a block")
    index_text = _base62(index, INDEX_CHARS)
    return block + index_text + _mac(secret, block, index_text)


@dataclass(frozen=True)
class LeasedHandle:
    block: str
    index: int


def leased_handle(secret: str, handle: str) -> LeasedHandle | None:
    """The block and index `handle` was made from, if it was made from one with this
    secret; None for any other string (an old random handle, a guess, a forgery)."""
    if not is_handle(handle):
        return None
    block = handle[:BLOCK_CHARS]
    index_text = handle[BLOCK_CHARS:BLOCK_CHARS + INDEX_CHARS]
    index = _from_base62(index_text)
    if index is None or not is_block_id(block):
        return None
    expected = _mac(secret, block, index_text)
    if not hmac.compare_digest(expected, handle[BLOCK_CHARS + INDEX_CHARS:]):
        return None
    return LeasedHandle(block, index)


def _upload_mac(secret: str, handle: str) -> str:
    digest = hmac.new(secret.encode(), f"cin-upload:{handle}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:UPLOAD_MAC_CHARS]


def mint_upload_id(secret: str, handle: str) -> str:
    """The upload id of the upload bringing `handle`'s bytes, made where it starts."""
    return handle + _upload_mac(secret, handle)


def handle_of_upload_id(secret: str, upload_id: str) -> str | None:
    """The handle an upload id made by `mint_upload_id` stands for; None for any other
    string (an upload id the coordinator made at random, or a forgery)."""
    if len(upload_id) != HANDLE_LENGTH + UPLOAD_MAC_CHARS:
        return None
    handle, mac = upload_id[:HANDLE_LENGTH], upload_id[HANDLE_LENGTH:]
    if not is_handle(handle):
        return None
    if not hmac.compare_digest(_upload_mac(secret, handle).encode(), mac.encode("utf-8",
                                                                               "replace")):
        return None
    return handle
