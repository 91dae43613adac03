"""Boolean query parameters, read one way by every route."""

from __future__ import annotations

from collections.abc import Mapping

from common.protocol.errors import CinError, Code

_TRUE = ("true", "1", "yes", "")
_FALSE = ("false", "0", "no")


def is_flag_value(raw: str) -> bool:
    """Whether a query value is a boolean. `key` is both the apikey and a metadata field's
    flag; no apikey (8 to 64 characters) is a boolean, so the value tells which it is."""
    return raw.strip().lower() in (*_TRUE, *_FALSE)


def query_flag(query: Mapping[str, str], name: str) -> bool | None:
    """A boolean query parameter: None when absent; true/1/yes or bare (`?dl`) is True,
    false/0/no is False; anything else is a 400. Every route reads flags through this."""
    raw = query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CinError(Code.BAD_PARAMETER, f"{name} must be true or false, not {raw[:40]!r}")

