"""Security over HTTP: policies, signatures and basic auth on the store and File API routes.

The decisions are unit-tested in tests/unit/test_security.py; here every way a client
carries credentials (query, CDN `security=` segment, basic auth) reaches those decisions
through real routes, and every refusal is a 403 JSON naming what was wrong.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import (
    APIKEY,
    APP_SECRET,
    SECURE_APIKEY,
    SECURE_SECRET,
    Network,
    shipped,
    sqlite_state,
    start_network,
)

from common.protocol.security import encode_policy, sign_policy
from common.storage.drivers import LocalSettings, settings_of

Client = TestClient[web.Request, web.Application]
HOUR = 3600


def signed(secret: str = SECURE_SECRET, **fields: Any) -> dict[str, str]:
    """Query parameters carrying a policy (python form) signed with `secret`."""
    fields.setdefault("expiry", int(time.time()) + HOUR)
    text = encode_policy(fields)
    return {"policy": text, "signature": sign_policy(secret, text)}


def basic(secret: str, user: str = "app") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def refused(response: aiohttp.ClientResponse, code: str, *naming: str,
                  status: int = 403) -> str:
    """Assert a JSON error with this status and code whose text names each of `naming`."""
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body
    for word in naming:
        assert word in body["error"], body
    return str(body["error"])


async def store(network: Network, data: Any = b"secret bytes", *, apikey: str = SECURE_APIKEY,
                creds: dict[str, str] | None = None, **params: str) -> dict[str, Any]:
    if creds is None and apikey == SECURE_APIKEY:
        creds = signed(call=["store"])
    response = await network.pop.post("/api/store/S3", data=data,
                                      params={"key": apikey, **(creds or {}), **params})
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


def count_files(network: Network) -> int:
    with sqlite3.connect(sqlite_state(network.config)) as db:
        (count,) = db.execute("SELECT count(*) FROM files").fetchone()
    return int(count)


def bucket_objects(network: Network) -> list[Path]:
    root = settings_of(network.config.storage["bucket"], LocalSettings).root
    return sorted(p for p in root.rglob("*") if p.is_file())


def segment(creds: dict[str, str], *, long: bool = False, reverse: bool = False) -> str:
    """A CDN `security=` path segment for these credentials."""
    p, s = ("policy", "signature") if long else ("p", "s")
    parts = [f"{p}:{creds['policy']}", f"{s}:{creds['signature']}"]
    return "security=" + ",".join(reversed(parts) if reverse else parts)


# ------------------------------------------------------------------- store, secure app


async def test_secure_store_needs_a_valid_policy(network: Network) -> None:
    url = "/api/store/S3"
    response = await network.pop.post(url, params={"key": SECURE_APIKEY}, data=b"x")
    await refused(response, "security_required")

    reply = await store(network, b"allowed", creds=signed(call=["store"]))
    assert reply["size"] == 7
    # `pick` allows a store as well, and so does a policy with no `call`.
    assert (await store(network, b"p", creds=signed(call=["pick"])))["size"] == 1
    assert (await store(network, b"any", creds=signed()))["size"] == 3

    forged = signed(call=["store"])
    forged["signature"] = sign_policy("not-the-secret", forged["policy"])
    response = await network.pop.post(url, params={"key": SECURE_APIKEY, **forged}, data=b"x")
    await refused(response, "bad_signature")

    # A policy signed for the other app is just as forged.
    other_app = signed(APP_SECRET, call=["store"])
    response = await network.pop.post(url, params={"key": SECURE_APIKEY, **other_app},
                                      data=b"x")
    await refused(response, "bad_signature")

    expired = signed(call=["store"], expiry=int(time.time()) - 10)
    response = await network.pop.post(url, params={"key": SECURE_APIKEY, **expired}, data=b"x")
    await refused(response, "policy_expired", "expiry")

    read_only = signed(call=["read"])
    response = await network.pop.post(url, params={"key": SECURE_APIKEY, **read_only},
                                      data=b"x")
    await refused(response, "policy_denies", "call", "'store'")


async def test_secure_store_with_basic_auth(network: Network) -> None:
    response = await network.pop.post("/api/store/S3", params={"key": SECURE_APIKEY},
                                      data=b"by secret", headers=basic(SECURE_SECRET))
    assert response.status == 200, await response.text()
    assert (await response.json())["size"] == 9
    response = await network.pop.post("/api/store/S3", params={"key": SECURE_APIKEY},
                                      data=b"x", headers=basic("wrong-secret"))
    await refused(response, "bad_credentials")


async def test_policy_path_regex(network: Network) -> None:
    creds = signed(call=["store"], path="uploads/.*")
    reply = await store(network, b"in uploads", creds=creds, path="uploads/a.txt")
    assert reply["key"] == "uploads/a.txt"
    response = await network.pop.post(
        "/api/store/S3", data=b"x",
        params={"key": SECURE_APIKEY, "path": "other/a.txt", **creds})
    await refused(response, "policy_denies", "path", "other/a.txt")
    # Leaving the path out does not dodge a policy bound to a folder.
    response = await network.pop.post("/api/store/S3", data=b"x",
                                      params={"key": SECURE_APIKEY, **creds})
    await refused(response, "policy_denies", "path")
    # The pattern meets the path as the key has it: a leading '/' changes nothing.
    reply = await store(network, b"slashed", creds=creds, path="/uploads/b.txt")
    assert reply["key"] == "uploads/b.txt"


async def test_policy_container_regex(network: Network) -> None:
    default = network.config.storage["bucket"].container
    other = f"{default}-other"
    creds = signed(call=["store"], container=f"{default}-oth.*")
    reply = await store(network, b"other container", creds=creds, container=other)
    assert reply["container"] == other
    # The default container is matched too when the request names none.
    response = await network.pop.post("/api/store/S3", data=b"x",
                                      params={"key": SECURE_APIKEY, **creds})
    await refused(response, "policy_denies", "container", default)
    response = await network.pop.post("/api/store/S3", data=b"x",
                                      params={"key": SECURE_APIKEY, "container": default,
                                              **creds})
    await refused(response, "policy_denies", "container")


async def test_policy_url_regex_for_store_from_url(network: Network) -> None:
    hits: list[str] = []

    async def source(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"fetched bytes", content_type="text/plain")

    origin = web.Application()
    origin.router.add_get("/{name:.*}", source)
    async with TestServer(origin, host="127.0.0.1") as server:
        creds = signed(call=["store"], url=r"http://127\.0\.0\.1:\d+/ok/.*")
        good = str(server.make_url("/ok/file.txt"))
        reply = await store(network, {"url": good}, creds=creds)
        assert (reply["size"], reply["filename"]) == (13, "file.txt")
        assert hits == ["/ok/file.txt"]

        bad = str(server.make_url("/elsewhere/file.txt"))
        response = await network.pop.post("/api/store/S3", data={"url": bad},
                                          params={"key": SECURE_APIKEY, **creds})
        await refused(response, "policy_denies", "url", "/elsewhere/file.txt")
        assert hits == ["/ok/file.txt"]  # refused before anything was fetched

        # maxSize holds for fetched bytes too.
        small = signed(call=["store"], maxSize=5)
        response = await network.pop.post("/api/store/S3", data={"url": good},
                                          params={"key": SECURE_APIKEY, **small})
        await refused(response, "policy_denies", "maxSize")


async def test_a_catastrophic_policy_regex_does_not_stall_the_pop(network: Network) -> None:
    """`(a+)+$` against 26 a's and a b: about 4 s of Python's backtracking `re`, during
    which the POP's event loop answered nobody. Matched by RE2, it is refused at once and
    a request beside it is answered as promptly."""
    text = "a" * 26 + "b"

    async def refuse(data: Any, creds: dict[str, str], **params: str) -> None:
        response = await network.pop.post("/api/store/S3", data=data,
                                          params={"key": SECURE_APIKEY, **creds, **params})
        await refused(response, "policy_denies")

    async def health() -> None:
        assert (await network.pop.get("/health")).status == 200

    started = time.monotonic()
    await asyncio.gather(
        refuse(b"x", signed(call=["store"], path="(a+)+$"), path=text),
        health(),
        refuse({"url": f"http://{text}/"}, signed(call=["store"], url="http://(a+)+$/")),
        health())
    assert time.monotonic() - started < 1.0
    response = await network.pop.post("/api/store/S3", data=b"x", params={
        "key": SECURE_APIKEY, **signed(call=["store"], path="(?=a).*")})
    await refused(response, "bad_policy", "path", "RE2")


async def test_policy_max_size_is_enforced_while_streaming(network: Network) -> None:
    creds = signed(call=["store"], maxSize=100_000)
    files_before = count_files(network)
    objects_before = bucket_objects(network)
    sent = 0

    async def endless_body() -> AsyncIterator[bytes]:
        # Twice the policy's maxSize, then the body never ends: only a server that counts
        # bytes as they arrive can answer.
        nonlocal sent
        for _ in range(4):
            sent += 50_000
            yield b"\0" * 50_000
        await asyncio.Event().wait()

    response = await asyncio.wait_for(network.pop.post(
        "/api/store/S3", params={"key": SECURE_APIKEY, **creds}, data=endless_body()), 20)
    await refused(response, "policy_denies", "maxSize", "100000")
    response.close()
    assert count_files(network) == files_before
    assert bucket_objects(network) == objects_before
    staging = network.config.pops[0].spool_dir / "incoming"
    assert list(staging.iterdir()) == []

    # A multipart form over maxSize, and the exact maxSize, which is allowed.
    form = aiohttp.FormData()
    form.add_field("fileUpload", b"\1" * 100_001, filename="big.bin")
    response = await network.pop.post("/api/store/S3", data=form,
                                      params={"key": SECURE_APIKEY, **creds})
    await refused(response, "policy_denies", "maxSize")
    assert (await store(network, b"\1" * 100_000, creds=creds))["size"] == 100_000
    await shipped(network)  # the coordinator records the store once it hears of it
    assert count_files(network) == files_before + 1


async def test_policy_min_size(network: Network) -> None:
    creds = signed(call=["store"], minSize=100)
    files_before = count_files(network)
    response = await network.pop.post("/api/store/S3", data=b"x" * 99,
                                      params={"key": SECURE_APIKEY, **creds})
    await refused(response, "policy_denies", "minSize", "99")
    assert count_files(network) == files_before
    assert (await store(network, b"x" * 100, creds=creds))["size"] == 100


# ------------------------------------------------------- download and metadata, secure


PAYLOAD = b"a secure file's bytes\n" * 50


async def secure_file(network: Network) -> str:
    return str((await store(network, PAYLOAD, filename="secure.txt"))["handle"])


async def downloads(client: Client, route: str, **kwargs: Any) -> bytes:
    response = await client.get(route, **kwargs)
    assert response.status == 200, (route, await response.text())
    return await response.read()


async def metadata_of(client: Client, route: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.get(route, **kwargs)
    body = await response.json()
    assert response.status == 200, (route, body)
    return dict(body)


async def test_secure_download_and_metadata_by_query_and_segment(network: Network) -> None:
    handle = await secure_file(network)
    read = signed(call=["read"], handle=handle)
    stat = signed(call=["stat"], handle=handle)
    for client in (network.pop, network.coordinator):
        for route in (f"/api/file/{handle}", f"/{handle}", f"/{SECURE_APIKEY}/{handle}"):
            await refused(await client.get(route), "security_required")
            assert await downloads(client, route, params=read) == PAYLOAD
        for route in (f"/{segment(read)}/{handle}",
                      f"/{segment(read, long=True)}/{handle}",
                      f"/{segment(read, long=True, reverse=True)}/{handle}",
                      f"/{SECURE_APIKEY}/{segment(read)}/{handle}",
                      # the js form: /{apikey}/security=signature:..,policy:../{handle}
                      f"/{SECURE_APIKEY}/{segment(read, long=True, reverse=True)}/{handle}"):
            assert await downloads(client, route) == PAYLOAD
        for route in (f"/api/file/{handle}/metadata", f"/{handle}/metadata"):
            await refused(await client.get(route), "security_required")
            meta = await metadata_of(client, route, params=stat)
            assert (meta["size"], meta["filename"]) == (len(PAYLOAD), "secure.txt")
        meta = await metadata_of(client, f"/{segment(stat)}/{handle}/metadata")
        assert meta["size"] == len(PAYLOAD)
        meta = await metadata_of(client, f"/{segment(stat, long=True)}/{handle}/metadata")
        assert meta["size"] == len(PAYLOAD)


async def test_every_credential_beside_a_segment_is_checked(network: Network) -> None:
    handle = await secure_file(network)
    read = signed(call=["read"], handle=handle)
    route = f"/{segment(read)}/{handle}"
    await refused(await network.pop.get(route, headers=basic("not-the-secret")),
                  "bad_credentials")
    await refused(await network.pop.get(route, headers={"Authorization": "Bearer x"}),
                  "bad_credentials")
    other = signed(call=["read", "stat"], handle=handle)
    await refused(await network.pop.get(route, params=other), "bad_policy", "different")
    assert await downloads(network.pop, route, params=read) == PAYLOAD  # the same one
    assert await downloads(network.pop, route, headers=basic(SECURE_SECRET)) == PAYLOAD


def standard_alphabet_policy(handle: str) -> dict[str, str]:
    """A filestack-js style policy (standard alphabet, insertion order, no spaces) whose
    text holds both `/` and `+`, signed with the secure app's secret."""
    expiry = int(time.time()) + HOUR
    # `?` and `>` encode as `/` and `+` when they end a 3-byte group: shift them about.
    for shift in range(9):
        fields = {"expiry": expiry, "call": ["read", "stat"], "handle": handle,
                  "note": "x" * (shift % 3) + "?" + "y" * (shift // 3) + ">"}
        raw = json.dumps(fields, separators=(",", ":")).encode()
        text = base64.b64encode(raw).decode()
        if "/" in text and "+" in text:
            return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}
    raise AssertionError("no standard-alphabet policy with both '/' and '+'")


async def test_standard_alphabet_policy_with_slash_and_plus(network: Network) -> None:
    handle = await secure_file(network)
    creds = standard_alphabet_policy(handle)
    for client in (network.pop, network.coordinator):
        # In a path segment the `/` splits segments and the `+` is literal.
        for route in (f"/{segment(creds)}/{handle}",
                      f"/{segment(creds, long=True, reverse=True)}/{handle}",
                      f"/{SECURE_APIKEY}/{segment(creds, long=True, reverse=True)}/{handle}"):
            assert await downloads(client, route) == PAYLOAD
        meta = await metadata_of(client, f"/{segment(creds)}/{handle}/metadata")
        assert meta["size"] == len(PAYLOAD)
        # In the query, percent-encoded (yarl writes `+` as %2B)...
        assert await downloads(client, f"/api/file/{handle}", params=creds) == PAYLOAD
        # ...and with a bare `+`, which form decoding turns into a space.
        bare = f"/api/file/{handle}?policy={creds['policy']}&signature={creds['signature']}"
        assert "+" in bare
        assert await downloads(client, bare) == PAYLOAD
        bare_meta = f"/{handle}/metadata?policy={creds['policy']}&signature={creds['signature']}"
        assert (await metadata_of(client, bare_meta))["size"] == len(PAYLOAD)
        # One flipped bit of the policy is a different text: its signature no longer holds.
        tampered = dict(creds, policy=creds["policy"].replace("+", "/", 1))
        await refused(await client.get(f"/{segment(tampered)}/{handle}"), "bad_signature")


async def test_basic_auth_on_the_file_api(network: Network) -> None:
    handle = await secure_file(network)
    for client in (network.pop, network.coordinator):
        assert await downloads(client, f"/{handle}", headers=basic(SECURE_SECRET)) == PAYLOAD
        meta = await metadata_of(client, f"/{handle}/metadata", headers=basic(SECURE_SECRET))
        assert meta["size"] == len(PAYLOAD)
        # The app secret allows EXIF too.
        meta = await metadata_of(client, f"/{handle}/metadata", params={"exif": "true"},
                                 headers=basic(SECURE_SECRET))
        assert meta == {"exif": None}
        await refused(await client.get(f"/{handle}", headers=basic(APP_SECRET)),
                      "bad_credentials")
        await refused(await client.get(f"/{handle}", headers=basic(SECURE_SECRET, "user")),
                      "bad_credentials")
        # A wrong secret is refused even with a good policy beside it.
        await refused(await client.get(f"/{handle}", params=signed(call=["read"]),
                                       headers=basic("wrong-secret")), "bad_credentials")


async def test_policy_bound_to_another_handle(network: Network) -> None:
    handle = await secure_file(network)
    other = await secure_file(network)
    creds = signed(call=["read", "stat"], handle=other)
    for client in (network.pop, network.coordinator):
        await refused(await client.get(f"/{handle}", params=creds), "policy_denies",
                      "handle", other, handle)
        await refused(await client.get(f"/{segment(creds)}/{handle}"), "policy_denies",
                      "handle")
        await refused(await client.get(f"/{handle}/metadata", params=creds),
                      "policy_denies", "handle")
        assert await downloads(client, f"/{other}", params=creds) == PAYLOAD


async def test_read_and_stat_are_separate_calls(network: Network) -> None:
    handle = await secure_file(network)
    read = signed(call=["read"])
    stat = signed(call=["stat"])
    for client in (network.pop, network.coordinator):
        assert await downloads(client, f"/{handle}", params=read) == PAYLOAD
        await refused(await client.get(f"/{handle}/metadata", params=read), "policy_denies",
                      "call", "'stat'")
        await refused(await client.get(f"/api/file/{handle}/metadata", params=read),
                      "policy_denies", "call")
        assert (await metadata_of(client, f"/{handle}/metadata", params=stat))["size"] == len(
            PAYLOAD)
        await refused(await client.get(f"/{handle}", params=stat), "policy_denies", "call",
                      "'read'")
        await refused(await client.get(f"/{segment(stat)}/{handle}"), "policy_denies", "call")


async def test_exif_needs_a_policy_naming_exif(network: Network) -> None:
    handle = await secure_file(network)
    for client in (network.pop, network.coordinator):
        route = f"/{handle}/metadata"
        # No `call` key allows everything but exif; listing stat is not enough either.
        for creds in (signed(), signed(call=["stat", "read"])):
            await refused(await client.get(route, params={"exif": "true", **creds}),
                          "policy_denies", "call", "exif")
        meta = await metadata_of(client, route, params={"exif": "true", **signed(call=["exif"])})
        assert meta == {"exif": None}
        meta = await metadata_of(client, route, params={"exif": "true", "size": "true",
                                                        **signed(call=["exif"])})
        assert meta == {"exif": None, "size": len(PAYLOAD)}
        # Without asking for exif, all fields but exif come back.
        meta = await metadata_of(client, route, params=signed())
        assert "exif" not in meta and meta["size"] == len(PAYLOAD)


async def test_another_apps_apikey_is_not_found(network: Network) -> None:
    handle = await secure_file(network)
    read = signed(call=["read"])
    for client in (network.pop, network.coordinator):
        for route in (f"/{APIKEY}/{handle}", f"/{APIKEY}/{segment(read)}/{handle}",
                      f"/OTHERAPIKEY000000000/{handle}"):
            await refused(await client.get(route, params=read), "file_not_found", status=404)
        await refused(await client.get(f"/api/file/{handle}", params={"key": APIKEY, **read}),
                      "file_not_found", status=404)
        assert await downloads(client, f"/api/file/{handle}",
                               params={"key": SECURE_APIKEY, **read}) == PAYLOAD


# --------------------------------------------------------------------- the optional app


async def test_optional_app_is_open_but_checks_what_it_is_given(network: Network) -> None:
    reply = await store(network, b"open file", apikey=APIKEY)
    handle = reply["handle"]
    forged = signed(APP_SECRET, call=["store", "read", "stat"])
    forged["signature"] = sign_policy("not-the-secret", forged["policy"])
    response = await network.pop.post("/api/store/S3", data=b"x",
                                      params={"key": APIKEY, **forged})
    await refused(response, "bad_signature")
    for client in (network.pop, network.coordinator):
        assert await downloads(client, f"/{handle}") == b"open file"
        assert (await metadata_of(client, f"/{handle}/metadata"))["size"] == 9
        await refused(await client.get(f"/{handle}", params=forged), "bad_signature")
        await refused(await client.get(f"/{segment(forged)}/{handle}"), "bad_signature")
        await refused(await client.get(f"/{handle}/metadata", params=forged), "bad_signature")
        await refused(await client.get(f"/{handle}", headers=basic("wrong")), "bad_credentials")
        # EXIF is never open, even on an optional app.
        await refused(await client.get(f"/{handle}/metadata", params={"exif": "true"}),
                      "security_required")
        # A valid policy for the optional app still limits what it allows.
        await refused(await client.get(f"/{handle}", params=signed(APP_SECRET, call=["stat"])),
                      "policy_denies", "call")
        # The secure app's secret is not this app's.
        await refused(await client.get(f"/{handle}", params=signed(call=["read"])),
                      "bad_signature")


# ---------------------------------------------------------------- hostile security input


def signed_text(text: str) -> dict[str, str]:
    return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}


