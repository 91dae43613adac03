"""The S3 driver reads S3's service model from botocore's data files once per process,
not once per client: every storage location, region lookup and restart of an app opens a
client, and parsing the model costs each a tenth of a second of CPU."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.loaders import JSONFileLoader

from common.storage._s3 import s3_client
from common.storage.drivers import S3Settings


async def test_a_second_client_reads_no_model_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", addressing_style="path")
    async with s3_client(settings, "us-east-1"):
        pass  # the first client of the process may read them
    read: list[str] = []
    load_file = JSONFileLoader.load_file

    def counted(self: JSONFileLoader, file_path: str) -> Any:
        read.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counted)
    for region in ("us-east-1", "eu-west-1"):
        async with s3_client(settings, region):
            pass
    assert read == []
