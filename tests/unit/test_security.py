import base64
import json
import time
from typing import Any

import pytest
from filestack import Security

from common.config import AppConfig, SecurityMode
from common.protocol.errors import CinError, Code
from common.protocol.policy_patterns import PolicyPattern
from common.protocol.security import (
    CALLS,
    MAX_POLICY_TEXT,
    Action,
    Credentials,
    Grant,
    Policy,
    authorize,
    basic_auth_secret,
    credentials_from,
    encode_policy,
    parse_security_segment,
    sign_policy,
)

SECRET = "SECURITY-SECRET"
NOW = 1_562_763_000.0  # before the test vectors' expiry
EXPIRY = 1_562_763_146
PY_POLICY = "eyJjYWxsIjogWyJyZWFkIl0sICJleHBpcnkiOiAxNTYyNzYzMTQ2fQ=="
PY_SIGNATURE = "89f1325dca54cfce976163fb692bb266f28129525b8c6bb0eeadf4b7d450e2f0"
JS_POLICY = "eyJleHBpcnkiOjE1NjI3NjMxNDYsImNhbGwiOlsicmVhZCJdfQ=="
JS_SIGNATURE = "f8c6e8b38b8ce6a47b179f39c71e550468f28bfebbfe1c7eda93d9ecd755e72e"


def app(security: SecurityMode = "required") -> AppConfig:
    return AppConfig(apikey="APIKEY0123456789", secret=SECRET, security=security,
                     storage=("bucket",), max_upload_size=1000)


def signed(fields: dict[str, Any], *, standard: bool = False, pad: bool = True) -> Credentials:
    """A policy signed with SECRET, in the python form or the standard (js) alphabet."""
    text = json.dumps(fields, separators=(",", ":"))
    policy = base64.b64encode(text.encode()).decode() if standard else encode_policy(fields)
    if not pad:
        policy = policy.rstrip("=")
    return Credentials(policy=policy, signature=sign_policy(SECRET, policy))


def fails(code: Code, creds: Credentials, action: Action, security: SecurityMode = "required",
          now: float = NOW) -> str:
    with pytest.raises(CinError) as caught:
        authorize(app(security), creds, action, now=now)
    assert caught.value.code is code
    return caught.value.detail or ""


READ = Action.read("HANDLE")
STORE = Action.store(path="uploads/a.txt", container="bucket")


# ---------------------------------------------------------------- test vectors and SDKs


@pytest.mark.parametrize(("policy", "signature"),
                         [(PY_POLICY, PY_SIGNATURE), (JS_POLICY, JS_SIGNATURE)])
def test_protocol_vectors_sign_and_verify(policy: str, signature: str) -> None:
    assert sign_policy(SECRET, policy) == signature
    grant = authorize(app(), Credentials(policy=policy, signature=signature), READ, now=NOW)
    assert grant.secured is True
    assert grant.policy == Policy(expiry=EXPIRY, calls=frozenset({"read"}))


def test_encode_policy_is_filestack_pythons_form() -> None:
    assert encode_policy({"expiry": EXPIRY, "call": ["read"]}) == PY_POLICY


def test_signature_is_accepted_in_upper_case() -> None:
    creds = Credentials(policy=PY_POLICY, signature=PY_SIGNATURE.upper())
    assert authorize(app(), creds, READ, now=NOW).secured


def test_filestack_python_security_is_accepted() -> None:
    fields = {"expiry": EXPIRY, "call": ["store", "read"], "path": "uploads/.*",
              "container": "buck.*", "maxSize": 500}
    sdk = Security(fields, SECRET)
    grant = authorize(app(), Credentials(policy=sdk.policy_b64, signature=sdk.signature),
                      STORE, now=NOW)
    assert grant.policy is not None
    assert grant.policy.calls == frozenset({"store", "read"})
    assert grant.max_size(1000) == 500
    segment = sdk.as_url_string().removeprefix("security=")
    assert parse_security_segment(segment) == Credentials(policy=sdk.policy_b64,
                                                          signature=sdk.signature)


