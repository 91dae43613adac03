"""Webhook events: what a file change reports, and the outbox rows that carry it.

An event is built in the same step as the change it reports and written to the outbox in
the same transaction (see `StateStore`), so an acknowledged change is never without its
event, and an event is never sent for a change that did not commit. The outbox row's id
is the event's `id`: every retry of a delivery sends the same body, byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from common.config import AppConfig
from common.protocol.records import FileRecord

UPLOAD = "fp.upload"
OVERWRITE = "fp.overwrite"
DELETE = "fp.delete"

# The status word each action reports, as Filestack's webhooks word it.
_STATUS = {UPLOAD: "Stored", OVERWRITE: "Stored", DELETE: "Deleted"}


@dataclass(frozen=True)
class WebhookEvent:
    """One event for one endpoint, before the outbox has given it an id."""

    apikey: str
    endpoint: str  # the webhook URL; its secret is looked up in the config when sent
    action: str
    text: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Delivery:
    """A pending outbox row."""

    id: int
    apikey: str
    endpoint: str
    action: str
    text: dict[str, Any]
    created: float
    attempts: int

    def body(self) -> bytes:
        document = {"id": self.id, "action": self.action, "timestamp": int(self.created),
                    "text": self.text}
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def event_text(action: str, record: FileRecord, file_url: str) -> dict[str, Any]:
    text: dict[str, Any] = {
        "handle": record.handle,
        "container": record.container,
        "url": file_url,
        "filename": record.filename,
        # Filestack names where the file came from: the user's computer, or a URL.
        "client": "URL" if record.source_url else "Computer",
        "key": record.key,
        "type": record.mimetype,
        "status": _STATUS[action],
        "size": record.size,
    }
    if record.tags:
        text["upload_tags"] = dict(record.tags)
    return text


def file_events(app: AppConfig | None, action: str, record: FileRecord, file_url: str,
                now: float) -> list[WebhookEvent]:
    """The events `action` on `record` sends: one per endpoint subscribed to it."""
    if app is None:
        return []
    text = event_text(action, record, file_url)
    return [WebhookEvent(apikey=app.apikey, endpoint=hook.url, action=action, text=text,
                         created=now)
            for hook in app.webhooks if action in hook.actions]
