"""The SDK's resume state: its key, the file identity that guards it, its atomic write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.protocol.security import Policy, sign_policy
from sdk.credentials import Credentials
from sdk.resume import (
    SAMPLE_BYTES,
    FileIdentity,
    ResumeState,
    ResumeStore,
    file_identity,
    state_key,
)
from sdk.state_files import read_json, write_json_atomically

DEST = {"store": {"location": "s3"}, "filename": None, "mimetype": None, "tags": {}}


def test_the_key_names_the_coordinator_app_file_and_destination(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    key = state_key("http://c:1", "APP", path, DEST)
    assert key == state_key("http://c:1/", "APP", path, DEST)  # same coordinator
    assert key == state_key("http://c:1", "APP", tmp_path / "." / "a.bin", DEST)
    others = {state_key("http://c:2", "APP", path, DEST),
              state_key("http://c:1", "OTHER", path, DEST),
              state_key("http://c:1", "APP", tmp_path / "b.bin", DEST),
              state_key("http://c:1", "APP", path, {**DEST, "store": {"path": "/x/"}})}
    assert key not in others and len(others) == 4


def test_the_identity_changes_with_the_files_bytes_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    content = bytearray(os.urandom(4 * SAMPLE_BYTES))
    path.write_bytes(content)
    os.utime(path, ns=(1, 1_000_000_000))
    first = file_identity(path)
    assert first.size == len(content) and first.mtime_ns == 1_000_000_000
    assert file_identity(path) == first

    content[-1] ^= 0xFF  # same size, same mtime, a different last byte
    path.write_bytes(content)
    os.utime(path, ns=(1, 1_000_000_000))
    assert file_identity(path).fingerprint != first.fingerprint

    os.utime(path, ns=(1, 2_000_000_000))
    assert file_identity(path).mtime_ns != first.mtime_ns


def test_a_tiny_file_has_an_identity(tmp_path: Path) -> None:
    path = tmp_path / "one"
    path.write_bytes(b"x")
    assert file_identity(path).size == 1


def state(identity: FileIdentity, key: str = "k" * 32) -> ResumeState:
    return ResumeState(key=key, file="/a.bin", identity=identity, upload_id="UPLOAD123",
                       pop="us-east-1", pop_url="http://127.0.0.1:1", part_size=8 << 20)


async def test_a_state_is_found_only_for_the_same_file(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path)
    identity = FileIdentity(10, 5, "f" * 64)
    saved = state(identity)
    await store.save(saved)
    assert await store.load(saved.key, identity) == saved
    assert await store.load(saved.key, FileIdentity(10, 6, "f" * 64)) is None  # touched
    assert await store.load(saved.key, FileIdentity(11, 5, "f" * 64)) is None  # grown
    assert await store.load("other", identity) is None
    await store.remove(saved.key)
    assert await store.load(saved.key, identity) is None
    await store.remove(saved.key)  # removing twice is fine


async def test_a_state_of_another_version_or_damaged_starts_afresh(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path)
    identity = FileIdentity(10, 5, "f" * 64)
    saved = state(identity)
    await store.save(saved)
    path = store.path(saved.key)
    path.write_text(json.dumps({**saved.to_json(), "version": 99}))
    assert await store.load(saved.key, identity) is None
    path.write_text("{truncated")
    assert await store.load(saved.key, identity) is None


def test_an_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_json_atomically(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    with pytest.raises(TypeError):
        write_json_atomically(path, {"a": object()})  # fails halfway through the dump
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_secret_signs_a_policy_cin_accepts() -> None:
    fields = Credentials(secret="s3cret").fields("read", handle="HANDLE", now=1000)
    assert fields["signature"] == sign_policy("s3cret", fields["policy"])
    policy = Policy.parse(fields["policy"])
    assert policy.handle == "HANDLE" and policy.calls == frozenset({"read"})
    assert policy.expiry == 1000 + 3600


def test_credentials_are_a_policy_and_signature_or_a_secret() -> None:
    assert Credentials().fields("read") == {}
    given = Credentials(policy="P", signature="S")
    assert given.fields("store") == {"policy": "P", "signature": "S"}
    with pytest.raises(ValueError, match="signature"):
        Credentials(policy="P")
    with pytest.raises(ValueError, match="not both"):
        Credentials(policy="P", signature="S", secret="x")