async def test_hostile_security_input_is_a_403_json(network: Network) -> None:
    handle = await secure_file(network)
    b64 = base64.urlsafe_b64encode
    cases: list[tuple[dict[str, str], str, tuple[str, ...]]] = [
        # (query, code, words in the error)
        (signed_text("!!!garbage!!!"), "bad_policy", ("policy", "base64")),
        ({"policy": "!!!garbage!!!", "signature": "0" * 64}, "bad_signature", ()),
        (signed_text(b64(b"not json {").decode()), "bad_policy", ("JSON",)),
        (signed_text(b64(b"[1, 2]").decode()), "bad_policy", ("object",)),
        (signed_text(b64(b'{"call": ["read"]}').decode()), "bad_policy", ("expiry",)),
        (signed_text(b64(b'{"expiry": 9999999999, "call": ["fly"]}').decode()), "bad_policy",
         ("call", "fly")),
        (signed_text(b64(b'{"expiry": 9999999999, "path": "("}').decode()), "bad_policy",
         ("path",)),
        (signed_text(b64(b'{"expiry": 1, "expiry": 9999999999}').decode()), "bad_policy",
         ("twice",)),
        # As long as a request line allows (8190 bytes): read, and refused, in microseconds.
        (signed_text("A" * 7900), "bad_policy", ("JSON",)),
        ({"policy": signed()["policy"], "signature": "xyz"}, "bad_signature", ("hex",)),
        ({"policy": signed()["policy"]}, "security_required", ("signature",)),
        ({"signature": "0" * 64}, "security_required", ("policy",)),
    ]
    for client in (network.pop, network.coordinator):
        for query, code, words in cases:
            for route in (f"/{handle}", f"/{handle}/metadata"):
                await refused(await client.get(route, params=query), code, *words)


