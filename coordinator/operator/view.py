"""What the operator's page shows, read once per refresh: the POPs, the uploads in flight,
the recent failures and the webhook backlog, as rows of text ready to show.

Every word and number on the page is decided here, so the first render (routes.py, on the
server) and each refresh (page.js, from `/operator/status`) show the same thing and the
script only puts text into cells. Each list is bounded (`ROWS`): the state reads are
indexed and LIMITed, so a refresh costs the same however much the state holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.protocol.records import FileRecord
from coordinator.pop_registry import PopStatus
from coordinator.state import OutboxEntry, StateStore

# Rows of each list: enough to see what is going on, few enough to read at a glance.
ROWS = 50
# The longest text a cell shows of a value a client or a receiver chose (a file name, an
# error): the rest is cut, so one odd value cannot stretch the page.
LONGEST_TEXT = 160
NONE = "\u2013"  # an en dash: no value (a POP not heard from, no error yet)


@dataclass(frozen=True)
class Cell:
    text: str
    tone: str | None = None  # a state's name ("up", "down", "failed"): how it is coloured

    def to_json(self) -> str | dict[str, str]:
        return self.text if self.tone is None else {"text": self.text, "tone": self.tone}


@dataclass(frozen=True)
class Table:
    rows: list[list[Cell]]
    empty: str  # shown instead of rows when there are none
    note: str = ""  # under the table: how many rows were left off, and the like

    def to_json(self) -> dict[str, Any]:
        return {"rows": [[cell.to_json() for cell in row] for row in self.rows],
                "empty": self.empty, "note": self.note}


@dataclass(frozen=True)
class Snapshot:
    generated: str
    summary: list[tuple[str, Cell]]
    tables: dict[str, Table] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated,
                "summary": [{"label": label, "value": value.to_json()}
                            for label, value in self.summary],
                "tables": {name: table.to_json() for name, table in self.tables.items()}}


async def snapshot(pops: Sequence[PopStatus], state: StateStore, *,
                   now: float | None = None) -> Snapshot:
    """Everything the page shows, as of now."""
    now = time.time() if now is None else now
    in_flight = await state.files_in_flight(ROWS)
    failed = await state.failed_files(ROWS)
    pending = await state.outbox_entries(abandoned=False, limit=ROWS)
    abandoned = await state.outbox_entries(abandoned=True, limit=ROWS)
    counts = await state.outbox_counts()
    up = sum(1 for status in pops if status.healthy)
    summary = [
        ("POPs up", Cell(f"{up} of {len(pops)}", "up" if up == len(pops) else "down")),
        ("uploads in flight", Cell(_at_least(len(in_flight)))),
        ("failed uploads", Cell(_at_least(len(failed)), "failed" if failed else None)),
        ("webhooks pending", Cell(str(counts["pending"]))),
        ("webhooks abandoned", Cell(str(counts["abandoned"]),
                                    "failed" if counts["abandoned"] else None)),
    ]
    return Snapshot(
        generated=_when(now),
        summary=summary,
        tables={
            "pops": Table([_pop_row(status) for status in pops], "no POPs configured"),
            "in-flight": Table([_file_row(f, now) for f in in_flight],
                               "no upload is in flight", _cut_note(len(in_flight))),
            "failures": Table([_file_row(f, now) for f in failed], "no upload has failed",
                              _cut_note(len(failed))),
            "webhook-pending": Table([_delivery_row(e, now) for e in pending],
                                     "no webhook is waiting to be delivered",
                                     _cut_note(len(pending), counts["pending"])),
            "webhook-abandoned": Table([_delivery_row(e, now) for e in abandoned],
                                       "no webhook was given up on",
                                       _cut_note(len(abandoned), counts["abandoned"])),
        })


def _pop_row(status: PopStatus) -> list[Cell]:
    load, since = status.load, status.seconds_since_heartbeat
    return [
        Cell(status.pop.name),
        Cell(status.pop.region),
        Cell(status.health.value, status.health.value),
        Cell(f"{status.score:.2f}" if load is not None else NONE),
        Cell(str(load.requests) if load is not None else NONE),
        Cell(str(load.transfers) if load is not None else NONE),
        Cell(_size(load.backlog_bytes) if load is not None else NONE),
        Cell(f"{_duration(since)} ago" if since is not None
             else "not since the coordinator started"),
        Cell(status.pop.public_url),
    ]


def _file_row(record: FileRecord, now: float) -> list[Cell]:
    return [
        Cell(record.handle),
        Cell(record.status.value, record.status.value.lower().replace(" ", "-")),
        Cell(record.pop),
        Cell(_short(record.filename)),
        Cell(_size(record.size)),
        Cell(record.apikey),
        Cell(f"{_when(record.uploaded)} ({_duration(now - record.uploaded)} ago)"),
    ]


def _delivery_row(entry: OutboxEntry, now: float) -> list[Cell]:
    if entry.abandoned:
        due = Cell("abandoned", "failed")
    elif entry.next_attempt <= now:
        due = Cell("now")
    else:
        due = Cell(f"in {_duration(entry.next_attempt - now)}")
    return [
        Cell(str(entry.id)),
        Cell(entry.action),
        Cell(_short(entry.endpoint)),
        Cell(entry.apikey),
        Cell(str(entry.attempts)),
        due,
        Cell(_short(entry.last_error or NONE)),
        Cell(f"{_when(entry.created)} ({_duration(now - entry.created)} ago)"),
    ]


def _at_least(shown: int) -> str:
    return f"{shown}+" if shown >= ROWS else str(shown)


def _cut_note(shown: int, total: int | None = None) -> str:
    if total is not None and total > shown:
        return f"the first {shown} of {total}"
    return f"the latest {shown}; there may be more" if shown >= ROWS else ""


def _short(text: str) -> str:
    return text if len(text) <= LONGEST_TEXT else text[:LONGEST_TEXT - 1] + "…"


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
