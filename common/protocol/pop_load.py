"""How busy a POP is: what it measures, and the one number the coordinator compares.

A POP reports three counts in each heartbeat:

* `requests`: the HTTP requests it is serving now. Nearly all of a POP's time goes to
  bodies arriving (parts, chunks, stores), so this is how many clients share its inbound
  bandwidth and its disk.
* `transfers`: finished parts queued for or being sent to the bucket (the outbound side).
* `backlog_bytes`: the bytes of those parts, spooled but not yet in the bucket. A deep
  backlog means a slow or failing bucket path and a filling disk, even with few parts.

`score` folds them into one number: one per stream in or out, and one per
`BACKLOG_UNIT` bytes waiting, so a POP with a deep backlog ranks behind one that is merely
busy. A part is a transfer from when it is whole in the spool (a regular part at once, an
Intelligent Ingestion part at its commit) until the bucket has it; while its bytes
arrive, they count as a request.
"""

from __future__ import annotations

from dataclasses import dataclass

# About one large part's worth of waiting work (SDKs send parts of 5-64 MiB).
BACKLOG_UNIT = 64 * 1024**2


@dataclass(frozen=True)
class PopLoad:
    requests: int = 0
    transfers: int = 0
    backlog_bytes: int = 0

    @property
    def score(self) -> float:
        return self.requests + self.transfers + self.backlog_bytes / BACKLOG_UNIT

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "transfers": self.transfers,
                "backlog_bytes": self.backlog_bytes}