async def test_a_100_kib_policy_is_refused_never_a_500(network: Network) -> None:
    """A URL this long never reaches cin's routes: aiohttp's HTTP parser refuses a request
    line over 8190 bytes with its own 400 (text, not cin's JSON). What matters is that it
    is a 4xx, and that the node goes on serving."""
    handle = await secure_file(network)
    huge = signed_text(base64.urlsafe_b64encode(b"{" + b" " * 100 * 1024 + b"}").decode())
    for client in (network.pop, network.coordinator):
        for route in (f"/{handle}", f"/{handle}/metadata"):
            response = await client.get(route, params=huge)
            assert response.status == 400, await response.text()
            assert "8190" in await response.text()
        response = await client.get(f"/{segment(huge)}/{handle}")
        assert response.status == 400
        assert await downloads(client, f"/{handle}", params=signed(call=["read"])) == PAYLOAD


async def test_malformed_security_segments(network: Network) -> None:
    handle = await secure_file(network)
    good = signed(call=["read"])
    segments = [
        f"security=p:{good['policy']}",  # no signature
        f"security=s:{good['signature']}",
        f"security=x:{good['policy']},y:{good['signature']}",
        f"security=p:{good['policy']},p:{good['policy']}",
        "security=p:,s:",
        "security=p:a,s:b,c:d",
        "security=,",
        "security=pp",
    ]
    for client in (network.pop, network.coordinator):
        for text in segments:
            response = await client.get(f"/{text}/{handle}")
            await refused(response, "bad_policy", "security")
        await refused(await client.get(f"/security=p:{good['policy']},s:{'0' * 64}/{handle}"),
                      "bad_signature")
        await refused(await client.get(f"/security=p:{good['policy']},s:zz/{handle}"),
                      "bad_signature", "hex")