@pytest.mark.parametrize("pad", [True, False])
def test_standard_alphabet_with_slash_and_plus(pad: bool) -> None:
    # This handle makes the js form carry both "/" and "+", and one "=" of padding.
    creds = signed({"expiry": EXPIRY, "handle": "????>"}, standard=True, pad=pad)
    assert creds.policy is not None
    assert "/" in creds.policy and "+" in creds.policy
    assert creds.policy.endswith("=") is pad
    grant = authorize(app(), creds, Action.read("????>"), now=NOW)
    assert grant.policy == Policy(expiry=EXPIRY, handle="????>")
    assert parse_security_segment(f"p:{creds.policy},s:{creds.signature}") == creds


def test_unpadded_python_form() -> None:
    creds = Credentials(policy=PY_POLICY.rstrip("="),
                        signature=sign_policy(SECRET, PY_POLICY.rstrip("=")))
    assert authorize(app(), creds, READ, now=NOW).policy == Policy(EXPIRY, frozenset({"read"}))


def test_signature_is_over_the_text_as_received() -> None:
    # The padded form's signature does not verify the unpadded text: nothing is re-encoded.
    fails(Code.BAD_SIGNATURE, Credentials(policy=PY_POLICY.rstrip("="), signature=PY_SIGNATURE),
          READ)


# ---------------------------------------------------------------- signature and expiry


def test_forged_signature() -> None:
    forged = sign_policy("another-secret", PY_POLICY)
    fails(Code.BAD_SIGNATURE, Credentials(policy=PY_POLICY, signature=forged), READ)
    fails(Code.BAD_SIGNATURE, Credentials(policy=PY_POLICY, signature="zz" * 32), READ)
    fails(Code.BAD_SIGNATURE, Credentials(policy=PY_POLICY, signature=PY_SIGNATURE[:-1]), READ)


def test_signature_is_checked_before_the_policy_is_parsed() -> None:
    junk = base64.b64encode(b"[not json").decode()
    fails(Code.BAD_SIGNATURE, Credentials(policy=junk, signature="0" * 64), READ)


def test_expired_policy_says_when() -> None:
    creds = Credentials(policy=PY_POLICY, signature=PY_SIGNATURE)
    detail = fails(Code.POLICY_EXPIRED, creds, READ, now=EXPIRY + 10)
    assert "2019-07-10T12:52:26Z" in detail
    fails(Code.POLICY_EXPIRED, creds, READ, now=EXPIRY)
    assert authorize(app(), creds, READ, now=EXPIRY - 1).secured


def test_float_expiry_is_rounded_down() -> None:
    creds = signed({"expiry": EXPIRY + 0.9})
    assert authorize(app(), creds, READ, now=EXPIRY - 0.5).policy == Policy(EXPIRY)
    fails(Code.POLICY_EXPIRED, creds, READ, now=EXPIRY + 0.5)


# ---------------------------------------------------------------- what a policy allows


@pytest.mark.parametrize(
    ("fields", "action", "check"),
    [
        ({"call": ["read"]}, STORE, "call:"),
        ({"call": "stat"}, READ, "call:"),
        ({"handle": "OTHER"}, READ, "handle:"),
        ({"handle": "HANDLE"}, STORE, "handle:"),
        ({"url": r"https://ok\.example/.*"}, Action.convert(url="https://evil.example/x"), "url:"),
        # fullmatch, not search: a prefix match is not enough
        ({"url": r"https://ok\.example"}, Action.convert(url="https://ok.example.evil/"),
         "url:"),
        ({"path": "uploads/.*"}, Action.store(path="other/a", container="bucket"), "path:"),
        ({"path": "uploads/.*"}, Action.store(path=None, container="bucket"), "path:"),
        ({"container": "bucket"}, Action.store(path="x", container="bucket-2"), "container:"),
    ],
)
def test_each_check_denies_and_names_itself(fields: dict[str, Any], action: Action,
                                            check: str) -> None:
    detail = fails(Code.POLICY_DENIES, signed({"expiry": EXPIRY, **fields}), action)
    assert detail.startswith(check)


