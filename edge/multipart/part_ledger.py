"""What a POP knows of a part's bytes, decided without a disk (sans-IO).

A part is written in chunks, each a byte range (`Extent`) at an offset. A chunk is
acknowledged (a `ChunkReceipt`) once its bytes are durable; which bytes are acknowledged
is a `PartState`. A `PartLedger` keeps one part's receipts and the chunks being written
now, and decides what a new chunk must do: be compared with an acknowledged chunk it
repeats, or be written, with the acknowledged bytes inside its range compared rather
than written again (`ChunkRuns`). It also says when a part is whole and which of its
bytes may be read.

A chunk in flight over the same bytes never makes a new one wait on its client: while
its body is still arriving, the newer chunk takes the range over (`Write.superseded`),
and the older one is refused before it writes again or acknowledges anything. A client
whose chunk stalled retries it on a new connection, and the retry must not wait for the
stalled body (or its timeout). Only a chunk whose body has all arrived, and is being
made durable (disk work, not the client's), is waited for (`WaitFor`).

edge/multipart/part_spool.py does the IO these decisions call for; the journal's line
format is edge/multipart/part_journal.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_PARTS

_MD5_BYTES = 16


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

    def clip(self, other: Extent) -> Extent:
        """The part of `other` inside this range (they must overlap)."""
        start = max(self.offset, other.offset)
        return Extent(start, min(self.end, other.end) - start)


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

    def holds(self, wanted: Extent) -> bool:
        """Whether every byte of `wanted` is acknowledged."""
        return any(extent.offset <= wanted.offset and wanted.end <= extent.end
                   for extent in self.extents)


# What a chunk's request says, checked before a byte of its body is read.

def check_part_number(part: int) -> None:
    if type(part) is not int or not 1 <= part <= MAX_PARTS:
        raise CinError(Code.BAD_PARAMETER, f"a part number is 1 to {MAX_PARTS}")


def check_chunk_range(offset: int, size: int, max_part_bytes: int) -> Extent:
    if type(offset) is not int or type(size) is not int or offset < 0 or size < 1:
        raise CinError(Code.BAD_PARAMETER, "a chunk needs an offset >= 0 and a size >= 1")
    if offset + size > max_part_bytes:
        raise CinError(Code.BAD_PARAMETER, f"a part may not pass {max_part_bytes} bytes")
    return Extent(offset, size)


def decode_md5(md5_b64: str | None) -> bytes | None:
    """A `Content-MD5` header's digest, or None without one."""
    if md5_b64 is None:
        return None
    try:
        digest = base64.b64decode(md5_b64, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CinError(Code.BAD_PARAMETER, "Content-MD5 is not valid base64") from error
    if len(digest) != _MD5_BYTES:
        raise CinError(Code.BAD_PARAMETER, "Content-MD5 is not the base64 of an MD5 digest")
    return digest


# One part's chunks: acknowledged, in flight, and what a new one must do.

@dataclass(eq=False)
class Claim:
    """A chunk being written now: its range, and the acknowledged bytes inside it when it
    was admitted (compared with the chunk's, never written again)."""

    part: int
    extent: Extent
    held: tuple[Extent, ...]
    committing: bool = False  # its body is all here: it is being made durable
    superseded: bool = False  # a newer chunk took its range over: it must stop

    def commit(self) -> None:
        """The chunk's body is all here and checked: unless it was superseded, it is made
        durable now, and newer chunks over its range wait for it."""
        self.check_current()
        self.committing = True

    def check_current(self) -> None:
        """Refuse a chunk whose range a newer one took over: it may write no more."""
        if self.superseded:
            raise CinError(Code.CONFLICT, f"bytes {self.extent.offset}-{self.extent.end - 1}"
                           f" of part {self.part} were taken over by a newer request for them")


@dataclass(frozen=True)
class WaitFor:
    """A chunk being made durable overlaps this one: once it settles, ask again."""

    claim: Claim


@dataclass(frozen=True)
class Repeat:
    """The chunk is at the range of an acknowledged one: fine if its bytes are the same."""

    receipt: ChunkReceipt


@dataclass(frozen=True)
class Write:
    """The chunk may be written; its range is claimed until it is released. The chunks
    in flight over it whose bodies were still arriving are `superseded`: none writes
    again, but one may be inside a write now, which must end before this one writes."""

    claim: Claim
    superseded: tuple[Claim, ...] = ()


Admission = WaitFor | Repeat | Write


@dataclass
class PartLedger:
    """One part's acknowledged chunks (mirroring its journal) and the chunks in flight."""

    part: int
    receipts: list[ChunkReceipt] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)

    def state(self) -> PartState:
        return PartState.of(self.part, self.receipts)

    def admit(self, extent: Extent) -> Admission:
        """What a chunk at `extent` does now (see the module's docstring)."""
        overlapping = [claim for claim in self.claims if claim.extent.overlaps(extent)]
        for claim in overlapping:
            if claim.committing:
                return WaitFor(claim)
        for receipt in self.receipts:
            if receipt.extent == extent:
                return Repeat(receipt)  # compared, not written: no claim needed
        # A client that lost a chunk's answer sends it again, smaller (FII halves a chunk
        # on a failure), and the chunk after it may straddle the end of what arrived.
        held = tuple(extent.clip(acknowledged) for acknowledged in self.state().extents
                     if acknowledged.overlaps(extent))
        for claim in overlapping:
            claim.superseded = True
        claim = Claim(self.part, extent, held)
        self.claims.append(claim)
        return Write(claim, tuple(overlapping))

    def acknowledge(self, receipt: ChunkReceipt) -> None:
        """`receipt` is durable (its journal line fsync'd)."""
        self.receipts.append(receipt)

    def release(self, claim: Claim) -> None:
        """The claimed chunk is acknowledged or failed: its range is free."""
        self.claims.remove(claim)

    def forget(self) -> None:
        """The part's files are gone: nothing of it is acknowledged any more."""
        self.receipts.clear()

    def finished_size(self, expected_size: int | None = None) -> tuple[int, str | None]:
        """The size of a part whose bytes are all acknowledged, and its MD5 when it is
        known without reading the part (it came as one chunk); a conflict otherwise."""
        state = self.state()
        gap = state.first_gap(expected_size)
        if gap is not None:
            raise CinError(Code.CONFLICT, f"part {self.part} has a gap at byte {gap}")
        if expected_size is not None and state.end != expected_size:
            raise CinError(Code.CONFLICT,
                           f"part {self.part} has {state.end} bytes, its size is {expected_size}")
        whole = [r for r in self.receipts if r.offset == 0 and r.size == state.end]
        return state.end, whole[0].md5_hex if whole else None

    def check_readable(self, start: int, length: int) -> Extent:
        """Bytes `[start, start + length)`, if they are all acknowledged."""
        wanted = Extent(start, length)
        if start < 0 or length < 0 or not self.state().holds(wanted):
            raise CinError(Code.RANGE_NOT_SATISFIABLE,
                           f"bytes {start}-{start + length - 1} of part {self.part} are not here")
        return wanted


