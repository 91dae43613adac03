"""Every parser of client input, fed hostile input: it gives a value or a CinError, nothing else.

A parser that raises anything but CinError is a 500 (and a traceback in the log) for
whoever sent the input. The strategies aim at the corners that broke parsers before: JSON
nested deeper than the interpreter's stack, lone surrogates (JSON spells "\\ud800";
aiohttp keeps an undecodable header byte as one), digits that `isdigit()` accepts and
`int()` refuses ("²") or takes though they are not ASCII ("٣"), numbers of thousands of
digits, NaN and infinities, wrong types everywhere. Where a parser accepts, the tests also
check that what it returns can go on: encoded to UTF-8, packed into a wire message, put
in a JSON reply.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import APIKEY, SECURE_APIKEY, SECURE_SECRET, config_data, to_config
from yarl import URL

from common.protocol import tus, wire
from common.protocol.errors import CinError
from common.protocol.flags import query_flag
from common.protocol.limits import (
    MAX_KEY_BYTES,
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
)
from common.protocol.naming import (
    MAX_FILENAME_CHARS,
    clean_filename,
    is_handle,
    is_unicode,
    object_key,
    valid_text,
    validate_path,
)
from common.protocol.process_tasks import STORE_OPTIONS, ProcessStore
from common.protocol.ranges import parse_range
from common.protocol.security import (
    Action,
    Credentials,
    Policy,
    authorize,
    basic_auth_secret,
    credentials_from,
    encode_policy,
    parse_security_segment,
    sign_policy,
)
from common.protocol.sniff import choose_mimetype
from common.protocol.store_admission import admit_store
from common.protocol.store_params import StoreParams
from common.protocol.tags import tags_from_json_text, validate_tags
from common.protocol.upload_api import (
    CommitRequest,
    CompleteRequest,
    PartRequest,
    StartRequest,
    UploadIds,
    parse_body,
)
from common.protocol.upload_start import start_message
from common.web.file_metadata import requested_fields
from common.web.request_auth import credentials_in
from edge.multipart.part_urls import new_target, verify_target
from edge.rest.base64stream import Base64Decoder
from edge.rest.url_fetch import parse_source_url, source_content_type, source_filename

T = TypeVar("T")

HOSTILE = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])

# Parsed, not served: the config's paths are never touched.
CONFIG = to_config(config_data(Path("/nonexistent/cin")), Path("/nonexistent/cin"))
LOCATION = CONFIG.storage["bucket"]
SECRET = "internal-secret-for-tests"

# ------------------------------------------------------------------------- strategies


def one_in(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `choices`, each as likely: a one_of leans on its simplest branches. The
    first is the one drawn most when Hypothesis draws simply."""
    return st.integers(0, len(choices) - 1).flatmap(lambda roll: choices[roll])


DANGEROUS_TEXT = [
    "", " ", "\x00", "\n", "\r\n", "\x7f", "é", "\u00b2", "\u0663", "\U0001d7d9", "\u216b",
    "9" * 5000, "1_000", "+1", "-1", " 1 ", "0x1f", "1e3", "NaN", "Infinity", "true", "null",
    "\ud800", "\udfff", "\udcff", "a\udc80b", "\ud83d\ude00", "..", ".", "/", "//", "\\",
    "%00", "%2e%2e", "{", "[", '"', ",", ":", "=", ";", "*", "bytes=", "\ufeff", "\u202e",
]
# Text a client may well send: any character but a lone surrogate.
likely_texts = one_in(st.text(max_size=40),
                      st.sampled_from([t for t in DANGEROUS_TEXT if is_unicode(t)]))
texts = one_in(
    # Every code point, lone surrogates included (Hypothesis leaves them out by default).
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(DANGEROUS_TEXT),
    st.lists(st.sampled_from([*DANGEROUS_TEXT, "a", "Z", "0", "9"]), max_size=8).map("".join),
    # Likely text with one lone surrogate in it: a JSON "\ud800" or an undecodable byte.
    st.builds("{}{}{}".format, likely_texts,
              st.sampled_from(["\ud800", "\udbff", "\udc80", "\udcff", "\udfff"]), likely_texts),
)
big_ints = one_in(st.integers(),
                  st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30, 10**400, -(10**400)]))
