"""The part status reply and the transfer's backoff: pure pieces of failover."""

from __future__ import annotations

import itertools

from common.protocol.file_status import FileStatus
from common.protocol.part_status import status_reply
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from edge.multipart.part_transfer import backoff

RECORD = FileRecord(handle="a" * 20, apikey="KEY", storage="bucket", provider="s3",
                    container="c", key="k", filename="f.bin", mimetype="application/x-demo",
                    size=300, status=FileStatus.STARTED, pop="east", uploaded=0.0)
UPLOAD = UploadRecord(upload_id="u" * 32, handle="a" * 20, storage_upload_id="s3-id",
                      pop="east", fii=False, created=0.0)


def test_the_coordinators_parts_win_over_what_a_pop_holds() -> None:
    recorded = [PartRecord(2, "east", "stored", 100, '"e2"'),
                PartRecord(1, "east", "stored", 100, '"e1"')]
    reply = status_reply(RECORD, UPLOAD, recorded, {1: 40, 3: 100, 4: 0}, "west")
    assert reply["parts"] == [
        {"part_number": 1, "size": 100, "state": "stored", "pop": "east", "etag": '"e1"'},
        {"part_number": 2, "size": 100, "state": "stored", "pop": "east", "etag": '"e2"'},
        {"part_number": 3, "size": 100, "state": "spooled", "pop": "west", "etag": None},
    ]  # part 4 holds no byte from its start: nothing to report
    assert reply["stored_bytes"] == 200
    assert (reply["status"], reply["size"], reply["handle"], reply["upload_id"]) == (
        "Started", 300, "a" * 20, "u" * 32)


def test_the_coordinator_alone_reports_what_it_recorded() -> None:
    reply = status_reply(RECORD, UPLOAD, [PartRecord(1, "east", "spooled", 300, None)])
    assert reply["parts"] == [{"part_number": 1, "size": 300, "state": "spooled",
                               "pop": "east", "etag": None}]
    assert reply["stored_bytes"] == 0


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    delays = list(itertools.islice(backoff(0.5, 8.0), 10))
    for delay, nominal in zip(delays, (0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8), strict=True):
        assert nominal / 2 <= delay <= nominal