@pytest.mark.parametrize(
    ("fields", "action"),
    [
        ({"call": ["read"]}, READ),
        ({"call": ["pick"]}, STORE),  # store is allowed by store or pick
        ({"call": ["store"]}, STORE),
        ({}, READ),  # no call key: everything but exif
        ({}, Action.remove("HANDLE")),
        ({"handle": "HANDLE"}, READ),
        ({"url": r"https://ok\.example/.*"}, Action.convert(url="https://ok.example/a")),
        ({"url": "https://ok.*"}, READ),  # an action with no URL is not held to the regex
        ({"path": ""}, Action.store(path=None, container="bucket")),
        ({"path": "uploads/.*", "container": "buck.*"}, STORE),
    ],
)
def test_allowed(fields: dict[str, Any], action: Action) -> None:
    assert authorize(app(), signed({"expiry": EXPIRY, **fields}), action, now=NOW).secured


@pytest.mark.parametrize(("pattern", "matches", "misses"), [
    (r"uploads/[a-z0-9_]+\.(png|jpe?g)", "uploads/cat_1.jpeg", "uploads/cat.gif"),
    (r"(?i)UPLOADS/.*", "uploads/x", "other/uploads/x"),
    (r"(?P<user>\d+)/.+", "42/a.txt", "x42/a.txt"),
    (r"^in/[^/]*$", "in/a", "in/a/b"),
    (r"a{2,3}|b+", "aaa", "aaaa"),
])
def test_ordinary_patterns_match_as_python_re_does(pattern: str, matches: str,
                                                   misses: str) -> None:
    policy = Policy.parse(encode_policy({"expiry": EXPIRY, "path": pattern}))
    assert policy.path is not None
    assert policy.path.fullmatch(matches) and not policy.path.fullmatch(misses)


@pytest.mark.parametrize("key", ["path", "container", "url"])
def test_a_catastrophic_pattern_is_matched_in_linear_time(key: str) -> None:
    # Python's backtracking `re` takes about 4 s for 26 characters here (8 s for 27...).
    creds = signed({"expiry": EXPIRY, key: "(a+)+$"})
    text = "a" * 26 + "b"
    action = Action.store(path=text, container=text, url=text)
    started = time.monotonic()
    assert fails(Code.POLICY_DENIES, creds, action).startswith(f"{key}:")
    pattern = PolicyPattern("(a+)+$")
    assert not pattern.fullmatch("a" * 100_000 + "b") and pattern.fullmatch("a" * 100_000)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("pattern", [
    r"(?=a)a", r"(?!x).*", r"(?<=a)b", r"(a)\1", r"(?P<x>a)(?P=x)",  # need backtracking
    r"a\Z", "a{1001}", "\ud800",
])
def test_patterns_re2_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(CinError) as caught:
        Policy.parse(encode_policy({"expiry": EXPIRY, "path": pattern}))
    assert caught.value.code is Code.BAD_POLICY
    assert (caught.value.detail or "").startswith("path:")


def test_a_text_that_is_not_unicode_matches_no_pattern() -> None:
    assert not PolicyPattern(".*").fullmatch("\ud800")


def test_checks_run_in_a_fixed_order() -> None:
    creds = signed({"expiry": EXPIRY, "call": ["read"], "handle": "X", "path": "no"})
    assert fails(Code.POLICY_DENIES, creds, STORE).startswith("call:")
    creds = signed({"expiry": EXPIRY, "handle": "X", "url": "no"})
    assert fails(Code.POLICY_DENIES, creds, Action.convert("H", url="u")).startswith("handle:")
    creds = signed({"expiry": EXPIRY, "path": "no", "container": "no"})
    assert fails(Code.POLICY_DENIES, creds, STORE).startswith("path:")