scalars = st.one_of(st.none(), st.booleans(), big_ints,
                    st.floats(allow_nan=True, allow_infinity=True), texts)


def nested(depth: int, leaf: Any = 1) -> Any:
    """A list `depth` deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
) | st.integers(1, 900).map(nested)  # json.dumps, below, stops near 1,000


def to_json_bytes(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as a hostile client sends them.
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


json_texts = one_in(
    json_values.map(to_json_bytes),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.binary(max_size=200),
)

_MISSING = object()


def fields(names: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of likely values, each hostile or missing one time in 16, so that a
    bad value gets past the first checks and reaches the later ones; one time in 8 an
    object of anything."""
    def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return one_in(*[valid] * 14, st.just(_MISSING), json_values)

    likely = st.fixed_dictionaries({name: mostly(valid) for name, valid in names.items()},
                                   optional={"stray": json_values})
    present = likely.map(lambda body: {k: v for k, v in body.items() if v is not _MISSING})
    return one_in(*[present] * 7, st.dictionaries(texts, json_values, max_size=4))


def signed_pair(policy: dict[str, Any]) -> dict[str, str]:
    text = encode_policy(policy)
    return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}


# Numbers sent as text: digits isdigit() accepts that int() refuses ("²") or takes though
# they are not ASCII ("٣"), and what int() alone would take (" 3", "1_0").
number_traps = st.one_of(
    st.sampled_from(["\u00b2", "\u0663", "\U0001d7d9", "9" * 5000, " 3", "1_0", "+1", "0x1"]),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),
)
counts = one_in(st.integers(1, 2**40), st.integers(1, 10**12).map(str), number_traps)
small_counts = one_in(st.integers(1, 10_000), st.integers(1, 10_000).map(str), number_traps)
upload_ids = st.text(string.ascii_letters + string.digits, min_size=1, max_size=64)
# A text field's value: likely three times in four, else hostile text.
text_values = one_in(likely_texts, likely_texts, likely_texts, texts)
md5s = st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode())
store_objects = fields({
    "location": st.sampled_from(["s3", "S3"]), "path": text_values,
    "container": st.sampled_from(["cin-test", "cin-test-other", None]),
    "region": st.sampled_from(["us-east-1", None]), "access": st.sampled_from(["public", None]),
})
part_items = fields({"part_number": small_counts, "etag": text_values})
part_lists = one_in(
    st.lists(part_items, max_size=5),
    st.lists(part_items, max_size=5).map(lambda items: to_json_bytes(items).decode()),
    st.integers(1, 100_000).map(lambda n: "[" * n),
)
policy_fields = fields({
    "expiry": st.sampled_from([4_000_000_000, 4_000_000_000.5, 1]),
    "call": st.lists(st.sampled_from(["store", "pick", "read", "stat", "write", "writeUrl",
                                      "exif"]), min_size=1),
    "handle": st.none() | upload_ids,
    "url": st.none() | st.sampled_from(["(a+)+$", ".*", "(?=x)", "(", "\ud800", "a{1001}",
                                        "[[:alpha:]]", "https?://.*"]),
    "path": st.none() | st.sampled_from([".*", "in/.*", "(a+)+$", "\\w*\\d+"]),
    "container": st.none() | st.sampled_from(["cin-test.*", "\\d+", "(?i)CIN.*"]),
    "maxSize": st.none() | st.integers(0, 2**40), "minSize": st.none() | st.integers(0, 99),
})
credentials: st.SearchStrategy[dict[str, Any]] = one_in(
    st.just({}),
    policy_fields.map(signed_pair),
    st.fixed_dictionaries({"policy": texts, "signature": texts}),
    st.fixed_dictionaries({"policy": texts,  # past the signature's syntax, to its HMAC
                           "signature": st.text("0123456789abcdef", min_size=64, max_size=64)}),
)
authorization_headers = one_in(st.none(), texts, st.builds(
    "{} {}".format, st.sampled_from(["Basic", "basic", "Bearer", ""]),
    texts | st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode())))