# One chunk's bytes as they arrive: how many, their MD5, and where each one goes.

@dataclass(frozen=True)
class Run:
    """Consecutive bytes of a chunk at `offset`: new ones to write, or, when `held`,
    acknowledged ones to compare with what the part file has there."""

    offset: int
    pieces: list[bytes | memoryview]
    held: bool

    @property
    def size(self) -> int:
        return sum(len(piece) for piece in self.pieces)


class ChunkRuns:
    """One chunk's bytes, taken in order: counted against its size, hashed (the chunk's
    MD5, and one for each run written, for the journal), and cut into `Run`s around the
    acknowledged bytes in `held`."""

    def __init__(self, extent: Extent, held: tuple[Extent, ...] = ()) -> None:
        self.extent = extent
        self.held = held
        self.received = 0
        self.position = extent.offset  # where the next byte taken goes
        self.md5 = hashlib.md5(usedforsecurity=False)
        self._written: list[tuple[Extent, Any]] = []  # (run, its md5 hasher)

    def count(self, size: int) -> None:
        """`size` more bytes came from the body; refused once past the chunk's size (so
        nothing is read beyond it)."""
        self.received += size
        if self.received > self.extent.size:
            raise CinError(Code.BAD_PARAMETER, f"the chunk is at least {self.received} "
                           f"bytes, the request said {self.extent.size}")

    def take(self, buffers: list[bytes]) -> list[Run]:
        """The runs `buffers` (the next bytes, counted) make, in order."""
        for buffer in buffers:
            self.md5.update(buffer)
        size = sum(len(buffer) for buffer in buffers)
        if not self.held:
            # Nothing held: the chunk is one run of new bytes, whose MD5 is the chunk's,
            # hashed just above. Hashing every byte a second time for the run cost a
            # POP ~2 s of CPU per GB.
            run = Run(self.position, list(buffers), held=False)
            self._extend_run(size, self.md5)
            return [run]
        runs: list[Run] = []
        for buffer in buffers:
            view = memoryview(buffer)
            while view:
                end, held = self._run_at(self.position)
                piece = view[:min(len(view), end - self.position)]
                if held:
                    self._append(runs, piece, held=True)
                    self.position += len(piece)
                else:
                    self._append(runs, piece, held=False)
                    self._extend_run(len(piece), None).update(piece)
                view = view[len(piece):]
        return runs

    def check_whole(self, expected_md5: bytes | None) -> None:
        """After the body's end: it was the chunk's size, and its MD5 what was asked."""
        if self.received != self.extent.size:
            raise CinError(Code.BAD_PARAMETER, f"the chunk is {self.received} bytes, "
                           f"the request said {self.extent.size}")
        if expected_md5 is not None and self.md5.digest() != expected_md5:
            raise CinError(Code.BAD_PARAMETER, "Content-MD5 does not match")

    def written_runs(self) -> list[tuple[Extent, str]]:
        """Each run of new bytes with its MD5: one journal line each."""
        return [(run, md5.hexdigest()) for run, md5 in self._written]

    def _append(self, runs: list[Run], piece: memoryview, *, held: bool) -> None:
        last = runs[-1] if runs else None
        if last is not None and last.held == held and last.offset + last.size == self.position:
            last.pieces.append(piece)
        else:
            runs.append(Run(self.position, [piece], held))

    def _run_at(self, position: int) -> tuple[int, bool]:
        """Where the run holding `position` ends, and whether it is held bytes."""
        for held in self.held:
            if held.offset <= position < held.end:
                return held.end, True
            if position < held.offset:
                return held.offset, False
        return self.extent.end, False

    def _extend_run(self, size: int, hasher: Any | None) -> Any:
        """Count `size` new bytes at the position into the run they continue, or into a
        new run (hashed by `hasher`, else a new MD5); the run's MD5, to feed them to."""
        if self._written and self._written[-1][0].end == self.position:
            run, md5 = self._written[-1]
            self._written[-1] = (Extent(run.offset, run.size + size), md5)
        else:
            md5 = hasher if hasher is not None else hashlib.md5(usedforsecurity=False)
            self._written.append((Extent(self.position, size), md5))
        self.position += size
        return md5
