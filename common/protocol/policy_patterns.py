"""A policy's `url`, `path` and `container` regular expressions, matched in linear time.

A policy's patterns run on a POP's event loop for every request that carries it. With
Python's backtracking `re`, a pattern such as `(a+)+$` takes time exponential in the
length of the text: one request stalled a POP for seconds. RE2 (google-re2) matches in
time linear in the text, whatever the pattern; with the pattern bounded (MAX_PATTERN) and
the texts bounded (a path, a container, a URL: a few KiB at most), one match costs
milliseconds at worst, so no pattern can stall the loop and none needs a thread.

RE2's syntax is Python's for ordinary patterns: classes, groups, alternation, repeats,
anchors, `(?P<name>...)`, `(?i)`. What it lacks is what needs backtracking:
lookaround, backreferences, `\\Z` (RE2 spells it `\\z`). A policy using them is refused
(bad_policy), never run another way. `\\d`, `\\w`, `\\s` and `\\b` are ASCII in RE2, as
paths and URLs mostly are; Python's are Unicode.
"""

from __future__ import annotations

from typing import Any

import re2

from common.protocol.naming import is_unicode

MAX_PATTERN = 1024


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the client's answer, not a log line
    options.never_capture = True  # match or not: groups are never read
    # A policy pattern needs far less; this bounds what each of the module's 128 cached
    # patterns can hold, and refuses one whose program would be larger.
    options.max_mem = 1 << 20
    return options


_OPTIONS = _options()


class PatternError(ValueError):
    """The text is not a pattern cin can match; the message says why, after the key."""


class PolicyPattern:
    """One compiled pattern; `fullmatch` says whether a whole text matches it."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"is longer than {MAX_PATTERN} characters")
        if not is_unicode(pattern):
            raise PatternError("is not valid Unicode text")
        try:
            self._regexp = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise PatternError(f"is not a valid regular expression ({reason}); cin reads "
                               "RE2 syntax, which has no lookaround or backreferences") from None
        self.pattern = pattern

    def fullmatch(self, text: str) -> bool:
        # A text that is not valid Unicode cannot be encoded for RE2, and matches nothing.
        return is_unicode(text) and self._regexp.fullmatch(text) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"PolicyPattern({self.pattern!r})"
