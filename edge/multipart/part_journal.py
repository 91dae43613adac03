"""A part's journal, as bytes: one JSON line per acknowledged chunk.

    {"offset":..,"size":..,"md5":"<hex>"}\\n

edge/multipart/part_spool.py appends a line, and fsyncs it, after the chunk's bytes;
the journal, not the data file, says which bytes of a part exist. Reading and writing
the file is part_spool's; this module only makes and reads lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from edge.multipart.part_ledger import ChunkReceipt

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def journal_line(receipt: ChunkReceipt) -> bytes:
    entry = {"offset": receipt.offset, "size": receipt.size, "md5": receipt.md5_hex}
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Journal:
    """What a journal's bytes say."""

    receipts: list[ChunkReceipt]  # each once, in the order first journaled
    end: int  # the length of its whole lines: where the next line goes
    malformed: list[bytes]  # whole lines that are not a chunk (ignored)


def parse_journal(raw: bytes, part: int) -> Journal:
    """The acknowledged chunks in a journal's bytes.

    A last line without its newline was torn by a crash before it was fsync'd: it was
    never acknowledged, so it is ignored (and cut before the next append).
    """
    end = raw.rfind(b"\n") + 1
    receipts: dict[ChunkReceipt, None] = {}
    malformed: list[bytes] = []
    for line in raw[:end].splitlines():
        receipt = parse_line(line, part)
        if receipt is None:
            malformed.append(line)
        else:
            receipts[receipt] = None
    return Journal(list(receipts), end, malformed)


def parse_line(line: bytes, part: int) -> ChunkReceipt | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    offset, size, md5 = entry.get("offset"), entry.get("size"), entry.get("md5")
    if type(offset) is not int or type(size) is not int or offset < 0 or size < 1:
        return None
    if not isinstance(md5, str) or not _MD5_HEX.fullmatch(md5):
        return None
    return ChunkReceipt(part, offset, size, md5)