async def test_non_basic_authorization_headers(network: Network) -> None:
    handle = await secure_file(network)
    headers = [
        ("Bearer abc.def.ghi", "Basic"),
        ("Digest username=app", "Basic"),
        ("Basic !!!not-base64!!!", "base64"),
        ("Basic " + base64.b64encode(b"app-without-colon").decode(), "app:"),
        ("Basic " + base64.b64encode(b"app:").decode(), "app:"),
        ("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "base64"),
        ("Basic", "app:"),
    ]
    for client in (network.pop, network.coordinator):
        for value, word in headers:
            for route in (f"/{handle}", f"/{handle}/metadata"):
                response = await client.get(route, headers={"Authorization": value})
                await refused(response, "bad_credentials", word)
    response = await network.pop.post("/api/store/S3", params={"key": SECURE_APIKEY},
                                      data=b"x", headers={"Authorization": "Bearer t"})
    await refused(response, "bad_credentials")


@pytest.mark.parametrize("max_upload_size", [50_000])
async def test_the_app_limit_still_applies_under_a_larger_max_size(
        tmp_path: Path, max_upload_size: int) -> None:
    async with start_network(tmp_path, max_upload_size=max_upload_size) as network:
        creds = signed(call=["store"], maxSize=1_000_000)
        response = await network.pop.post("/api/store/S3", data=b"\0" * 60_000,
                                          params={"key": SECURE_APIKEY, **creds})
        # Over the app's own limit: too_large, not the policy's refusal.
        await refused(response, "too_large", status=413)


# ------------------------------------------------------------- the Upload API after start


async def secure_upload(network: Network, payload: bytes, *, fii: bool = False,
                        path: str = "in/") -> dict[str, Any]:
    """An upload of the secure app started with a policy for `path`, its bytes sent with
    no credentials (as filestack-python sends them): the ids to go on with."""
    start = signed(call=["store"], path="in/.*")
    response = await network.pop.post("/multipart/start", json={
        "apikey": SECURE_APIKEY, "filename": "data.bin", "size": len(payload),
        "store": {"location": "s3", "path": path}, "fii": fii, **start})
    reply = await response.json()
    assert response.status == 200, reply
    ids = {"apikey": SECURE_APIKEY, "upload_id": reply["upload_id"]}
    md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
    fields = {"part": 1, "size": len(payload), "md5": md5, **({"offset": 0, "fii": True}
                                                               if fii else {})}
    response = await network.pop.post("/multipart/upload", json={**ids, **fields})
    target = await response.json()
    assert response.status == 200, target
    async with aiohttp.ClientSession() as session, session.put(
            target["url"], data=payload, headers=target["headers"]) as put:
        assert put.status == 200, await put.text()
    if fii:
        response = await network.pop.post("/multipart/commit",
                                          json={**ids, "part": 1, "size": len(payload)})
        assert response.status == 200, await response.text()
    return ids


async def test_complete_and_status_need_the_start_s_credentials(network: Network) -> None:
    payload = b"upload api bytes"
    ids = await secure_upload(network, payload)
    complete = {**ids, "size": len(payload), "parts": []}
    # Without credentials, neither the file nor what is stored of it is anyone's business.
    await refused(await network.pop.post("/multipart/complete", json=complete),
                  "security_required", "'store'")
    for client in (network.pop, network.coordinator):
        await refused(await client.post("/multipart/status", json=ids), "security_required")
    # A policy must allow storing this file: its call, path, container and size.
    for policy, naming in ((signed(call=["read"]), ("call", "'store'")),
                           (signed(call=["store"], path="out/.*"), ("path", "in/")),
                           (signed(call=["store"], container="elsewhere"), ("container",)),
                           (signed(call=["store"], maxSize=len(payload) - 1), ("maxSize",)),
                           (signed(APP_SECRET, call=["store"]), ())):
        code = "bad_signature" if not naming else "policy_denies"
        for client, route, body in ((network.pop, "/multipart/complete", complete),
                                    (network.pop, "/multipart/status", ids),
                                    (network.coordinator, "/multipart/status", ids)):
            response = await client.post(route, json={**body, **policy})
            await refused(response, code, *naming)
    # The policy may come in the body (as the SDKs send it) or the query, or the app
    # secret by basic auth.
    allowed = signed(call=["pick"], path="in/.*", maxSize=len(payload))
    response = await network.coordinator.post("/multipart/status", json=ids, params=allowed)
    assert response.status == 200, await response.text()
    response = await network.pop.post("/multipart/status", json=ids,
                                      headers=basic(SECURE_SECRET))
    assert response.status == 200, await response.text()
    response = await network.pop.post("/multipart/complete", json={**complete, **allowed})
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["key"].startswith("in/")
    # A repeated complete is the file's too.
    await refused(await network.pop.post("/multipart/complete", json=complete),
                  "security_required")


async def test_part_urls_and_commits_check_the_credentials_they_carry(
        network: Network) -> None:
    payload = os.urandom(40_000)
    ids = await secure_upload(network, payload, fii=True)  # none sent: the upload id will do
    md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
    part = {**ids, "part": 1, "size": len(payload), "md5": md5, "offset": 0, "fii": True}
    commit = {**ids, "part": 1, "size": len(payload)}
    forged = signed(APP_SECRET, call=["store"])
    elsewhere = signed(call=["store"], path="out/.*")
    for route, body in (("/multipart/upload", part), ("/multipart/commit", commit)):
        await refused(await network.pop.post(route, json={**body, **forged}), "bad_signature")
        await refused(await network.pop.post(route, json={**body, **elsewhere}),
                      "policy_denies", "path")
        await refused(await network.pop.post(route, json=body, headers=basic("wrong")),
                      "bad_credentials")
        # As filestack-js sends them: the start's policy, which is good here too.
        response = await network.pop.post(route, json={**body,
                                                       **signed(call=["store"], path="in/")})
        assert response.status == 200, await response.text()


async def test_an_optional_app_goes_on_without_credentials_but_not_with_bad_ones(
        network: Network) -> None:
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "a.bin", "size": 3, "store": {"location": "s3"}})
    ids = {"apikey": APIKEY, "upload_id": (await response.json())["upload_id"]}
    response = await network.pop.post("/multipart/status", json=ids)
    assert response.status == 200, await response.text()
    await shipped(network)  # the coordinator knows the upload the POP started
    response = await network.coordinator.post("/multipart/status",
                                              json={**ids, **signed(call=["store"])})
    await refused(response, "bad_signature")  # signed with the other app's secret
