"""The path an upload's start was authorized for, read back from its key."""

from __future__ import annotations

import pytest

from common.protocol.naming import object_key
from common.protocol.upload_access import start_path


@pytest.mark.parametrize("path", [None, "/", "in/", "deep/er/folder/", "exact/key.bin",
                                  "exact_name.bin", "in/x_name.bin", "name.bin"])
def test_the_start_path_is_read_back_from_the_key(path: str | None) -> None:
    key = object_key(path, "name.bin")
    expected = (path or "").lstrip("/")
    assert start_path(key, "name.bin") == expected


def test_a_name_that_only_resembles_a_generated_one_is_the_key() -> None:
    for key in ("in/SHORT_name.bin", "in/" + "a" * 19 + "-_name.bin", "in" + "A" * 20 +
                "_name.bin", "A" * 20 + "_other.bin"):
        assert start_path(key, "name.bin") == key
