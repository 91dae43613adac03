"""Filestack security: policies, signatures, basic auth, and the one decision `authorize`.

A policy is base64 of a JSON object (`expiry`, and optionally `call`, `handle`, `url`, `path`,
`container`, `maxSize`, `minSize`); its signature is the hex HMAC-SHA256 of the policy text
under the app secret. Everything here is pure: routes gather `Credentials` from a request,
describe what they are about to do as an `Action`, and get back a `Grant` or a `CinError`.
No HTTP object ever reaches this module, so every rule is tested without a server.

Order matters for safety: the signature is verified over the policy text *exactly as
received*, before the JSON is parsed, so a blob nobody signed is never decoded past base64
length checks, and two SDKs that encode the same policy differently (filestack-python:
URL-safe alphabet, sorted keys; filestack-js: standard alphabet, insertion order) both verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from common.config import AppConfig
from common.protocol.errors import CinError, Code
from common.protocol.policy_patterns import PatternError, PolicyPattern

CALLS = frozenset({"pick", "read", "stat", "write", "writeUrl", "store", "convert", "remove",
                   "exif", "runWorkflow"})

# Calls that change or destroy an existing file: an app with `security: optional` still
# needs credentials for them, or anyone who learns a handle could replace or delete it.
ALWAYS_SECURE_CALLS = frozenset({"write", "writeUrl", "remove"})

# A real policy is a few hundred bytes; the bounds keep a hostile one from costing more
# than a few hundred microseconds (HMAC, base64, JSON, regex compilation: MAX_PATTERN).
MAX_POLICY_TEXT = 8 * 1024

_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]*")


def sign_policy(secret: str, policy_text: str) -> str:
    """The signature of a policy: lowercase hex HMAC-SHA256(secret, policy text)."""
    return hmac.new(secret.encode("utf-8"), policy_text.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def encode_policy(fields: Mapping[str, Any]) -> str:
    """Encode policy fields as filestack-python's `Security` does (URL-safe, sorted keys).

    Matching it byte for byte means a policy from `cin sign` and one from the Python SDK
    are the same text, so they have the same signature and PROTOCOL.md's vector holds.
    """
    text = json.dumps(dict(fields), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def _bad(key: str, problem: str) -> CinError:
    return CinError(Code.BAD_POLICY, f"{key}: {problem}")


def _short(text: str, limit: int = 80) -> str:
    """A value quoted in an error detail, cut so a hostile value cannot bloat the reply."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    """A decoded policy. `calls` is None when the policy has no `call` key."""

    expiry: int
    calls: frozenset[str] | None = None
    handle: str | None = None
    url: PolicyPattern | None = None
    path: PolicyPattern | None = None
    container: PolicyPattern | None = None
    max_size: int | None = None
    min_size: int | None = None

    def allows_call(self, call: str) -> bool:
        """No `call` key allows every call but `exif`: EXIF can leak where a photo was taken,
        so it is only ever returned when a policy asks for it by name."""
        if self.calls is None:
            return call != "exif"
        return call in self.calls

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Decode and validate policy text; every failure is BAD_POLICY naming the key."""
        fields = _decode_policy_json(text)
        if "expiry" not in fields:
            raise _bad("expiry", "is required")
        max_size = _size(fields, "maxSize")
        min_size = _size(fields, "minSize")
        if max_size is not None and min_size is not None and min_size > max_size:
            raise _bad("minSize", f"{min_size} is larger than maxSize {max_size}")
        return cls(
            expiry=_expiry(fields["expiry"]),
            calls=_calls(fields.get("call")),
            handle=_handle(fields.get("handle")),
            url=_pattern(fields, "url"),
            path=_pattern(fields, "path"),
            container=_pattern(fields, "container"),
            max_size=max_size,
            min_size=min_size,
        )


def _decode_policy_json(text: str) -> dict[str, Any]:
    if len(text) > MAX_POLICY_TEXT:
        raise _bad("policy", f"is longer than {MAX_POLICY_TEXT} characters")
    # filestack-js uses the standard alphabet, filestack-python the URL-safe one, and some
    # clients strip the padding: map everything onto the standard alphabet and re-pad.
    body = text.rstrip("=")
    if not text or not _BASE64_RE.fullmatch(body) or len(body) % 4 == 1 \
            or len(text) - len(body) > 2:
        raise _bad("policy", "is not base64")
    body = body.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:
        raise _bad("policy", "is not base64") from exc

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                # Two parsers could pick different values for one key: refuse to guess.
                raise _bad(key, "appears twice")
            result[key] = value
        return result

    def no_constants(name: str) -> Any:
        raise _bad("policy", f"{name} is not a JSON number")

    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates,
                          parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad("policy", "is not JSON") from exc
    if not isinstance(data, dict):
        raise _bad("policy", "must be a JSON object")
    return data


