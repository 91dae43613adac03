"""Why an expired upload is Failed, in the words every node answers with.

The coordinator fails an upload not completed within `upload_expiry.ttl`, and a POP
tells a client so itself for an upload it started (edge/multipart/uploads.py): a client
reads the same reason wherever it asks.
"""

from __future__ import annotations


def describe_duration(seconds: float) -> str:
    """A TTL as a person reads it in an error message: `24 h`, `90 min`, `45 s`."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def expired_reason(ttl: float) -> str:
    """The failure recorded on an upload not completed within `ttl` seconds."""
    return f"expired: not completed within {describe_duration(ttl)}"
