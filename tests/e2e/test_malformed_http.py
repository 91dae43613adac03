"""Malformed and stalled HTTP against a real coordinator and POP, over raw sockets.

A corpus of requests no client should send (broken request lines, oversized or too many
headers, bad Content-Lengths, bad chunk framing) and of requests that stop halfway (in the
header block, or in a body of each kind a POP or the coordinator reads). Whatever comes,
nothing answers 5xx, every answer is cin's JSON error (msgpack on the internal RPC, as
there), a stalled header is closed and a stalled body answered 408 within the configured
time, and neither process logs anything at ERROR. Then: the connection cap, and the
keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from support import APIKEY, APP_SECRET, CinProcess, config_data, write_config
from yarl import URL

from common.protocol import wire

pytestmark = pytest.mark.e2e

HEADER = 0.5
BODY_IDLE = 0.5
KEEP_ALIVE = 3.0
# Above what the other tests hold at once (the stalled bodies all go at the same time).
MAX_CONNECTIONS = 40
# What a loaded machine may add to a timeout before the answer (or the close) arrives.
SLACK = 2.0
KEY = f"key={APIKEY}"
BASIC = "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()


@dataclass
class Network:
    coordinator: CinProcess
    pop: CinProcess
    ports: dict[str, int]

    def logged_errors(self) -> list[str]:
        return [line for process in (self.coordinator, self.pop) for line in process.lines
                if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("malformed")
    data = config_data(root, timeouts={"header": HEADER, "body_idle": BODY_IDLE,
                                       "keep_alive": KEEP_ALIVE})
    data["max_connections"] = MAX_CONNECTIONS
    config = write_config(data, root / "cin.yaml")
    coordinator = CinProcess(["coordinator", "-c", str(config)], root).wait_ready()
    pop = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"], root)
    try:
        pop.wait_ready()
        ports = {"coordinator": int(data["coordinator"]["listen"].rsplit(":", 1)[1]),
                 "pop": int(data["pops"][0]["listen"].rsplit(":", 1)[1])}
        yield Network(coordinator, pop, ports)
    finally:
        pop.stop()
        coordinator.stop()


@pytest.fixture(autouse=True)
def nothing_logged_at_error(network: Network) -> Iterator[None]:
    yield
    time.sleep(0.2)  # the last lines of the test's requests
    assert network.logged_errors() == []


@dataclass
class Answer:
    status: int | None  # None: closed without an answer
    headers: dict[str, str]
    body: bytes
    seconds: float  # until the answer came, or the connection closed without one
    closed: bool  # closed by the server within the wait


async def exchange(port: int, sent: bytes, *, then: bytes = b"",
                   wait: float = 10.0) -> Answer:
    """Send `sent` (and `then`, a moment later), and read one answer, if one comes, and
    whether the server then closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    status, headers, body, closed = None, {}, b"", False
    seconds = wait
    try:
        writer.write(sent)
        if then:
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(then)
        async with asyncio.timeout(wait):
            line = await reader.readline()  # b"" if closed without an answer
            if line:
                status = int(line.split()[1])
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            seconds = time.monotonic() - began
        async with asyncio.timeout(1.0):  # a close that follows the answer comes at once
            closed = await reader.read(1) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        pass
    finally:
        writer.close()
    return Answer(status, headers, body, seconds, closed)


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: cin", *headers]
    return "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + body


def form(text: bytes) -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="fileUpload"; filename="f"\r\n'
            b"\r\n" + text)


# (name, where, what is sent at once, what is sent 0.3 s later)
MALFORMED: list[tuple[str, str, bytes, bytes]] = [
    ("not HTTP", "pop", b"GARBAGE\r\n\r\n", b""),
    ("binary", "pop", bytes(range(256)) * 4, b""),
    ("NUL in the method", "pop", b"G\x00T / HTTP/1.1\r\nHost: cin\r\n\r\n", b""),
    ("unknown version", "pop", b"GET /health HTTP/9.9\r\nHost: cin\r\n\r\n", b""),
    ("request line too long", "pop", request("GET", "/" + "a" * 10000), b""),
    ("header too long", "pop", request("GET", "/health", "X-Big: " + "a" * 10000), b""),
    ("too many headers", "pop",
     request("GET", "/health", *(f"X-H{i}: v" for i in range(200))), b""),
    ("header without a colon", "pop", request("GET", "/health", "NoColonHere"), b""),
    ("space in a header name", "pop", request("GET", "/health", "Bad Name: x"), b""),
    ("folded header", "pop", request("GET", "/health", "X-A: 1", " folded"), b""),
    ("Content-Length not a number", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Content-Length: abc", body=b"hello"), b""),
    ("negative Content-Length", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Content-Length: -1", body=b"hello"), b""),
    ("two Content-Lengths", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Content-Length: 5", "Content-Length: 6",
             body=b"hello"), b""),
    ("Content-Length and chunked", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Content-Length: 5",
             "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"), b""),
    ("unknown transfer coding", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: bogus",
             body=b"hello"), b""),
    ("bad chunk size", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: chunked",
             body=b"zz\r\nhello\r\n0\r\n\r\n"), b""),
    ("huge chunk size", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: chunked",
             body=b"ffffffffffffffffffff\r\nhello\r\n"), b""),
    ("bad chunk while the body is read", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: chunked",
             body=b"5\r\nhello\r\n"), b"zz\r\nmore\r\n0\r\n\r\n"),
    ("chunk data overrunning its size", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: chunked",
             body=b"5\r\nhello"), b"-and-more-than-five\r\n0\r\n\r\n"),
    ("bad chunk after the answer", "pop",
     request("POST", "/api/store/S3", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n"),
     b"zz\r\n0\r\n\r\n"),
    ("truncated gzip framing", "pop",
     request("POST", f"/api/store/S3?{KEY}", "Content-Encoding: gzip",
             "Content-Length: 10", body=b"not gzip!!"), b""),
    ("not HTTP", "coordinator", b"GARBAGE\r\n\r\n", b""),
    ("too many headers", "coordinator",
     request("GET", "/health", *(f"X-H{i}: v" for i in range(200))), b""),
    ("header too long", "coordinator",
     request("GET", "/health", "X-Big: " + "a" * 10000), b""),
    ("bad chunk to the RPC", "coordinator",
     request("POST", "/internal/v1/rpc", "Transfer-Encoding: chunked",
             body=b"zz\r\n0\r\n\r\n"), b""),
]


