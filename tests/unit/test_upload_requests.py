"""The Upload API's request parsing and its signed part URLs."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from common.protocol.errors import CinError, Code
from common.protocol.upload_api import CompleteRequest, PartRequest, StartRequest, parse_body
from edge.multipart.part_urls import new_target, verify_target

SECRET = "internal-secret-for-tests"
MD5 = base64.b64encode(hashlib.md5(b"chunk").digest()).decode()


def start_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"apikey": "KEY0123456", "filename": "a.bin", "size": 10,
                              "mimetype": "application/x-demo",
                              "store": {"location": "s3", "path": "in/", "access": "public"},
                              "extra": "ignored"}
    fields.update(changes)
    return fields


def test_start_request_as_the_sdks_send_it() -> None:
    start = StartRequest.parse(start_fields(fii=True))
    assert (start.apikey, start.filename, start.size, start.fii) == ("KEY0123456", "a.bin",
                                                                     10, True)
    assert (start.store.location, start.store.path, start.store.access) == ("s3", "in/",
                                                                            "public")
    assert StartRequest.parse(start_fields(size="10")).size == 10


@pytest.mark.parametrize(("changes", "named"), [
    ({"apikey": None}, "apikey"),
    ({"size": 0}, "size"),
    ({"size": True}, "size"),
    ({"size": 2.5}, "size"),
    ({"filename": ["x"]}, "filename"),
    ({"store": "s3"}, "store"),
    ({"fii": "maybe"}, "fii"),
    # isdigit() is true for these, and int() refuses the first and takes the rest.
    ({"size": "\u00b2"}, "size"),
    ({"size": "\u0663"}, "size"),
    ({"size": "9" * 5000}, "size"),
    ({"size": float("nan")}, "size"),
    ({"size": 10**400}, "size"),
    ({"filename": "\ud800.txt"}, "filename"),
    ({"apikey": "KEY\udcff"}, "apikey"),
    ({"mimetype": "text/\ud800"}, "mimetype"),
    ({"store": {"path": "in/\ud800/"}}, "path"),
    ({"store": {"container": "\udfff"}}, "container"),
])
def test_start_request_names_the_bad_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(CinError) as caught:
        StartRequest.parse(start_fields(**changes))
    assert caught.value.code is Code.BAD_PARAMETER
    assert named in str(caught.value)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe{}",
    b"[]",
    b'"text"',
    b'{"size": ' + b"9" * 5000 + b"}",
])
def test_a_body_that_is_not_a_json_object_is_bad_parameter(body: bytes) -> None:
    with pytest.raises(CinError) as caught:
        parse_body(body)
    assert caught.value.code is Code.BAD_PARAMETER


def test_an_empty_body_is_an_empty_object() -> None:
    assert parse_body(b"") == {} and parse_body(b' {"a": 1} ') == {"a": 1}


def test_part_request_regular_and_fii() -> None:
    ids = {"apikey": "KEY0123456", "upload_id": "u" * 32}
    regular = PartRequest.parse({**ids, "part": 2, "size": 5, "md5": MD5})
    assert (regular.part, regular.offset, regular.fii, regular.md5) == (2, 0, False, MD5)
    chunk = PartRequest.parse({**ids, "part": 1, "size": 32768, "offset": 65536, "fii": True})
    assert (chunk.offset, chunk.fii, chunk.md5) == (65536, True, None)
    for bad in ({"part": 0}, {"part": 10_001}, {"md5": "not-base64!"},
                {"md5": base64.b64encode(b"short").decode()}, {"offset": -1}):
        with pytest.raises(CinError):
            PartRequest.parse({**ids, "part": 1, "size": 5, **bad})


def test_complete_request_lists_parts_and_tags() -> None:
    complete = CompleteRequest.parse({
        "apikey": "KEY0123456", "upload_id": "u" * 32, "fii": True,
        "parts": [{"part_number": 1, "etag": '"abc"'}, {"part_number": 3, "etag": "def"}],
        "upload_tags": {"user": "42"}})
    assert complete.parts == {1: "abc", 3: "def"}
    assert complete.tags == {"user": "42"} and complete.fii
    with pytest.raises(CinError) as caught:
        CompleteRequest.parse({"apikey": "KEY0123456", "upload_id": "u" * 32,
                               "upload_tags": {str(n): "v" for n in range(11)}})
    assert caught.value.code is Code.BAD_TAGS


@pytest.mark.parametrize("parts", ["[" * 100_000, "5", "{}", "not json", '"[]"'])
def test_complete_parts_given_as_a_string_must_be_a_json_list(parts: str) -> None:
    with pytest.raises(CinError) as caught:
        CompleteRequest.parse({"apikey": "KEY0123456", "upload_id": "u" * 32, "parts": parts})
    assert caught.value.code is Code.BAD_PARAMETER
    listed = CompleteRequest.parse({"apikey": "KEY0123456", "upload_id": "u" * 32,
                                    "parts": '[{"part_number": 2, "etag": "e"}]'})
    assert listed.parts == {2: "e"}


def test_a_part_url_verifies_only_as_given() -> None:
    target = new_target("u" * 32, part=3, offset=65536, size=4096, md5=MD5, now=1000.0)
    url = target.url("https://pop.test:8443", SECRET)
    assert url.startswith("https://pop.test:8443/multipart/part?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert verify_target(query, SECRET, now=1001.0) == target

    for name, value in (("part", "4"), ("offset", "0"), ("size", "4097"),
                        ("upload_id", "v" * 32), ("md5", ""), ("expires", "999999")):
        with pytest.raises(CinError) as caught:
            verify_target({**query, name: value}, SECRET, now=1001.0)
        assert caught.value.code is Code.BAD_SIGNATURE, name
    with pytest.raises(CinError) as caught:
        verify_target(query, "another-secret-entirely", now=1001.0)
    assert caught.value.code is Code.BAD_SIGNATURE
    with pytest.raises(CinError) as caught:
        verify_target(query, SECRET, now=target.expires)
    assert caught.value.code is Code.POLICY_EXPIRED
    with pytest.raises(CinError) as caught:
        verify_target({"part": "x"}, SECRET)
    assert caught.value.code is Code.BAD_SIGNATURE


@pytest.mark.parametrize(("name", "value"), [
    ("upload_id", "\ud800"), ("md5", "\udcff"), ("part", "\u0663"), ("part", " 3"),
    ("offset", "1_0"), ("size", "9" * 5000), ("size", "05"), ("expires", "\u00b2"),
    ("sig", "é"),
])
def test_a_part_url_with_text_cin_never_writes_is_refused(name: str, value: str) -> None:
    query = dict(parse_qsl(urlsplit(new_target("u" * 32, part=3, offset=0, size=5, md5=MD5,
                                               now=1000.0).url("https://p", SECRET)).query))
    with pytest.raises(CinError) as caught:
        verify_target({**query, name: value}, SECRET, now=1001.0)
    assert caught.value.code is Code.BAD_SIGNATURE


def test_a_whole_part_url_cannot_be_turned_into_a_chunk_url_or_back() -> None:
    whole = new_target("u" * 32, part=1, offset=0, size=4096, md5=MD5, now=1000.0, whole=True)
    query = dict(parse_qsl(urlsplit(whole.url("https://pop.test", SECRET)).query))
    assert query["whole"] == "1"
    assert verify_target(query, SECRET, now=1001.0).whole
    without = {name: value for name, value in query.items() if name != "whole"}
    with pytest.raises(CinError) as caught:
        verify_target(without, SECRET, now=1001.0)
    assert caught.value.code is Code.BAD_SIGNATURE

    chunk = new_target("u" * 32, part=1, offset=0, size=4096, md5=MD5, now=1000.0)
    query = dict(parse_qsl(urlsplit(chunk.url("https://pop.test", SECRET)).query))
    assert "whole" not in query and not verify_target(query, SECRET, now=1001.0).whole
    with pytest.raises(CinError) as caught:
        verify_target({**query, "whole": "1"}, SECRET, now=1001.0)
    assert caught.value.code is Code.BAD_SIGNATURE