upload_fields = st.builds(
    lambda body, creds: {**body, **creds},
    fields({
        "apikey": st.sampled_from([APIKEY, SECURE_APIKEY]), "filename": text_values,
        "size": counts, "mimetype": st.sampled_from(["image/png", "text/plain", None]),
        "store": store_objects, "fii": st.booleans(),
        "upload_id": one_in(upload_ids, upload_ids, upload_ids, texts),
        "part": small_counts, "offset": st.integers(0, 2**20), "md5": st.none() | md5s,
        "parts": part_lists, "upload_tags": st.none() | st.dictionaries(
            text_values, text_values, max_size=3),
    }),
    credentials,
)
queries = st.dictionaries(
    st.sampled_from(["filename", "mimetype", "path", "region", "storeRegion", "access",
                     "container", "upload_tags", "base64decode", "policy", "signature",
                     "key", "exif", "md5", "size", "dl"]) | texts,
    texts, max_size=6)


# --------------------------------------------------------------------------- helpers


def value_or_cin_error(parse: Callable[..., T], *args: Any) -> T | None:
    """What `parse` returns, or None when it refuses with a client error (4xx) whose JSON
    reply can be written."""
    try:
        return parse(*args)
    except CinError as error:
        assert 400 <= error.status < 500, error
        json.dumps(error.to_json())  # what the error middleware sends
        return None


def encodable(text: str | None) -> bool:
    return text is None or is_unicode(text)


# ------------------------------------------------------------------ Upload API bodies


@HOSTILE
@given(json_texts)
def test_any_body_is_a_json_object_or_a_4xx(body: bytes) -> None:
    parsed = value_or_cin_error(parse_body, body)
    assert parsed is None or isinstance(parsed, dict)


@HOSTILE
@given(upload_fields)
def test_upload_api_requests(body: dict[str, Any]) -> None:
    start = value_or_cin_error(StartRequest.parse, body)
    if start is not None:
        assert all(encodable(text) for text in (start.apikey, start.filename, start.mimetype,
                                                start.store.path, start.store.container))
        assert type(start.size) is int and start.size >= 1
    ids = value_or_cin_error(UploadIds.parse, body)
    if ids is not None:
        assert encodable(ids.apikey) and encodable(ids.upload_id)
    part = value_or_cin_error(PartRequest.parse, body)
    if part is not None:
        assert type(part.part) is int and type(part.offset) is int and part.offset >= 0
    value_or_cin_error(CommitRequest.parse, body)
    complete = value_or_cin_error(CompleteRequest.parse, body)
    if complete is not None:
        # What complete accepted travels to the coordinator.
        wire.encode(wire.CompleteUpload(upload_id=complete.ids.upload_id,
                                        parts=[[n, 1] for n in complete.parts],
                                        tags=complete.tags, pop="p"))


@HOSTILE
@given(upload_fields, queries, authorization_headers)
def test_a_start_is_checked_whole_and_what_passes_can_be_sent(
        body: dict[str, Any], query: dict[str, str], authorization: str | None) -> None:
    creds = value_or_cin_error(credentials_in, query, authorization, None, body)
    if creds is None:
        return
    message = value_or_cin_error(start_message, CONFIG, body, creds, "us-east-1", "o:1")
    if message is not None:
        wire.encode(message)


# ---------------------------------------------------------------------- store params


@HOSTILE
@given(queries)
def test_store_params(query: dict[str, str]) -> None:
    params = value_or_cin_error(StoreParams.from_query, query, LOCATION)
    if params is not None:
        assert encodable(params.path) and encodable(params.filename)
        assert params.path is None or len(params.path.encode()) <= MAX_KEY_BYTES
        json.dumps(params.tags)
    value_or_cin_error(requested_fields, query)
    for name in ("dl", "exif", "base64decode"):
        value_or_cin_error(query_flag, query, name)


