"""The rules of the coordinator's state (coordinator/state/rules.py), without an engine.
Every engine applies them; tests/state checks that each does."""

from __future__ import annotations

import pytest

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus, IllegalTransition
from common.protocol.records import FileRecord, PartRecord
from coordinator.state import rules

EAST, WEST = "us-east-1", "eu-west-1"


def record(status: FileStatus = FileStatus.STARTED, **changes: object) -> FileRecord:
    return FileRecord(handle="h" * 20, apikey="KEY", storage="bucket", provider="s3",
                      container="c", key="k/h", filename="f.txt", mimetype="text/plain",
                      size=3, status=status, pop=EAST, uploaded=1.0, tags={"a": "1"},
                      ).with_changes(**changes)


def test_with_status_changes_size_and_etag_only_when_given() -> None:
    assert rules.with_status(record(), FileStatus.COMPLETE, etag="e") == record(
        FileStatus.COMPLETE, etag="e")
    assert rules.with_status(record(etag="e"), FileStatus.COMPLETE, size=9) == record(
        FileStatus.COMPLETE, etag="e", size=9)
    with pytest.raises(IllegalTransition):
        rules.with_status(record(FileStatus.FAILED), FileStatus.COMPLETE)


def test_in_transit_takes_the_tags_and_a_repeated_complete_changes_nothing() -> None:
    assert rules.in_transit(record(), {"b": "2"}) == record(FileStatus.IN_TRANSIT,
                                                            tags={"b": "2"})
    assert rules.in_transit(record(FileStatus.IN_TRANSIT), {"b": "2"}) is None
    with pytest.raises(IllegalTransition):
        rules.in_transit(record(FileStatus.FAILED), {})


def test_held_parts_are_recorded_as_spooled_unless_this_pop_stored_them() -> None:
    recorded = {1: PartRecord(1, EAST, "stored", 5, "e1"),   # this POP, this size: stays
                2: PartRecord(2, WEST, "stored", 5, "e2"),   # another POP's copy
                3: PartRecord(3, EAST, "stored", 4, "e3")}   # another size
    held = [PartRecord(n, EAST, "spooled", 5, None) for n in (1, 2, 3, 4)]
    assert rules.held_parts(recorded, held) == held[1:]
    # Whatever a caller put in them, held parts are recorded as spooled, without an etag.
    assert rules.held_parts({}, [PartRecord(1, EAST, "stored", 5, "e")]) == [
        PartRecord(1, EAST, "spooled", 5, None)]


def test_a_stored_part_is_recorded_as_stored() -> None:
    assert rules.stored_part(PartRecord(2, WEST, "spooled", 5, "e2")) == PartRecord(
        2, WEST, "stored", 5, "e2")


@pytest.mark.parametrize("status", [FileStatus.STARTED, FileStatus.IN_TRANSIT,
                                    FileStatus.FAILED])
def test_only_a_complete_file_is_overwritten(status: FileStatus) -> None:
    with pytest.raises(CinError) as caught:
        rules.overwritten(record(status), size=9, etag="e2", mimetype="image/png", now=5.0)
    assert caught.value.code is Code.CONFLICT


def test_an_overwrite_is_a_new_version_whose_hashes_are_unknown() -> None:
    before = record(FileStatus.COMPLETE, etag="e1", hashes={"md5": "x"})
    assert rules.overwritten(before, size=9, etag="e2", mimetype="image/png", now=5.0) == \
        record(FileStatus.COMPLETE, etag="e2", size=9, mimetype="image/png", version=2,
               uploaded=5.0)


@pytest.mark.parametrize(("status", "allowed"), [
    (FileStatus.STARTED, False), (FileStatus.IN_TRANSIT, False),
    (FileStatus.COMPLETE, True), (FileStatus.FAILED, True)])
def test_a_file_still_uploading_is_not_deleted(status: FileStatus, allowed: bool) -> None:
    if allowed:
        rules.check_delete(record(status))
    else:
        with pytest.raises(CinError) as caught:
            rules.check_delete(record(status))
        assert caught.value.code is Code.CONFLICT
        assert "still uploading" in str(caught.value)


def test_hashes_apply_to_the_current_version_only() -> None:
    assert rules.hashes_apply(record(version=2), 2)
    assert not rules.hashes_apply(record(version=2), 1)


def test_only_a_started_upload_expires() -> None:
    assert rules.expired(record()) == record(FileStatus.FAILED)
    # In Transit may become Failed by the status table, but never by expiry: its bytes
    # were acknowledged.
    for status in (FileStatus.IN_TRANSIT, FileStatus.COMPLETE, FileStatus.FAILED):
        with pytest.raises(CinError) as caught:
            rules.expired(record(status))
        assert caught.value.code is Code.CONFLICT


@pytest.mark.parametrize("sizes", [{}, {2: 3}, {1: 1, 3: 2}, {1: 2}, {1: 4}, {0: 3},
                                   {1: 4, 2: -1}],
                         ids=["none", "no_first", "a_gap", "short", "long", "part_zero",
                              "negative"])
def test_parts_must_run_from_one_without_a_gap_and_make_up_the_size(
        sizes: dict[int, int]) -> None:
    with pytest.raises(CinError) as refused:
        rules.check_parts_make_up(record(), sizes)
    assert refused.value.code is Code.CONFLICT


def test_parts_that_make_up_the_file_pass() -> None:
    rules.check_parts_make_up(record(), {1: 2, 2: 1})
    rules.check_parts_make_up(record(), {1: 3})
