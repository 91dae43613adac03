"""A part's bookkeeping without a disk: which bytes are acknowledged, what a new chunk
must do, when a part is whole, how a chunk's bytes are cut around acknowledged ones, and
the journal's lines."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_PARTS
from edge.multipart.part_journal import journal_line, parse_journal, parse_line
from edge.multipart.part_ledger import (
    ChunkReceipt,
    ChunkRuns,
    Extent,
    PartLedger,
    PartState,
    Repeat,
    Run,
    WaitFor,
    Write,
    check_chunk_range,
    check_part_number,
    decode_md5,
    merge_extents,
)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def receipt(offset: int, size: int, data: bytes | None = None) -> ChunkReceipt:
    return ChunkReceipt(1, offset, size, md5_hex(data if data is not None else b"x" * size))


# Which bytes are acknowledged.

@pytest.mark.parametrize(
    ("extents", "contiguous", "gap", "complete"),
    [
        ([], 0, 0, None),
        ([Extent(0, 10)], 10, None, 10),
        ([Extent(5, 5)], 0, 0, None),
        ([Extent(0, 4), Extent(4, 6)], 10, None, 10),  # touching: joined
        ([Extent(0, 6), Extent(3, 7)], 10, None, 10),  # overlapping: joined
        ([Extent(6, 4), Extent(0, 5)], 5, 5, None),  # out of order, a one-byte gap
    ],
)
def test_part_state(extents: list[Extent], contiguous: int, gap: int | None,
                    complete: int | None) -> None:
    state = PartState(1, merge_extents(extents))
    assert state.contiguous == contiguous
    assert state.first_gap() == gap
    assert state.size_if_complete() == complete


def test_part_state_against_an_expected_size() -> None:
    state = PartState(1, merge_extents([Extent(0, 10)]))
    assert state.size_if_complete(10) == 10
    assert state.size_if_complete(11) is None  # the tail is missing
    assert state.first_gap(11) == 10
    assert state.size_if_complete(9) is None  # more bytes than the part has
    assert state.acknowledged == 10


# What a chunk's request says.

@pytest.mark.parametrize("part", [0, -1, MAX_PARTS + 1, True, "1", 1.0])
def test_bad_part_numbers(part: object) -> None:
    with pytest.raises(CinError) as caught:
        check_part_number(part)  # type: ignore[arg-type]
    assert caught.value.code is Code.BAD_PARAMETER


def test_good_part_numbers() -> None:
    check_part_number(1)
    check_part_number(MAX_PARTS)


@pytest.mark.parametrize(
    ("offset", "size", "allowed"),
    [
        (0, 1, True),
        (-1, 10, False),
        (0, 0, False),
        (990, 10, True),  # ends at the last byte a part may have
        (991, 10, False),  # one past it
        (1000, 1, False),
        (True, 10, False),
        (0, 10.0, False),
    ],
)
def test_chunk_range_bounds(offset: int, size: int, allowed: bool) -> None:
    if allowed:
        assert check_chunk_range(offset, size, 1000) == Extent(offset, size)
    else:
        with pytest.raises(CinError) as caught:
            check_chunk_range(offset, size, 1000)
        assert caught.value.code is Code.BAD_PARAMETER


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        (base64.b64encode(hashlib.md5(b"x").digest()).decode(), hashlib.md5(b"x").digest()),
        ("not base64!", "Content-MD5 is not valid base64"),
        (base64.b64encode(b"\0" * 15).decode(), "Content-MD5 is not the base64 of an MD5 digest"),
        (base64.b64encode(b"\0" * 17).decode(), "Content-MD5 is not the base64 of an MD5 digest"),
    ],
)
def test_decode_md5(header: str | None, expected: bytes | str | None) -> None:
    if not isinstance(expected, str):
        assert decode_md5(header) == expected
        return
    with pytest.raises(CinError) as caught:
        decode_md5(header)
    assert (caught.value.code, caught.value.detail) == (Code.BAD_PARAMETER, expected)


# What a new chunk must do.

def test_a_free_range_is_claimed_and_released() -> None:
    ledger = PartLedger(1)
    admission = ledger.admit(Extent(0, 100))
    assert isinstance(admission, Write)
    assert admission.claim.held == ()
    assert ledger.claims == [admission.claim]
    # A chunk beside it, touching but not overlapping, is free too.
    beside = ledger.admit(Extent(100, 100))
    assert isinstance(beside, Write)
    ledger.release(admission.claim)
    ledger.release(beside.claim)
    assert ledger.claims == []


def test_a_chunk_over_one_still_arriving_takes_its_range_over() -> None:
    """The older chunk's client may have stalled: the newer one (its retry) never waits
    for it, and the older one may write no more."""
    ledger = PartLedger(1)
    first = ledger.admit(Extent(100, 100))
    assert isinstance(first, Write)
    first.claim.check_current()
    for overlapping in (Extent(0, 101), Extent(199, 10)):
        newer = ledger.admit(overlapping)
        assert isinstance(newer, Write)
        assert first.claim in newer.superseded  # a write of it may still be under way
        assert first.claim.superseded and not newer.claim.superseded
        ledger.release(newer.claim)
    with pytest.raises(CinError) as caught:
        first.claim.check_current()
    assert (caught.value.code, caught.value.detail) == (
        Code.CONFLICT, "bytes 100-199 of part 1 were taken over by a newer request for them")
    with pytest.raises(CinError):
        first.claim.commit()  # its body ended after all: still nothing is acknowledged
    # A chunk beside it is not in its way.
    beside = ledger.admit(Extent(200, 10))
    assert isinstance(beside, Write) and beside.superseded == ()


def test_a_chunk_over_one_being_made_durable_waits_for_it() -> None:
    ledger = PartLedger(1)
    first = ledger.admit(Extent(100, 100))
    assert isinstance(first, Write)
    first.claim.commit()
    for overlapping in (Extent(100, 100), Extent(0, 101), Extent(199, 10), Extent(150, 1)):
        assert ledger.admit(overlapping) == WaitFor(first.claim)
    assert ledger.claims == [first.claim]  # waiting claims nothing, supersedes nothing
    assert not first.claim.superseded
    ledger.acknowledge(receipt(100, 100))
    ledger.release(first.claim)
    assert ledger.admit(Extent(100, 100)) == Repeat(receipt(100, 100))


def test_a_repeat_of_acknowledged_bytes_leaves_a_chunk_in_flight_alone() -> None:
    ledger = PartLedger(1, [receipt(0, 100)])
    writing = ledger.admit(Extent(50, 100))
    assert isinstance(writing, Write)
    assert ledger.admit(Extent(0, 100)) == Repeat(receipt(0, 100))  # compared, not written
    writing.claim.check_current()


def test_a_chunk_at_an_acknowledged_range_is_a_repeat() -> None:
    ledger = PartLedger(1, [receipt(0, 100), receipt(100, 100)])
    assert ledger.admit(Extent(100, 100)) == Repeat(receipt(100, 100))
    assert ledger.claims == []


def test_a_chunk_over_acknowledged_bytes_holds_them_clipped_to_its_range() -> None:
    ledger = PartLedger(1, [receipt(100, 200), receipt(500, 100), receipt(900, 50)])
    admission = ledger.admit(Extent(0, 800))
    assert isinstance(admission, Write)
    assert admission.claim.held == (Extent(100, 200), Extent(500, 100))
    ledger.release(admission.claim)
    inside = ledger.admit(Extent(150, 400))  # starts and ends inside acknowledged bytes
    assert isinstance(inside, Write)
    assert inside.claim.held == (Extent(150, 150), Extent(500, 50))


def test_acknowledged_chunks_make_the_state_and_forget_clears_them() -> None:
    ledger = PartLedger(1)
    ledger.acknowledge(receipt(10, 10))
    ledger.acknowledge(receipt(0, 10))
    assert ledger.state() == PartState(1, (Extent(0, 20),))
    ledger.forget()
    assert ledger.state() == PartState(1, ())


# When a part is whole, and what may be read of it.

@pytest.mark.parametrize(
    ("chunks", "expected", "detail"),
    [
        ([(0, 10), (20, 10)], None, "part 1 has a gap at byte 10"),
        ([(5, 10)], None, "part 1 has a gap at byte 0"),
        ([], None, "part 1 has a gap at byte 0"),
        ([(0, 30)], 31, "part 1 has a gap at byte 30"),
        ([(0, 30)], 29, "part 1 has 30 bytes, its size is 29"),
    ],
)
def test_an_incomplete_part_is_not_finished(chunks: list[tuple[int, int]],
                                            expected: int | None, detail: str) -> None:
    ledger = PartLedger(1, [receipt(offset, size) for offset, size in chunks])
    with pytest.raises(CinError) as caught:
        ledger.finished_size(expected)
    assert (caught.value.code, caught.value.detail) == (Code.CONFLICT, detail)


def test_a_finished_part_knows_its_md5_only_when_it_came_as_one_chunk() -> None:
    whole = PartLedger(1, [receipt(0, 30, b"w" * 30)])
    assert whole.finished_size(30) == (30, md5_hex(b"w" * 30))
    pieces = PartLedger(1, [receipt(0, 10), receipt(10, 20)])
    assert pieces.finished_size() == (30, None)
    # Pieces, then a retry of the whole part: its receipt gives the MD5.
    pieces.acknowledge(receipt(0, 30))
    assert pieces.finished_size(30) == (30, md5_hex(b"x" * 30))


@pytest.mark.parametrize(
    ("start", "length", "readable"),
    [
        (0, 100, True),
        (99, 1, True),
        (100, 0, True),  # an empty range at the end of acknowledged bytes
        (99, 2, False),  # one byte past them
        (-1, 5, False),
        (0, -1, False),
        (150, 50, True),  # the later extent
        (90, 70, False),  # across the gap
    ],
)
def test_only_acknowledged_bytes_are_readable(start: int, length: int,
                                              readable: bool) -> None:
    ledger = PartLedger(1, [receipt(0, 100), receipt(150, 50)])
    if readable:
        assert ledger.check_readable(start, length) == Extent(start, length)
    else:
        with pytest.raises(CinError) as caught:
            ledger.check_readable(start, length)
        assert caught.value.code is Code.RANGE_NOT_SATISFIABLE


# A chunk's bytes as they arrive.

def layout(runs: list[Run]) -> list[tuple[int, bytes, bool]]:
    return [(run.offset, b"".join(bytes(piece) for piece in run.pieces), run.held)
            for run in runs]


def test_a_chunk_with_nothing_held_is_one_run_hashed_once() -> None:
    data = bytes(range(256)) * 4
    runs = ChunkRuns(Extent(1000, len(data)))
    cut = [runs.take([data[:300], data[300:400]]), runs.take([data[400:]])]
    assert [layout(batch) for batch in cut] == [[(1000, data[:400], False)],
                                                 [(1400, data[400:], False)]]
    assert runs.md5.hexdigest() == md5_hex(data)
    assert runs.written_runs() == [(Extent(1000, len(data)), md5_hex(data))]


def test_held_bytes_are_cut_out_to_be_compared_not_written() -> None:
    data = bytes(range(256)) * 4  # 1024 bytes at offset 0
    runs = ChunkRuns(Extent(0, 1024), held=(Extent(100, 200), Extent(500, 100)))
    # Batches whose edges fall anywhere: inside a held range, across one, on its edge.
    taken = [run for batch in ([data[:150]], [data[150:520], data[520:600]], [data[600:]])
             for run in runs.take(batch)]
    regrouped: list[tuple[int, bytes, bool]] = []
    for offset, piece, held in layout(taken):
        if regrouped and regrouped[-1][2] == held and \
                regrouped[-1][0] + len(regrouped[-1][1]) == offset:
            regrouped[-1] = (regrouped[-1][0], regrouped[-1][1] + piece, held)
        else:
            regrouped.append((offset, piece, held))
    assert regrouped == [(0, data[:100], False), (100, data[100:300], True),
                         (300, data[300:500], False), (500, data[500:600], True),
                         (600, data[600:], False)]
    assert runs.md5.hexdigest() == md5_hex(data)
    assert runs.written_runs() == [(Extent(0, 100), md5_hex(data[:100])),
                                   (Extent(300, 200), md5_hex(data[300:500])),
                                   (Extent(600, 424), md5_hex(data[600:]))]


def test_a_chunk_all_held_writes_nothing() -> None:
    runs = ChunkRuns(Extent(10, 20), held=(Extent(10, 20),))
    assert layout(runs.take([b"a" * 20])) == [(10, b"a" * 20, True)]
    assert runs.written_runs() == []


def test_a_chunk_is_counted_against_its_size() -> None:
    runs = ChunkRuns(Extent(0, 100))
    runs.count(60)
    runs.count(40)
    with pytest.raises(CinError) as caught:
        runs.count(1)
    assert caught.value.detail == "the chunk is at least 101 bytes, the request said 100"
    short = ChunkRuns(Extent(0, 100))
    short.count(99)
    with pytest.raises(CinError) as caught:
        short.check_whole(None)
    assert caught.value.detail == "the chunk is 99 bytes, the request said 100"


def test_a_whole_chunk_is_checked_against_its_content_md5() -> None:
    runs = ChunkRuns(Extent(0, 3))
    runs.count(3)
    runs.take([b"abc"])
    runs.check_whole(None)
    runs.check_whole(hashlib.md5(b"abc").digest())
    with pytest.raises(CinError) as caught:
        runs.check_whole(hashlib.md5(b"abd").digest())
    assert (caught.value.code, caught.value.detail) == (Code.BAD_PARAMETER,
                                                        "Content-MD5 does not match")


# The journal's lines.

def test_a_journal_line_round_trips() -> None:
    chunk = ChunkReceipt(3, 1024, 2048, md5_hex(b"z"))
    line = journal_line(chunk)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"offset": 1024, "size": 2048, "md5": md5_hex(b"z")}
    assert parse_line(line.rstrip(b"\n"), 3) == chunk


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'{"offset": -1, "size": 1, "md5": "' + b"0" * 32 + b'"}',
    b'{"offset": 0, "size": 0, "md5": "' + b"0" * 32 + b'"}',
    b'{"offset": 0, "size": true, "md5": "' + b"0" * 32 + b'"}',
    b'{"offset": 0, "size": 1, "md5": "' + b"0" * 31 + b'"}',
    b'{"offset": 0, "size": 1, "md5": "' + b"A" * 32 + b'"}',
    b'{"offset": 0, "size": 1}',
])
def test_a_malformed_line_is_no_chunk(line: bytes) -> None:
    assert parse_line(line, 1) is None


def test_a_journal_keeps_whole_lines_once_and_ignores_a_torn_one() -> None:
    first, second = receipt(0, 10), receipt(10, 5)
    raw = (journal_line(first) + b"garbage\n" + journal_line(second) + journal_line(first)
           + b'{"offset":15,"si')
    journal = parse_journal(raw, 1)
    assert journal.receipts == [first, second]
    assert journal.end == len(raw) - len(b'{"offset":15,"si')
    assert journal.malformed == [b"garbage"]
    assert parse_journal(b"", 1).receipts == [] and parse_journal(b"", 1).end == 0
