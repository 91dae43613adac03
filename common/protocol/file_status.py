"""A file's upload status and the transitions allowed between them.

The table is the whole state machine: the coordinator consults it before every change,
and an illegal change is a typed error rather than a silently corrupted status.
"""

from __future__ import annotations

from enum import Enum

from common.protocol.errors import CinError, Code


class FileStatus(Enum):
    STARTED = "Started"  # begun uploading to a POP
    IN_TRANSIT = "In Transit"  # every byte durable at a POP, not yet in the bucket
    COMPLETE = "Complete"  # in the bucket
    FAILED = "Failed"  # aborted or expired; the bytes are gone


_ALLOWED: dict[FileStatus, frozenset[FileStatus]] = {
    FileStatus.STARTED: frozenset({FileStatus.IN_TRANSIT, FileStatus.COMPLETE, FileStatus.FAILED}),
    FileStatus.IN_TRANSIT: frozenset({FileStatus.COMPLETE, FileStatus.FAILED}),
    # An overwrite of a complete file goes through In Transit again.
    FileStatus.COMPLETE: frozenset({FileStatus.IN_TRANSIT, FileStatus.COMPLETE}),
    FileStatus.FAILED: frozenset(),
}


class IllegalTransition(CinError):
    def __init__(self, current: FileStatus, wanted: FileStatus) -> None:
        super().__init__(Code.CONFLICT, f"a file that is {current.value} cannot become "
                                         f"{wanted.value}")
        self.current = current
        self.wanted = wanted


def check_transition(current: FileStatus, wanted: FileStatus) -> None:
    if current is wanted and current is not FileStatus.COMPLETE:
        return  # repeating a report (an event retried by a POP) is harmless
    if wanted not in _ALLOWED[current]:
        raise IllegalTransition(current, wanted)
