"""Who may go on with an Upload API upload after its start.

The start is authorized as a store (common/protocol/upload_start.py). After it:

* `complete` and `status` act on the file as a whole (complete makes it a file, status
  tells what of it is stored), so they need the same credentials as the start: a policy
  that allows `store` or `pick` for the file's path and container (and its size), or the
  app secret. Both Filestack SDKs send the start's policy with complete.
* `upload` (a part URL) and `commit` rely on the upload id, which only the client that
  started the upload knows, and the part PUT on the URL cin signed for it; filestack-js
  sends its policy with them too, filestack-python does not. Credentials that come are
  checked all the same: a bad policy is never quietly ignored.

All of it is for the app's security mode to decide: an app with optional security lets
a client without credentials go on.
"""

from __future__ import annotations

from common.config import AppConfig
from common.protocol.naming import HANDLE_LENGTH, is_handle
from common.protocol.records import FileRecord
from common.protocol.security import Action, Credentials, Grant, authorize


def authorize_upload(app: AppConfig, creds: Credentials, record: FileRecord) -> Grant:
    """The credentials a `complete` or `status` of this upload's file needs."""
    grant = authorize(app, creds, Action.store(path=start_path(record.key, record.filename),
                                               container=record.container))
    grant.check_size(record.size)
    return grant


def check_sent(app: AppConfig, creds: Credentials, record: FileRecord) -> None:
    """`upload` and `commit`: credentials are not needed, but those sent must be good."""
    if creds.present:
        authorize_upload(app, creds, record)


def start_path(key: str, filename: str) -> str:
    """The `path` the start gave, as its policy was checked against: a folder (or "" for
    none) when the key is that folder and a generated `<id>_<filename>`, else the key.

    common/protocol/naming.py's `object_key`, read backwards: the key is all a file keeps
    of its path."""
    suffix = "_" + filename
    if key.endswith(suffix):
        stem = key[:-len(suffix)]
        folder, unique = stem[:-HANDLE_LENGTH], stem[-HANDLE_LENGTH:]
        if is_handle(unique) and (folder == "" or folder.endswith("/")):
            return folder
    return key
