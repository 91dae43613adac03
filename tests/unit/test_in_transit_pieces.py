"""The pure pieces of In Transit downloads: slicing a range into parts, the weak ETag,
revalidation, the wire messages, and the holder lookup of a redirect."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from support import config_data, to_config

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.storage import ByteRange
from common.web.download import not_modified
from common.web.in_transit import holder_of
from edge.downloads.transit_download import PartSlice, part_slices, transit_etag

RECORD = FileRecord(handle="a" * 20, apikey="KEY", storage="bucket", provider="s3",
                    container="c", key="k", filename="f.bin", mimetype="t/p", size=25,
                    status=FileStatus.IN_TRANSIT, pop="us-east-1", uploaded=1.5)
UPLOAD = UploadRecord(upload_id="u" * 32, handle="a" * 20, storage_upload_id="s3-id",
                      pop="us-east-1", fii=False, created=1.5)
SIZES = (10, 10, 5)  # parts 1..3: file bytes 0-9, 10-19, 20-24


@pytest.mark.parametrize(("wanted", "slices"), [
    (ByteRange(0, 24), [PartSlice(1, 0, 10), PartSlice(2, 0, 10), PartSlice(3, 0, 5)]),
    (ByteRange(0, 0), [PartSlice(1, 0, 1)]),
    (ByteRange(9, 10), [PartSlice(1, 9, 1), PartSlice(2, 0, 1)]),
    (ByteRange(10, 19), [PartSlice(2, 0, 10)]),
    (ByteRange(5, 22), [PartSlice(1, 5, 5), PartSlice(2, 0, 10), PartSlice(3, 0, 3)]),
    (ByteRange(24, 24), [PartSlice(3, 4, 1)]),
    (ByteRange(0, -1), []),  # an empty file's whole range
])
def test_a_range_is_cut_at_part_boundaries(wanted: ByteRange, slices: list[PartSlice]) -> None:
    assert part_slices(SIZES, wanted) == slices
    assert sum(piece.length for piece in slices) == wanted.length


def test_the_transit_etag_is_weak_stable_and_does_not_show_the_upload_id() -> None:
    etag = transit_etag(UPLOAD.upload_id)
    assert etag == transit_etag(UPLOAD.upload_id)
    assert etag != transit_etag("v" * 32)
    assert etag.startswith('W/"transit-') and etag.endswith('"')
    assert UPLOAD.upload_id not in etag


@pytest.mark.parametrize(("header", "etag", "matches"), [
    (None, '"x"', False),
    ('"x"', '"x"', True),
    ('"y", "x"', '"x"', True),
    ('W/"x"', '"x"', True),
    ('"x"', 'W/"x"', True),
    ('W/"x"', 'W/"x"', True),
    ('"y"', 'W/"x"', False),
    ('"xx"', '"x"', False),
])
def test_if_none_match_compares_weakly(header: str | None, etag: str, matches: bool) -> None:
    assert not_modified(header, etag) is matches


def test_upload_parts_reply_round_trips() -> None:
    parts = [PartRecord(1, "us-east-1", "stored", 10, "e1"),
             PartRecord(2, "us-east-1", "spooled", 15, None)]
    reply = wire.UploadPartsReply(record=RECORD, upload=UPLOAD, parts=parts)
    assert wire.decode(wire.encode(reply)) == reply
    empty = wire.UploadPartsReply(record=RECORD, upload=UPLOAD, parts=[])
    assert wire.decode(wire.encode(empty)) == empty
    lookup = wire.LookupUploadOfFile(handle=RECORD.handle)
    assert wire.decode(wire.encode(lookup)) == lookup


@pytest.mark.parametrize("parts", [
    "not a list",
    [[1, 10]],  # a pair, not a map
    [{"number": "1", "pop": "p", "state": "spooled", "size": 10, "etag": None}],
    [{"number": 1, "pop": "p", "state": "spooled"}],  # no size
])
def test_malformed_parts_are_a_bad_message(parts: object) -> None:
    body = msgpack.packb({"t": "upload_parts", "v": 1, "record": RECORD.to_wire(),
                          "upload": UPLOAD.to_wire(), "parts": parts})
    with pytest.raises(CinError) as caught:
        wire.decode(body)
    assert caught.value.code is Code.BAD_MESSAGE


def test_the_holder_is_found_by_name_or_the_file_is_unavailable(tmp_path: Path) -> None:
    config = to_config(config_data(tmp_path), tmp_path)
    assert holder_of(config, RECORD) == config.pops[0]
    assert holder_of(config, RECORD.with_changes(pop="eu-west-1")) == config.pops[1]
    with pytest.raises(CinError) as caught:
        holder_of(config, RECORD.with_changes(pop="ap-south-1"))
    assert (caught.value.code, caught.value.status) == (Code.IN_TRANSIT_UNAVAILABLE, 503)