def test_exif_needs_an_explicit_call() -> None:
    fails(Code.POLICY_DENIES, signed({"expiry": EXPIRY}), Action.exif("HANDLE"))
    fails(Code.POLICY_DENIES, signed({"expiry": EXPIRY, "call": ["stat"]}), Action.exif("H"))
    grant = authorize(app(), signed({"expiry": EXPIRY, "call": ["exif"]}), Action.exif("H"),
                      now=NOW)
    assert grant.allows("exif") and not grant.allows("read")
    no_call = authorize(app(), signed({"expiry": EXPIRY}), Action.stat("H"), now=NOW)
    assert no_call.allows("stat") and not no_call.allows("exif")


def test_max_and_min_size() -> None:
    grant = authorize(app(), signed({"expiry": EXPIRY, "maxSize": 100, "minSize": 10}), STORE,
                      now=NOW)
    assert grant.max_size(1000) == 100
    assert grant.max_size(50) == 50
    grant.check_size(10)
    grant.check_size(100)
    with pytest.raises(CinError) as caught:
        grant.check_size(101)
    assert caught.value.code is Code.POLICY_DENIES
    assert caught.value.detail is not None and caught.value.detail.startswith("maxSize:")
    with pytest.raises(CinError) as caught:
        grant.check_size(9)
    assert caught.value.code is Code.POLICY_DENIES
    assert caught.value.detail is not None and caught.value.detail.startswith("minSize:")


def test_grants_without_a_policy() -> None:
    full = Grant(policy=None, secured=True)
    assert full.max_size(1000) == 1000
    full.check_size(10**12)
    assert all(full.allows(call) for call in CALLS)
    open_ = Grant(policy=None, secured=False)
    assert open_.allows("read") and open_.allows("store")
    assert not open_.allows("exif") and not open_.allows("remove")


# ---------------------------------------------------------------- no credentials, basic auth


def test_required_app_needs_credentials() -> None:
    detail = fails(Code.SECURITY_REQUIRED, Credentials.NONE, READ)
    assert "'read'" in detail


def test_optional_app_is_open_except_for_secure_actions() -> None:
    grant = authorize(app("optional"), Credentials.NONE, STORE, now=NOW)
    assert grant == Grant(policy=None, secured=False)
    assert grant.max_size(1000) == 1000
    for action in (Action.remove("H"), Action.overwrite("H"),
                   Action.overwrite("H", url="https://x/"), Action.exif("H")):
        detail = fails(Code.SECURITY_REQUIRED, Credentials.NONE, action, "optional")
        assert repr(action.calls[0]) in detail


def test_optional_app_still_checks_credentials_it_is_given() -> None:
    forged = Credentials(policy=PY_POLICY, signature="0" * 64)
    fails(Code.BAD_SIGNATURE, forged, READ, "optional")


def test_basic_auth_right_and_wrong() -> None:
    grant = authorize(app(), Credentials(app_secret=SECRET), Action.remove("H"), now=NOW)
    assert grant == Grant(policy=None, secured=True)
    assert grant.allows("exif")
    fails(Code.BAD_CREDENTIALS, Credentials(app_secret=SECRET + "x"), READ)
    fails(Code.BAD_CREDENTIALS, Credentials(app_secret="ü"), READ)


def test_basic_auth_with_a_policy_applies_both() -> None:
    creds = Credentials(policy=PY_POLICY, signature=PY_SIGNATURE, app_secret=SECRET)
    fails(Code.POLICY_DENIES, creds, STORE)
    wrong = Credentials(policy=PY_POLICY, signature=PY_SIGNATURE, app_secret="nope")
    fails(Code.BAD_CREDENTIALS, wrong, READ)


