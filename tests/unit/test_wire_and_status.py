import msgpack
import pytest

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus, check_transition
from common.protocol.records import FileRecord

RECORD = FileRecord(handle="a" * 20, apikey="KEY", storage="bucket", provider="s3",
                    container="c", key="k", filename="f.txt", mimetype="text/plain", size=3,
                    status=FileStatus.IN_TRANSIT, pop="us-east-1", uploaded=1.5,
                    tags={"user": "42"}, hashes={"md5": "x"})


def test_messages_round_trip() -> None:
    assert wire.decode(wire.encode(wire.FileReply(RECORD))) == wire.FileReply(RECORD)
    lease = wire.LeaseHandles(pop="p", count=3)
    assert wire.decode(wire.encode(lease)) == lease
    error = wire.ErrorReply.of(CinError(Code.FILE_NOT_FOUND, "h"))
    decoded = wire.decode(wire.encode(error))
    assert isinstance(decoded, wire.ErrorReply)
    assert decoded.to_error().code is Code.FILE_NOT_FOUND


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = msgpack.packb({"t": "lookup_file", "v": 1, "handle": "h", "new_field": 1})
    assert wire.decode(body) == wire.LookupFile(handle="h")


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"t": "lookup_file", "v": 99, "handle": "h"}),
        msgpack.packb({"t": "no_such", "v": 1}),
        msgpack.packb({"t": "lookup_file", "v": 1}),
        msgpack.packb({"t": ["lookup_file"], "v": 1, "handle": "h"}),
        msgpack.packb({"t": {"a": 1}, "v": 1}),
    ],
)
def test_malformed_messages_are_bad_message(body: bytes) -> None:
    with pytest.raises(CinError) as caught:
        wire.decode(body)
    assert caught.value.code is Code.BAD_MESSAGE


def test_signatures() -> None:
    body = b"payload"
    header = wire.sign("s" * 16, body, now=1000)
    wire.verify("s" * 16, body, header, now=1010)
    for secret, data, when in [("t" * 16, body, 1010), ("s" * 16, b"other", 1010),
                               ("s" * 16, body, 2000)]:
        with pytest.raises(CinError) as caught:
            wire.verify(secret, data, header, now=when)
        assert caught.value.code is Code.BAD_INTERNAL_SIGNATURE
    with pytest.raises(CinError):
        wire.verify("s" * 16, body, None)


@pytest.mark.parametrize("given", ["é", "\udcff", "0" * 63 + "é"])
def test_a_signature_that_is_not_ascii_is_refused(given: str) -> None:
    with pytest.raises(CinError) as caught:
        wire.verify("s" * 16, b"payload", f"t=1000,v1={given}", now=1000)
    assert caught.value.code is Code.BAD_INTERNAL_SIGNATURE


def test_status_transitions() -> None:
    check_transition(FileStatus.STARTED, FileStatus.IN_TRANSIT)
    check_transition(FileStatus.IN_TRANSIT, FileStatus.COMPLETE)
    check_transition(FileStatus.STARTED, FileStatus.STARTED)
    for current, wanted in [(FileStatus.FAILED, FileStatus.COMPLETE),
                            (FileStatus.COMPLETE, FileStatus.STARTED),
                            (FileStatus.IN_TRANSIT, FileStatus.STARTED)]:
        with pytest.raises(CinError) as caught:
            check_transition(current, wanted)
        assert caught.value.code is Code.CONFLICT
