"""The Upload API's part status: which parts of an upload are stored, and where the
others are, so a client can finish at another POP what it began at one that is gone.

`POST /multipart/status` (ids as for every step after start) works at the coordinator
and at every POP. The coordinator knows the parts that are stored, from whichever POP,
and, once the upload is In Transit, the parts each POP holds. A POP adds what its own
spool holds for the upload: `size` is then the bytes it holds from the start of the
part without a gap, which is where an Intelligent Ingestion client carries on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.protocol.records import FileRecord, PartRecord, UploadRecord


def status_reply(record: FileRecord, upload: UploadRecord, recorded: Iterable[PartRecord],
                 held: Mapping[int, int] | None = None,
                 holder: str | None = None) -> dict[str, Any]:
    """The reply: the coordinator's parts (`recorded`), with `held` (part → bytes held
    from its start) at POP `holder` for the parts the coordinator has not recorded."""
    parts = {part.number: {"part_number": part.number, "size": part.size,
                           "state": part.state, "pop": part.pop, "etag": part.etag}
             for part in recorded}
    for number, size in (held or {}).items():
        if number not in parts and size > 0:
            parts[number] = {"part_number": number, "size": size, "state": "spooled",
                             "pop": holder, "etag": None}
    return {
        "upload_id": upload.upload_id,
        "handle": record.handle,
        "status": record.status.value,
        "size": record.size,
        "stored_bytes": sum(p["size"] for p in parts.values() if p["state"] == "stored"),
        "parts": [parts[number] for number in sorted(parts)],
    }