# --------------------------------------------------------- the Processing API (/process)


store_task_params = fields({
    "location": st.sampled_from(["s3", "S3", "dropbox"]), "path": text_values,
    "filename": text_values, "mimetype": st.sampled_from(["image/png", "png", None]),
    "container": st.sampled_from(["cin-test", "cin-test-other", "elsewhere", None]),
    "region": st.sampled_from(["us-east-1", None]),
    "access": st.sampled_from(["public", "private", "world", None]),
    "base64decode": st.booleans(), "workflows": json_values,
})
store_tasks = one_in(store_task_params.map(lambda params: {"name": "store", "params": params}),
                     st.just({"name": "store"}))
security_tasks = credentials.map(lambda creds: {"name": "security", "params": creds})
# Mostly a store task and maybe a security task, in either order, so that the checks past
# the task list are reached; else any list of tasks, or anything.
process_tasks = one_in(
    *[st.tuples(store_tasks, st.none() | security_tasks, st.booleans()).map(
        lambda t: [task for task in ((t[0], t[1]) if t[2] else (t[1], t[0])) if task])] * 5,
    st.lists(one_in(store_tasks, security_tasks, fields({
        "name": st.sampled_from(["store", "security", "resize"]) | texts,
        "params": json_values})), max_size=4),
    json_values,
)
source_urls = one_in(st.just("http://127.0.0.1:9/a.png"), text_values)
process_sources = one_in(
    *[st.lists(source_urls, min_size=1, max_size=1)] * 4,
    st.lists(one_in(source_urls, fields({"source": source_urls, "headers": json_values}),
                    json_values), max_size=2),
    json_values,
)
process_bodies = fields({
    "apikey": st.sampled_from([APIKEY, SECURE_APIKEY]), "sources": process_sources,
    "tasks": process_tasks,
    "upload_tags": st.none() | st.dictionaries(text_values, text_values, max_size=3),
})


@HOSTILE
@given(process_bodies, queries)
def test_a_process_body_is_a_store_or_a_4xx_and_what_passes_goes_on(
        body: dict[str, Any], query: dict[str, str]) -> None:
    """Every step the POP takes before it fetches anything, on what the parse let by."""
    task = value_or_cin_error(ProcessStore.parse, body)
    if task is None:
        return
    assert all(encodable(text) for text in (task.apikey, task.source_url, task.location,
                                            *task.options.values()))
    json.dumps(task.tags)
    value_or_cin_error(parse_source_url, task.source_url)
    creds = value_or_cin_error(credentials_in, query, None, None, task.security)
    if creds is None:
        return
    admitted = value_or_cin_error(lambda: admit_store(
        CONFIG, apikey=task.apikey, provider=task.location, options=task.options,
        creds=creds))
    if admitted is not None:
        assert encodable(admitted.params.path) and encodable(admitted.params.filename)


@HOSTILE
@given(st.dictionaries(st.sampled_from([*STORE_OPTIONS, "location", "workflows"]),
                       likely_texts | st.booleans(), max_size=6), likely_texts)
def test_both_sdks_bodies_carry_the_same_store(params: dict[str, Any], url: str) -> None:
    """filestack-python always sends `params`, filestack-js leaves out empty ones; both
    come out as the same store, its options as a REST store's query spells them."""
    python = {"apikey": APIKEY, "sources": [url], "tasks": [{"name": "store",
                                                             "params": params}]}
    js = {"apikey": APIKEY, "sources": [{"source": url}],
          "tasks": [{"name": "store", **({"params": params} if params else {})}]}
    parsed = value_or_cin_error(ProcessStore.parse, python)
    assert parsed == value_or_cin_error(ProcessStore.parse, js)
    if parsed is None:
        return
    expected = {name: ("true" if value else "false") if isinstance(value, bool) else value
                for name, value in params.items()
                if name in STORE_OPTIONS and value not in ("", None)}
    assert parsed.options == expected


# --------------------------------------------------------- policies and credentials


@HOSTILE
@given(texts | st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()))
def test_any_policy_text(text: str) -> None:
    value_or_cin_error(Policy.parse, text)