def test_overwrite_from_a_url_needs_write_url() -> None:
    creds = signed({"expiry": EXPIRY, "call": ["write"]})
    assert authorize(app(), creds, Action.overwrite("H"), now=NOW).secured
    fails(Code.POLICY_DENIES, creds, Action.overwrite("H", url="https://x/"))
    creds = signed({"expiry": EXPIRY, "call": ["writeUrl"], "url": "https://x/.*"})
    assert authorize(app(), creds, Action.overwrite("H", url="https://x/a"), now=NOW).secured


# ---------------------------------------------------------------- malformed policies


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("not base64!", "policy:"),
        ("QQ=QQ", "policy:"),
        ("Q", "policy:"),
        (b64("{not json"), "policy:"),
        (b64("[1, 2]"), "policy:"),
        (b64('"text"'), "policy:"),
        (b64("{}"), "expiry:"),
        (b64('{"expiry": true}'), "expiry:"),
        (b64('{"expiry": "1562763146"}'), "expiry:"),
        (b64('{"expiry": NaN}'), "policy:"),
        (b64('{"expiry": 1, "expiry": 2}'), "expiry:"),
        (b64('{"expiry": 1, "call": "fly"}'), "call:"),
        (b64('{"expiry": 1, "call": []}'), "call:"),
        (b64('{"expiry": 1, "call": [1]}'), "call:"),
        (b64('{"expiry": 1, "handle": 5}'), "handle:"),
        (b64('{"expiry": 1, "path": "("}'), "path:"),
        (b64('{"expiry": 1, "url": 3}'), "url:"),
        (b64('{"expiry": 1, "container": "' + "a" * 1025 + '"}'), "container:"),
        (b64('{"expiry": 1, "maxSize": -1}'), "maxSize:"),
        (b64('{"expiry": 1, "minSize": 1.5}'), "minSize:"),
        (b64('{"expiry": 1, "maxSize": true}'), "maxSize:"),
        (b64('{"expiry": 1, "maxSize": 5, "minSize": 6}'), "minSize:"),
        (b64("[" * 5000 + "]" * 5000), "policy:"),
        ("A" * (MAX_POLICY_TEXT + 4), "policy:"),
    ],
)
def test_malformed_policies(text: str, key: str) -> None:
    with pytest.raises(CinError) as caught:
        Policy.parse(text)
    assert caught.value.code is Code.BAD_POLICY
    assert caught.value.detail is not None and caught.value.detail.startswith(key)


def test_malformed_signed_policy_is_bad_policy_through_authorize() -> None:
    policy = b64('{"expiry": true}')
    fails(Code.BAD_POLICY, Credentials(policy=policy, signature=sign_policy(SECRET, policy)),
          READ)
    huge = "A" * (MAX_POLICY_TEXT + 4)
    fails(Code.BAD_POLICY, Credentials(policy=huge, signature=sign_policy(SECRET, huge)), READ)


@pytest.mark.parametrize("policy", ["\ud800", "é" + PY_POLICY, PY_POLICY + "\udcff"])
def test_policy_that_is_not_ascii_is_bad_policy_not_signed(policy: str) -> None:
    fails(Code.BAD_POLICY, Credentials(policy=policy, signature=PY_SIGNATURE), READ)


def test_parse_accepts_integral_floats_and_ignores_unknown_keys() -> None:
    policy = Policy.parse(b64('{"expiry": 1562763146.0, "maxSize": 1e3, "future": [1]}'))
    assert policy == Policy(expiry=EXPIRY, max_size=1000)


# ---------------------------------------------------------------- where credentials come from