def _is_number(value: Any) -> bool:
    # bool is an int in Python but `true` is not a time or a size in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _expiry(value: Any) -> int:
    """An integer unix time. A float is accepted (`time.time() + 3600` is a common way to
    write one in Python) and rounded down, so it never outlives what its signer meant."""
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise _bad("expiry", "must be a unix time in seconds")
    floored: int = math.floor(value)
    return floored


def _calls(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _bad("call", "must be a call name or a non-empty list of call names")
    for name in names:
        if not isinstance(name, str):
            raise _bad("call", f"{name!r} is not a call name")
        if name not in CALLS:
            raise _bad("call", f"{_short(name)} is not a known call "
                               f"(known: {', '.join(sorted(CALLS))})")
    return frozenset(names)


def _handle(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad("handle", "must be a non-empty string")
    return value


def _pattern(fields: Mapping[str, Any], key: str) -> PolicyPattern | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(key, "must be a regular expression (a string)")
    try:
        return PolicyPattern(value)
    except PatternError as exc:
        raise _bad(key, str(exc)) from None


def _size(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    # Python's json.dumps writes 1e6 as 1000000.0; an integral float is still a byte count.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_number(value) or not isinstance(value, int) or value < 0:
        raise _bad(key, "must be a non-negative whole number of bytes")
    return value


# ------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a policy and its signature, and/or the app secret."""

    policy: str | None = None
    signature: str | None = None
    app_secret: str | None = None  # the password of HTTP basic auth `app:<secret>`

    NONE: ClassVar[Credentials]

    @property
    def present(self) -> bool:
        return any(v is not None for v in (self.policy, self.signature, self.app_secret))


Credentials.NONE = Credentials()


def parse_security_segment(text: str) -> Credentials:
    """Credentials from a CDN path segment's value after `security=`.

    Accepts `p:<policy>,s:<signature>` and `policy:<policy>,signature:<signature>` in either
    order. Neither base64 alphabet contains `,` or `:`, so splitting on them is exact even
    when a standard-alphabet policy carries `/`, `+` or `=`. The caller passes the segment
    already percent-decoded (aiohttp's `match_info` is).
    """
    names = {"p": "policy", "policy": "policy", "s": "signature", "signature": "signature"}
    found: dict[str, str] = {}
    parts = text.split(",")
    if len(parts) != 2:
        raise CinError(Code.BAD_POLICY,
                       "security: must be p:<policy>,s:<signature>")
    for part in parts:
        key, sep, value = part.partition(":")
        name = names.get(key)
        if not sep or name is None or not value:
            raise CinError(Code.BAD_POLICY,
                           f"security: {_short(part, 40)} is not p:<policy> or s:<signature>")
        if name in found:
            raise CinError(Code.BAD_POLICY, f"security: {name} is given twice")
        found[name] = value
    return Credentials(policy=found["policy"], signature=found["signature"])


def basic_auth_secret(header: str | None) -> str | None:
    """The app secret from `Authorization: Basic base64(app:SECRET)`; None if no header.

    A header that is present but not app basic auth is an error rather than "no
    credentials": a client that meant to authenticate should hear why it did not.
    """
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise CinError(Code.BAD_CREDENTIALS, "Authorization: only Basic auth is accepted")
    try:
        # A str with a non-ASCII character (an `é`, or a byte aiohttp kept as a lone
        # surrogate) makes b64decode raise a plain ValueError, not binascii.Error.
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise CinError(Code.BAD_CREDENTIALS, "Authorization: is not valid base64") from exc
    user, sep, secret = decoded.partition(":")
    if not sep or user != "app" or not secret:
        raise CinError(Code.BAD_CREDENTIALS, "Authorization: must be app:<app secret>")
    return secret


def credentials_from(query: Mapping[str, str], authorization: str | None,
                     fields: Mapping[str, Any] | None = None) -> Credentials:
    """Credentials from a request's query, its Authorization header, and its JSON body.

    An empty `policy=` or `signature=` counts as absent. A policy given in both the query
    and the body must be the same text, otherwise which one was checked would be a guess.
    """
    policy = _one_of(query, fields, "policy")
    signature = _one_of(query, fields, "signature")
    if policy is not None and signature is None:
        raise CinError(Code.SECURITY_REQUIRED, "a policy needs its signature")
    if signature is not None and policy is None:
        raise CinError(Code.SECURITY_REQUIRED, "a signature needs its policy")
    return Credentials(policy=policy, signature=signature,
                       app_secret=basic_auth_secret(authorization))


def _one_of(query: Mapping[str, str], fields: Mapping[str, Any] | None, key: str) -> str | None:
    from_query = query.get(key) or None
    from_body = None
    if fields is not None and fields.get(key) not in (None, ""):
        from_body = fields[key]
        if not isinstance(from_body, str):
            raise CinError(Code.BAD_POLICY, f"{key}: must be a string")
    if from_query is not None and from_body is not None and from_query != from_body:
        raise CinError(Code.BAD_POLICY, f"{key}: the query and the body give different values")
    return from_query if from_query is not None else from_body


# ------------------------------------------------------------------------ what is asked


@dataclass(frozen=True)
class Action:
    """What a request is about to do, as far as security cares.

    `calls` lists the policy calls any one of which allows it. The url/path/container
    fields are the values a policy's regexes are matched against; None means the action
    has no such value and the policy's regex does not apply.
    """

    calls: tuple[str, ...]
    handle: str | None = None
    url: str | None = None
    path: str | None = None
    container: str | None = None
    always_secure: bool = False

    @property
    def needs_exif(self) -> bool:
        return "exif" in self.calls

    # Named constructors, so routes say what they do rather than list calls.

    @classmethod
    def store(cls, *, path: str | None, container: str, url: str | None = None) -> Action:
        """A new file (upload or store-from-URL). Filestack lets either `store` or `pick`
        do it. With no path the policy's path regex is matched against "", so a policy
        bound to a folder cannot be dodged by leaving the path out. `container` is the
        one the file will land in, the default one included."""
        return cls(calls=("store", "pick"), path=path or "", container=container, url=url)

    @classmethod
    def read(cls, handle: str) -> Action:
        return cls(calls=("read",), handle=handle)

    @classmethod
    def stat(cls, handle: str) -> Action:
        return cls(calls=("stat",), handle=handle)

    @classmethod
    def exif(cls, handle: str) -> Action:
        """Metadata including EXIF: only a policy that names `exif` allows it."""
        return cls(calls=("exif",), handle=handle)

    @classmethod
    def convert(cls, handle: str | None = None, *, url: str | None = None) -> Action:
        """A transformation of a stored file or of an external URL."""
        return cls(calls=("convert",), handle=handle, url=url)

    @classmethod
    def overwrite(cls, handle: str, *, url: str | None = None) -> Action:
        """Replace a file's bytes. From a URL it takes `writeUrl` and nothing else:
        `write` lets a client send bytes it has, not make cin fetch from anywhere."""
        if url is None:
            return cls(calls=("write",), handle=handle, always_secure=True)
        return cls(calls=("writeUrl",), handle=handle, url=url, always_secure=True)

    @classmethod
    def remove(cls, handle: str) -> Action:
        return cls(calls=("remove",), handle=handle, always_secure=True)

    @classmethod
    def run_workflow(cls, handle: str | None = None) -> Action:
        return cls(calls=("runWorkflow",), handle=handle)


# ---------------------------------------------------------------------- what is granted


@dataclass(frozen=True)
class Grant:
    """The outcome of `authorize`: under which policy, if any, the request goes ahead.

    `policy=None, secured=True` is the app secret (everything allowed);
    `policy=None, secured=False` is the open access of a `security: optional` app.
    """

    policy: Policy | None
    secured: bool

    def allows(self, call: str) -> bool:
        """Whether this grant would also allow `call` (e.g. to include EXIF in a reply)."""
        if self.policy is not None:
            return self.policy.allows_call(call)
        if self.secured:
            return True
        return call != "exif" and call not in ALWAYS_SECURE_CALLS

    def max_size(self, app_limit: int) -> int:
        """The largest file this request may store: the app's limit, or less if the
        policy says so."""
        if self.policy is None or self.policy.max_size is None:
            return app_limit
        return min(app_limit, self.policy.max_size)

    def check_size(self, size: int) -> None:
        """Refuse a file whose size the policy does not allow (the app's own limit is the
        route's business: it answers TOO_LARGE)."""
        if self.policy is None:
            return
        if self.policy.max_size is not None and size > self.policy.max_size:
            raise CinError(Code.POLICY_DENIES, f"maxSize: the file is {size} bytes, the "
                                               f"policy allows at most {self.policy.max_size}")
        if self.policy.min_size is not None and size < self.policy.min_size:
            raise CinError(Code.POLICY_DENIES, f"minSize: the file is {size} bytes, the "
                                               f"policy needs at least {self.policy.min_size}")


OPEN = Grant(policy=None, secured=False)
FULL = Grant(policy=None, secured=True)


def authorize(app: AppConfig, creds: Credentials, action: Action, *,
              now: float | None = None) -> Grant:
    """Decide whether `creds` allow `action` for `app`; a Grant, or a CinError saying why not.

    Every credential presented must be valid: a wrong app secret is refused even if a good
    policy comes with it, and a policy that comes with the right app secret still limits
    the request (the client asked for those limits).
    """
    if creds.app_secret is not None:
        if not hmac.compare_digest(creds.app_secret.encode("utf-8"),
                                   app.secret.encode("utf-8")):
            raise CinError(Code.BAD_CREDENTIALS, "the app secret is wrong")
        if creds.policy is None:
            return FULL
    if creds.policy is None and creds.signature is not None:
        raise CinError(Code.SECURITY_REQUIRED, "a signature needs its policy")
    if creds.policy is None:
        if app.security == "required":
            raise CinError(Code.SECURITY_REQUIRED,
                           f"the app requires security for every call; {_needs(action)}")
        if action.always_secure or action.needs_exif:
            raise CinError(Code.SECURITY_REQUIRED,
                           f"{_needs(action)}, even for an app with optional security")
        return OPEN
    policy = _verified_policy(app.secret, creds.policy, creds.signature)
    now = time.time() if now is None else now
    if now >= policy.expiry:
        raise CinError(Code.POLICY_EXPIRED, f"expiry: the policy expired at "
                                            f"{_when(policy.expiry)} ({policy.expiry})")
    _check(policy, action)
    return Grant(policy=policy, secured=True)


def _needs(action: Action) -> str:
    wanted = " or ".join(repr(c) for c in action.calls)
    return f"{wanted} needs a policy and signature, or the app secret"


def _when(unix: int) -> str:
    try:
        return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # a year outside what datetime holds
        return "a time out of range"


def _verified_policy(secret: str, policy_text: str, signature: str | None) -> Policy:
    if len(policy_text) > MAX_POLICY_TEXT:
        raise _bad("policy", f"is longer than {MAX_POLICY_TEXT} characters")
    if signature is None:
        raise CinError(Code.SECURITY_REQUIRED, "a policy needs its signature")
    if not policy_text.isascii():
        # Base64 is ASCII; anything else (a lone surrogate from a JSON body included)
        # could not even be encoded to be signed.
        raise _bad("policy", "is not base64")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise CinError(Code.BAD_SIGNATURE, "signature: must be 64 hex digits")
    expected = sign_policy(secret, policy_text)
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise CinError(Code.BAD_SIGNATURE)
    return Policy.parse(policy_text)


def _check(policy: Policy, action: Action) -> None:
    """The policy's restrictions, in a fixed order so the first failure is predictable."""
    if not any(policy.allows_call(call) for call in action.calls):
        wanted = " or ".join(repr(c) for c in action.calls)
        if policy.calls is None:
            why = f"{wanted} must be listed in the policy's call"
        else:
            why = f"the policy allows {', '.join(sorted(policy.calls))}, not {wanted}"
        raise CinError(Code.POLICY_DENIES, f"call: {why}")
    if policy.handle is not None and policy.handle != action.handle:
        what = f"handle {_short(action.handle)}" if action.handle else "no handle"
        raise CinError(Code.POLICY_DENIES,
                       f"handle: the policy is for {_short(policy.handle)}, "
                       f"this request names {what}")
    for key, pattern, value in (("url", policy.url, action.url),
                                ("path", policy.path, action.path),
                                ("container", policy.container, action.container)):
        if pattern is not None and value is not None and not pattern.fullmatch(value):
            raise CinError(Code.POLICY_DENIES,
                           f"{key}: {_short(value)} does not match {_short(pattern.pattern)}")
