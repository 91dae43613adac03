"""Upload tags: a small string→string map a client attaches to an upload (PROTOCOL.md §5).

Tags are stored with the file and echoed in the upload reply and the `fp.upload` webhook,
so the rules bound what a client can make cin carry around: at most 10 tags, keys of
1 to 128 characters, values of at most 256. Lengths count Unicode characters, as a client
counts them, not UTF-8 bytes.
"""

from __future__ import annotations

import json
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.naming import is_unicode

MAX_TAGS = 10
MAX_KEY = 128
MAX_VALUE = 256
# Ten full-length tags written entirely as JSON surrogate-pair escapes (12 bytes for one
# character) fit in 10 * (128 + 256) * 12 ≈ 46 KB; anything longer cannot be valid.
MAX_JSON_TEXT = 64 * 1024


def _bad(rule: str) -> CinError:
    return CinError(Code.BAD_TAGS, rule)


def _quoted(key: str) -> str:
    return repr(key if len(key) <= 20 else key[:20] + "…")


def validate_tags(value: object) -> dict[str, str]:
    """The tags as a fresh dict, or BAD_TAGS naming the rule broken. None means no tags."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"tags must be a JSON object of strings (got {type(value).__name__})")
    if len(value) > MAX_TAGS:
        raise _bad(f"at most {MAX_TAGS} tags (got {len(value)})")
    tags: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _bad(f"key {key!r} must be a string")
        if not key:
            raise _bad("a key must not be empty")
        if len(key) > MAX_KEY:
            raise _bad(f"key {_quoted(key)} is over {MAX_KEY} characters")
        if not isinstance(item, str):
            raise _bad(f"value of {_quoted(key)} must be a string")
        if len(item) > MAX_VALUE:
            raise _bad(f"value of {_quoted(key)} is over {MAX_VALUE} characters")
        # JSON can spell a lone surrogate (\ud800); it is no character and cannot be
        # written as UTF-8, so it would fail later, in storage metadata or a webhook.
        if not is_unicode(key) or not is_unicode(item):
            raise _bad(f"tag {_quoted(key)} is not valid Unicode text")
        tags[key] = item
    return tags


def tags_from_json_text(text: str) -> dict[str, str]:
    """Tags from JSON text (the `upload_tags=<json>` query parameter).

    A parsed dict has lost any repeated key, so repeats are refused while parsing: two
    spellings of one tag would otherwise be settled silently by whichever came last.
    """
    if len(text) > MAX_JSON_TEXT:
        raise _bad(f"the tags are over {MAX_JSON_TEXT} characters of JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in pairs:
            if key in result:
                raise _bad(f"key {_quoted(key)} appears twice")
            result[key] = item
        return result

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise _bad("the tags are not valid JSON") from exc
    return validate_tags(value)