@pytest.mark.parametrize(("name", "where", "sent", "then"), MALFORMED,
                         ids=[f"{case[1]}: {case[0]}" for case in MALFORMED])
async def test_malformed_http_gets_a_json_4xx(network: Network, name: str, where: str,
                                              sent: bytes, then: bytes) -> None:
    answer = await exchange(network.ports[where], sent, then=then)
    assert answer.status is not None, f"no answer to {name}"
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    if answer.headers.get("content-type", "").startswith(wire.CONTENT_TYPE):
        reply = wire.decode(answer.body)
        assert isinstance(reply, wire.ErrorReply), reply
    else:
        assert answer.headers["content-type"].startswith("application/json"), answer
        body = json.loads(answer.body)
        assert set(body) == {"error", "code"}, body
    assert answer.headers.get("x-request-id")


async def stalled_body_cases(network: Network) -> list[tuple[str, str, bytes]]:
    """A request of every kind that carries a body, each stopping partway."""
    pop_url = f"http://127.0.0.1:{network.ports['pop']}"
    async with aiohttp.ClientSession(pop_url) as session:
        async with session.post("/api/store/S3", params={"key": APIKEY},
                                data=b"an existing file") as stored:
            handle = (await stored.json())["handle"]
        chunk = b"c" * 1000
        md5 = base64.b64encode(hashlib.md5(chunk).digest()).decode()
        ids = {"apikey": APIKEY, "store": {"location": "s3"}}
        async with session.post("/multipart/start", json={
                **ids, "filename": "f.bin", "size": len(chunk)}) as started:
            ids["upload_id"] = (await started.json())["upload_id"]
        async with session.post("/multipart/upload", json={
                **ids, "part": 1, "size": len(chunk), "md5": md5}) as target:
            part_url = URL((await target.json())["url"]).raw_path_qs
    json_start = b'{"apikey": "' + APIKEY.encode()
    return [
        ("pop", "raw store, nothing of the body",
         request("POST", f"/api/store/S3?{KEY}", "Content-Length: 100")),
        ("pop", "raw store, part of the body",
         request("POST", f"/api/store/S3?{KEY}", "Content-Length: 100", body=b"x" * 40)),
        ("pop", "raw store over 8 KiB",
         request("POST", f"/api/store/S3?{KEY}", "Content-Length: 100000",
                 body=b"x" * 20000)),
        ("pop", "chunked store", request("POST", f"/api/store/S3?{KEY}",
                                         "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n")),
        ("pop", "chunked store inside a chunk",
         request("POST", f"/api/store/S3?{KEY}", "Transfer-Encoding: chunked",
                 body=b"100\r\nhello")),
        ("pop", "base64 store", request("POST", f"/api/store/S3?{KEY}&base64decode=true",
                                        "Content-Length: 100", body=b"aGVsbG8=")),
        ("pop", "form before its first part",
         request("POST", f"/api/store/S3?{KEY}", "Content-Type: multipart/form-data; "
                 "boundary=b", "Content-Length: 1000", body=b"--b\r\nContent-Dispo")),
        ("pop", "form inside its file",
         request("POST", f"/api/store/S3?{KEY}", "Content-Type: multipart/form-data; "
                 "boundary=b", "Content-Length: 1000", body=form(b"hello"))),
        ("pop", "chunked form",
         request("POST", f"/api/store/S3?{KEY}", "Content-Type: multipart/form-data; "
                 "boundary=b", "Transfer-Encoding: chunked",
                 body=b"%x\r\n%s\r\n" % (len(form(b"hi")), form(b"hi")))),
        ("pop", "url-encoded form",
         request("POST", f"/api/store/S3?{KEY}", "Content-Type: "
                 "application/x-www-form-urlencoded", "Content-Length: 100", body=b"url=ht")),
        ("pop", "Upload API start", request("POST", "/multipart/start", "Content-Type: "
                                            "application/json", "Content-Length: 200",
                                            body=json_start)),
        ("pop", "Upload API part URL", request("POST", "/multipart/upload", "Content-Type: "
                                               "application/json", "Content-Length: 200",
                                               body=json_start)),
        ("pop", "Upload API complete, chunked",
         request("POST", "/multipart/complete", "Content-Type: application/json",
                 "Transfer-Encoding: chunked", body=b"%x\r\n%s\r\n" % (len(json_start),
                                                                      json_start))),
        ("pop", "part PUT", request("PUT", part_url, f"Content-MD5: {md5}",
                                    "Content-Length: 1000", body=chunk[:300])),
        ("pop", "overwrite", request("POST", f"/api/file/{handle}?{KEY}",
                                     f"Authorization: {BASIC}", "Content-Length: 100",
                                     body=b"new")),
        ("coordinator", "internal RPC", request("POST", "/internal/v1/rpc",
                                                "Content-Length: 100", body=b"\x84")),
        ("coordinator", "Upload API start", request("POST", "/multipart/start",
                                                    "Content-Type: application/json",
                                                    "Content-Length: 200", body=json_start)),
        ("coordinator", "overwrite relayed to a POP",
         request("POST", f"/api/file/{handle}?{KEY}", f"Authorization: {BASIC}",
                 "Content-Length: 100", body=b"new")),
    ]