@pytest.mark.parametrize("text", [
    f"p:{JS_POLICY},s:{JS_SIGNATURE}",
    f"s:{JS_SIGNATURE},p:{JS_POLICY}",
    f"policy:{JS_POLICY},signature:{JS_SIGNATURE}",
    f"signature:{JS_SIGNATURE},policy:{JS_POLICY}",
])
def test_security_segment_spellings(text: str) -> None:
    assert parse_security_segment(text) == Credentials(policy=JS_POLICY, signature=JS_SIGNATURE)


def test_security_segment_keeps_slashes_and_plus() -> None:
    creds = parse_security_segment("p:ab/c+d==,s:00ff")
    assert creds == Credentials(policy="ab/c+d==", signature="00ff")


@pytest.mark.parametrize("text", [
    "", f"p:{JS_POLICY}", f"p:{JS_POLICY},s:", f"p:{JS_POLICY},p:{JS_POLICY}",
    f"p:{JS_POLICY},s:{JS_SIGNATURE},x:1", f"q:{JS_POLICY},s:{JS_SIGNATURE}",
    f"{JS_POLICY},{JS_SIGNATURE}",
])
def test_malformed_security_segment(text: str) -> None:
    with pytest.raises(CinError) as caught:
        parse_security_segment(text)
    assert caught.value.code is Code.BAD_POLICY


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_auth_header() -> None:
    assert basic_auth_secret(None) is None
    assert basic_auth_secret(basic(f"app:{SECRET}")) == SECRET
    assert basic_auth_secret(basic("app:with:colon")) == "with:colon"
    assert basic_auth_secret("basic " + basic("app:x")[6:]) == "x"


@pytest.mark.parametrize("header", [
    "Bearer token", "Basic !!!", basic("user:secret"), basic("app:"), basic("app"),
    "Basic " + base64.b64encode(b"app:\xff").decode(), "Basic é", "Basic \udcff",
])
def test_malformed_basic_auth(header: str) -> None:
    with pytest.raises(CinError) as caught:
        basic_auth_secret(header)
    assert caught.value.code is Code.BAD_CREDENTIALS


def test_credentials_from_query_body_and_header() -> None:
    query = {"policy": PY_POLICY, "signature": PY_SIGNATURE}
    assert credentials_from(query, None) == Credentials(PY_POLICY, PY_SIGNATURE)
    assert credentials_from({}, None, query) == Credentials(PY_POLICY, PY_SIGNATURE)
    assert credentials_from(query, None, query) == Credentials(PY_POLICY, PY_SIGNATURE)
    assert credentials_from({}, basic(f"app:{SECRET}")) == Credentials(app_secret=SECRET)
    assert credentials_from({"policy": "", "signature": ""}, None) == Credentials.NONE
    assert not Credentials.NONE.present
    assert Credentials(app_secret="x").present


@pytest.mark.parametrize(("query", "fields", "code", "words"), [
    ({"policy": PY_POLICY}, None, Code.SECURITY_REQUIRED, "needs its signature"),
    ({"signature": PY_SIGNATURE}, None, Code.SECURITY_REQUIRED, "needs its policy"),
    ({}, {"policy": PY_POLICY}, Code.SECURITY_REQUIRED, "needs its signature"),
    ({}, {"policy": 5, "signature": PY_SIGNATURE}, Code.BAD_POLICY, "policy:"),
    ({}, {"policy": PY_POLICY, "signature": ["x"]}, Code.BAD_POLICY, "signature:"),
    ({"policy": PY_POLICY, "signature": PY_SIGNATURE}, {"policy": JS_POLICY}, Code.BAD_POLICY,
     "policy:"),
])
def test_credentials_from_refuses(query: dict[str, str], fields: dict[str, Any] | None,
                                  code: Code, words: str) -> None:
    with pytest.raises(CinError) as caught:
        credentials_from(query, None, fields)
    assert caught.value.code is code
    assert words in (caught.value.detail or "")


def test_signature_without_policy_is_refused_by_authorize() -> None:
    fails(Code.SECURITY_REQUIRED, Credentials(signature=PY_SIGNATURE), READ, "optional")