@HOSTILE
@given(policy_fields, texts, texts, st.sampled_from(["js", "python"]))
def test_any_signed_policy_against_any_action(policy: dict[str, Any], path: str, url: str,
                                              form: str) -> None:
    """Signed, so that every check past the signature is reached."""
    if form == "python":
        text = encode_policy(policy)
    else:
        text = base64.b64encode(to_json_bytes(policy)).decode()
    creds = credentials_from({"policy": text, "signature": sign_policy(SECURE_SECRET, text)},
                             None)
    app = CONFIG.apps[SECURE_APIKEY]
    for action in (Action.store(path=path, container=path, url=url), Action.read(path),
                   Action.overwrite(path, url=url), Action.exif(path)):
        value_or_cin_error(authorize, app, creds, action)


segments = one_in(texts, credentials.map(
    lambda c: f"p:{c.get('policy', '')},s:{c.get('signature', '')}"))


@HOSTILE
@given(segments, authorization_headers, st.none() | texts, one_in(queries, credentials),
       one_in(upload_fields, credentials))
def test_credentials_wherever_they_are(segment: str, authorization: str | None,
                                   basic: str | None, query: dict[str, str],
                                   body: dict[str, Any]) -> None:
    value_or_cin_error(parse_security_segment, segment)
    value_or_cin_error(basic_auth_secret, authorization)
    if basic is not None:
        header = "Basic " + base64.b64encode(basic.encode("utf-8", "surrogatepass")).decode()
        value_or_cin_error(basic_auth_secret, header)
    # One place at a time, so that each gets past the others' checks.
    for where in ({"query": query}, {"authorization": authorization}, {"segment": segment},
                  {"fields": body}):
        creds = value_or_cin_error(credentials_in, where.get("query", {}),
                                   where.get("authorization"), where.get("segment"),
                                   where.get("fields"))
        if creds is not None:
            for apikey in (APIKEY, SECURE_APIKEY):
                value_or_cin_error(authorize, CONFIG.apps[apikey], creds, Action.read("h"))


# ---------------------------------------------------------------------------- tags


@HOSTILE
@given(json_values | st.dictionaries(texts, texts, max_size=12))
def test_tags(value: Any) -> None:
    tags = value_or_cin_error(validate_tags, value)
    if tags is not None:
        assert all(is_unicode(k) and is_unicode(v) for k, v in tags.items())
    text = to_json_bytes(value).decode()
    value_or_cin_error(tags_from_json_text, text)


@HOSTILE
@given(texts | st.integers(1, 100_000).map(lambda n: "{" * n))
def test_tags_from_any_text(text: str) -> None:
    value_or_cin_error(tags_from_json_text, text)


# -------------------------------------------------------------------------- ranges


range_headers = one_in(
    texts,
    st.tuples(st.sampled_from(["bytes=", "BYTES =", "bytes=-", "items="]),
              st.sampled_from(["", "0", "1", "\u00b2", "\u0663", "9" * 19, "9" * 5000]),
              st.sampled_from(["-", "--", ",", "-\u00b2"]),
              st.sampled_from(["", "0", "5", "\u0663", "9" * 20])).map("".join),
)


@HOSTILE
@given(st.none() | range_headers, st.integers(0, 2**63))
def test_ranges(header: str | None, size: int) -> None:
    byte_range = value_or_cin_error(parse_range, header, size)
    if byte_range is not None:
        assert 0 <= byte_range.first <= byte_range.last < size


# ------------------------------------------------------------- filenames and paths


@HOSTILE
@given(st.none() | texts)
def test_filenames_and_paths(text: str | None) -> None:
    name = clean_filename(text)
    assert is_unicode(name) and 0 < len(name) <= MAX_FILENAME_CHARS
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in name)
    assert is_unicode(valid_text(text or ""))
    if text is None:
        return
    path = value_or_cin_error(validate_path, text)
    if path is not None:
        assert is_unicode(path) and ".." not in path.split("/")
    key = value_or_cin_error(object_key, text, name)
    if key is not None:
        assert len(key.encode()) <= MAX_KEY_BYTES
    assert is_handle(text) == (len(text) == 20 and all(
        c in string.ascii_letters + string.digits for c in text))


