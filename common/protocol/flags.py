"""Boolean query parameters, read one way by every route."""

from __future__ import annotations

from collections.abc import Mapping

from common.protocol.errors import CinError, Code


def query_flag(query: Mapping[str, str], name: str) -> bool | None:
    """A boolean query parameter: None when absent; true/1/yes or bare (`?dl`) is True,
    false/0/no is False; anything else is a 400. Every route reads flags through this."""
    raw = query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise CinError(Code.BAD_PARAMETER, f"{name} must be true or false, not {raw[:40]!r}")

