"""A part's journal: its acknowledged chunks, and the byte ranges they cover.

One JSON line per chunk, `{"offset":..,"size":..,"md5":"<hex>"}`, appended and fsync'd
after the chunk's bytes (edge/multipart/part_spool.py). Everything here is pure but for reading a
journal file, which part_spool does in a worker thread.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("cin.edge.part_spool")

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, order=True)
class Extent:
    """A byte range `[offset, offset + size)` of a part."""

    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def overlaps(self, other: Extent) -> bool:
        return self.offset < other.end and other.offset < self.end


@dataclass(frozen=True)
class ChunkReceipt:
    """An acknowledged chunk: durable at the POP, listed in its part's journal."""

    part: int
    offset: int
    size: int
    md5_hex: str

    @property
    def extent(self) -> Extent:
        return Extent(self.offset, self.size)

    def journal_line(self) -> bytes:
        entry = {"offset": self.offset, "size": self.size, "md5": self.md5_hex}
        return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


def merge_extents(extents: Iterable[Extent]) -> tuple[Extent, ...]:
    """Sorted, with overlapping and touching ranges joined."""
    merged: list[Extent] = []
    for extent in sorted(extents):
        if merged and extent.offset <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Extent(last.offset, max(last.end, extent.end) - last.offset)
        else:
            merged.append(extent)
    return tuple(merged)


@dataclass(frozen=True)
class PartState:
    """Which bytes of a part are acknowledged."""

    part: int
    extents: tuple[Extent, ...]  # merged, sorted

    @classmethod
    def of(cls, part: int, receipts: Iterable[ChunkReceipt]) -> PartState:
        return cls(part, merge_extents(receipt.extent for receipt in receipts))

    @property
    def contiguous(self) -> int:
        """How many bytes from byte 0 are acknowledged without a gap."""
        if self.extents and self.extents[0].offset == 0:
            return self.extents[0].end
        return 0

    @property
    def acknowledged(self) -> int:
        return sum(extent.size for extent in self.extents)

    @property
    def end(self) -> int:
        return self.extents[-1].end if self.extents else 0

    def first_gap(self, expected: int | None = None) -> int | None:
        """The first missing byte below `end` (or below `expected` when given), else None."""
        if not self.extents:
            return 0
        limit = self.end if expected is None else expected
        return self.contiguous if self.contiguous < limit else None

    def size_if_complete(self, expected: int | None = None) -> int | None:
        """The part's size when its bytes are all here (and are `expected` many), else None."""
        if self.first_gap(expected) is not None:
            return None
        if expected is not None and self.end != expected:
            return None
        return self.end



def read_journal(path: Path, part: int) -> tuple[list[ChunkReceipt], int]:
    """The journal's acknowledged chunks, and the length of its whole lines.

    A line without its newline was torn by a crash before it was fsync'd: it was never
    acknowledged, so it is ignored (and cut before the next append).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    end = raw.rfind(b"\n") + 1
    receipts: dict[ChunkReceipt, None] = {}
    for line in raw[:end].splitlines():
        receipt = parse_line(line, part)
        if receipt is None:
            log.warning("%s: ignoring a malformed journal line %r", path, line[:200])
        else:
            receipts[receipt] = None
    return list(receipts), end


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