# ---------------------------------------------------------------------- part URLs


part_url_queries = one_in(st.fixed_dictionaries(
    {name: texts | counts.map(str) for name in ("upload_id", "part", "offset", "size",
                                                 "expires", "sig")},
    optional={"md5": texts, "whole": st.sampled_from(["1", "0", "\u0661"]) | texts},
), queries)


@HOSTILE
@given(part_url_queries)
def test_any_part_url_query(query: dict[str, str]) -> None:
    value_or_cin_error(verify_target, query, SECRET)


@HOSTILE
@given(likely_texts, st.integers(1, 10_000), st.integers(0, 2**40), st.integers(1, 2**40),
       st.booleans(), texts)
def test_a_part_url_verifies_as_given_and_not_otherwise(
        upload_id: str, part: int, offset: int, size: int, whole: bool, other: str) -> None:
    target = new_target(upload_id, part, offset, size, None, now=1000.0, whole=whole)
    url = target.url("https://pop.test", SECRET)
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert verify_target(query, SECRET, now=1001.0) == target
    for name in ("upload_id", "part", "offset", "size", "expires", "sig"):
        if query[name] != other:
            assert value_or_cin_error(verify_target, {**query, name: other}, SECRET,
                                      1001.0) is None


# ------------------------------------------------------------------ base64 streams


@HOSTILE
@given(st.lists(one_in(st.binary(max_size=50),
                       st.text("AZaz09+/-_= \n", max_size=50).map(str.encode)), max_size=6))
def test_any_base64_stream(chunks: list[bytes]) -> None:
    decoder = Base64Decoder()

    def decode_all() -> bytes:
        return b"".join(decoder.feed(chunk) for chunk in chunks) + decoder.finish()

    value_or_cin_error(decode_all)


@HOSTILE
@given(st.binary(max_size=300), st.booleans(), st.booleans(), st.lists(st.integers(0, 400)))
def test_base64_in_any_split_decodes_to_what_was_encoded(data: bytes, urlsafe: bool,
                                                         padded: bool, cuts: list[int]) -> None:
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data)
    if not padded:
        text = text.rstrip(b"=")
    text = b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    decoder = Base64Decoder()
    pieces, start = [], 0
    for cut in sorted(c for c in cuts if c <= len(text)):
        pieces.append(decoder.feed(text[start:cut]))
        start = cut
    pieces.append(decoder.feed(text[start:]))
    assert b"".join(pieces) + decoder.finish() == data


# ------------------------------------------------------------------------- the wire


msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)
message_bodies = st.builds(
    lambda tag, fields_, version: {**fields_, "t": tag, "v": version},
    one_in(st.sampled_from(sorted(cls.TYPE for cls in wire.Message.__subclasses__())),
           msgpack_values),
    st.dictionaries(st.sampled_from(["handle", "upload_id", "record", "upload", "parts", "size",
                                     "pop", "tags", "query", "code", "fields", "part"]),
                    msgpack_values, max_size=6),
    st.sampled_from([1, 1, 1, 2, "1", None]),
).map(lambda body: msgpack.packb(body, use_bin_type=True))


@HOSTILE
@given(one_in(st.binary(max_size=300), message_bodies))
def test_any_bytes_decode_to_a_message_or_bad_message(data: bytes) -> None:
    decoded = value_or_cin_error(wire.decode, data)
    assert decoded is None or isinstance(decoded, wire.Message)


@HOSTILE
@given(one_in(st.none(), texts,
              st.builds("t={},v1={}".format,
                        one_in(st.integers(700, 1300).map(str), texts, big_ints.map(str)),
                        texts)),
       st.binary(max_size=50))
def test_any_signature_header(header: str | None, body: bytes) -> None:
    value_or_cin_error(wire.verify, SECRET, body, header, 1000.0)
    wire.verify(SECRET, body, wire.sign(SECRET, body, now=1000.0), now=1000.0)