async def test_every_stalled_body_is_answered_408_in_time(network: Network) -> None:
    cases = await stalled_body_cases(network)
    answers = await asyncio.gather(*(exchange(network.ports[where], sent)
                                     for where, _, sent in cases))
    for (where, name, _), answer in zip(cases, answers, strict=True):
        what = f"{where}: {name}"
        assert answer.status == 408, (what, answer)
        assert BODY_IDLE * 0.9 <= answer.seconds <= BODY_IDLE + SLACK, (what, answer)
        if answer.headers["content-type"].startswith(wire.CONTENT_TYPE):
            reply = wire.decode(answer.body)
            assert isinstance(reply, wire.ErrorReply) and reply.code == "body_timeout"
        else:
            assert json.loads(answer.body)["code"] == "body_timeout", (what, answer)
        assert answer.closed, f"{what}: the connection stays open after the 408"
    assert "POST /api/store/{provider} 408" in network.pop.output  # the access log


async def test_a_stalled_header_block_is_closed_in_time(network: Network) -> None:
    partial = b"POST /api/store/S3 HTTP/1.1\r\nHost: cin\r\nContent-"
    stalled = await exchange(network.ports["pop"], partial)
    assert (stalled.status, stalled.closed) == (None, True)
    assert HEADER * 0.9 <= stalled.seconds <= HEADER + SLACK < KEEP_ALIVE


async def test_a_header_block_trickled_line_by_line_is_closed_in_time(
        network: Network) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", network.ports["coordinator"])
    began = time.monotonic()
    try:
        writer.write(b"GET /health HTTP/1.1\r\n")
        with pytest.raises((ConnectionError, OSError)):
            async with asyncio.timeout(KEEP_ALIVE):
                while True:
                    await asyncio.sleep(HEADER / 5)
                    writer.write(b"X-Slow: loris\r\n")
                    await writer.drain()
        assert time.monotonic() - began <= HEADER + SLACK
    finally:
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_its_timeout(
        network: Network) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", network.ports["pop"])
    try:
        writer.write(request("GET", "/health"))
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        async with asyncio.timeout(KEEP_ALIVE + SLACK):
            while await reader.read(65536):
                pass  # the rest of the answer; then the close
        assert time.monotonic() - answered >= KEEP_ALIVE * 0.9
    finally:
        writer.close()


async def test_connections_past_the_cap_are_refused_until_idle_ones_time_out(
        network: Network) -> None:
    port = network.ports["pop"]
    idle = []
    for _ in range(MAX_CONNECTIONS):  # each answered once and kept alive, then idle
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        idle.append((reader, writer))
        writer.write(request("GET", "/health"))
        assert (await reader.readuntil(b"}")).startswith(b"HTTP/1.1 200")
    try:
        refused = await exchange(port, request("GET", "/health"))
        assert refused.status == 503 and refused.seconds < SLACK, refused
        assert json.loads(refused.body)["code"] == "too_many_connections"
        # The idle ones are closed at their keep-alive timeout; then there is room.
        await asyncio.sleep(KEEP_ALIVE)
        async with asyncio.timeout(SLACK):
            for reader, _ in idle:
                assert await reader.read() == b""
        served = await exchange(port, request("GET", "/health", "Connection: close"))
        assert served.status == 200, served
    finally:
        for _, writer in idle:
            writer.close()
    assert "refusing new connections with 503" in network.pop.output
