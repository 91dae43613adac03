"""How a new file is named, the same way for a file stored whole (NewStore)
and for an upload in parts (StartUpload)."""

from __future__ import annotations

from typing import Any

from common.protocol.file_status import FileStatus
from common.protocol.naming import is_handle, new_handle
from common.protocol.new_files import NewStore, new_file_record
from common.protocol.wire import StartUpload

COMMON: dict[str, Any] = {"apikey": "KEY", "storage": "bucket", "provider": "s3", "container": "c",
          "path": "in/cat.png", "filename": "C:\\Users\\me\\cat\x07.png", "mimetype": "image/png",
          "size": 10, "access": "public", "region": "eu-west-1"}


def test_a_stored_file_and_an_upload_are_named_alike() -> None:
    whole = new_file_record(NewStore(pop="us-east-1", source_url="http://x/a",
                                     tags={"user": "42"}, **COMMON),
                            handle=new_handle(), pop="us-east-1", now=5.0)
    parts = new_file_record(StartUpload(origin="o2", fii=False, pop=None, **COMMON),
                            handle=new_handle(), pop="eu-west-1", now=6.0)
    for record in (whole, parts):
        assert is_handle(record.handle)
        assert (record.filename, record.key) == ("cat.png", "in/cat.png")  # path is the key
        assert (record.apikey, record.storage, record.provider, record.container,
                record.mimetype, record.size, record.access, record.region) == (
            "KEY", "bucket", "s3", "c", "image/png", 10, "public", "eu-west-1")
        assert (record.status, record.version, record.etag, record.hashes) == (
            FileStatus.STARTED, 1, None, None)
    assert whole.handle != parts.handle
    assert (whole.pop, whole.uploaded, whole.source_url, whole.tags) == (
        "us-east-1", 5.0, "http://x/a", {"user": "42"})
    # An upload's tags come with its complete; the POP is the one chosen for it.
    assert (parts.pop, parts.uploaded, parts.source_url, parts.tags) == (
        "eu-west-1", 6.0, None, {})