# ------------------------------------------------------ what a fetched source says




hosts = one_in(
    texts,
    st.sampled_from(["a" * 64, "a." * 127 + "com", "xn--", "127.1", "[::1", "[::1]", "0x7f.1",
                     "é.com", "a..b", "-a.com", "1.2.3.4:99999", "[fe80::1%25x]"]),
    st.lists(st.text(string.ascii_lowercase + string.digits + "-_", min_size=0, max_size=70),
             min_size=1, max_size=5).map(".".join),
)
source_urls = one_in(texts, st.builds(
    "{}://{}{}".format, st.sampled_from(["http", "https", "ftp"]), hosts,
    st.sampled_from(["", "/", "/a?b#c", ":80/", ":0/"])))


@HOSTILE
@given(source_urls, st.none() | texts, st.none() | texts)
def test_source_urls_and_headers(url: str, disposition: str | None, content_type: str | None
                                 ) -> None:
    source = value_or_cin_error(parse_source_url, url)
    if source is not None and source.literal is None:
        source.host.encode("idna")  # what the resolver does with it
    base = source.url if source is not None else URL("http://example.com/a/b.txt")
    name = source_filename(disposition, base)
    assert name is None or "/" not in name
    source_content_type(content_type)
    choose_mimetype(content_type, b"", name)


# ------------------------------------------------------------------------- tus headers

metadata_keys = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                      exclude_characters=","), min_size=1, max_size=12)
metadata_values = st.none() | st.text(max_size=40).filter(is_unicode)
tus_headers = one_in(
    texts,
    st.lists(st.tuples(one_in(texts, metadata_keys),
                       one_in(texts, st.sampled_from(["", "=", "YQ==", "YQ", "!!!", "w6k="]))),
             max_size=5).map(lambda pairs: ",".join(f"{k} {v}" for k, v in pairs)),
)


@HOSTILE
@given(st.none() | tus_headers)
def test_any_upload_metadata(header: str | None) -> None:
    pairs = value_or_cin_error(tus.parse_metadata, header)
    if pairs is not None:
        assert tus.parse_metadata(tus.encode_metadata(pairs)) == pairs
        fields = value_or_cin_error(lambda: tus.start_fields(pairs, apikey=APIKEY, size=10))
        if fields is not None:
            value_or_cin_error(start_message, CONFIG, fields, Credentials(), "us-east-1",
                               "us-east-1:origin")
        value_or_cin_error(tus.upload_tags, pairs)


@HOSTILE
@given(st.dictionaries(metadata_keys, metadata_values, max_size=6))
def test_upload_metadata_comes_back_as_it_was_sent(pairs: dict[str, str | None]) -> None:
    assert tus.parse_metadata(tus.encode_metadata(pairs)) == pairs


@HOSTILE
@given(st.none() | texts, st.none() | texts, texts, st.none() | texts)
def test_any_tus_size_checksum_and_concat(defer: str | None, checksum: str | None,
                                          size: str, concat: str | None) -> None:
    value_or_cin_error(tus.parse_defer_length, defer)
    parsed = value_or_cin_error(tus.parse_size, size, "Upload-Length")
    if parsed is not None:
        assert (parsed >= 0 and str(parsed) == size.lstrip("0")) or parsed == 0
    found = value_or_cin_error(tus.parse_checksum, checksum)
    if found is not None:
        assert found.algorithm in tus.CHECKSUM_ALGORITHMS
    value_or_cin_error(tus.check_version, defer)
    chained = value_or_cin_error(tus.parse_concat, concat)
    if chained is not None:
        assert all(tus.valid_id(tus_id) for tus_id in chained.partials)


@HOSTILE
@given(st.none() | st.integers(0, MAX_OBJECT_SIZE))
def test_tus_part_size_fits_the_bucket(length: int | None) -> None:
    size = tus.part_size(length)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert -(-(length if length is not None else MAX_OBJECT_SIZE) // size) <= MAX_PARTS
