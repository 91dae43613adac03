"""The store-from-URL fetcher and its guard.

Every byte these tests send goes to 127.0.0.1. The forbidden destinations (10.0.0.1,
169.254.169.254, ...) appear only as URLs the guard must refuse before connecting, and a
tracing hook on the session proves no connection was even attempted.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from common.config import UrlFetchConfig
from common.protocol.errors import CinError, Code
from edge.rest.url_fetch import (
    CHUNK_SIZE,
    MAX_URL_LENGTH,
    AddressPolicy,
    FetchedSource,
    GuardedConnector,
    IPAddress,
    PinnedResolver,
    UrlFetcher,
    address_problem,
    guarded_session,
    parse_source_url,
    source_content_type,
    source_filename,
)

BLOB = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: three chunks
GZIPPED_ZEROS = gzip.compress(b"\0" * 5000)

# ------------------------------------------------------------------ the source server


@dataclass
class Source:
    """A real aiohttp server on 127.0.0.1 and what it was asked."""

    server: TestServer
    hits: list[str]
    release: asyncio.Event

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


def source_app(hits: list[str], release: asyncio.Event) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        hits.append(request.path)
        return await handler(request)

    @routes.get("/blob")
    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=BLOB, content_type="text/plain", charset="utf-8")

    @routes.get("/download")
    async def download(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-", content_type="application/pdf", headers={
            "Content-Disposition": 'attachment; filename="report.pdf"'})

    @routes.get("/download-utf8")
    async def download_utf8(request: web.Request) -> web.Response:
        return web.Response(body=b"x", headers={
            "Content-Disposition":
                "attachment; filename=\"naive.txt\"; filename*=UTF-8''na%C3%AFve%20file.txt"})

    @routes.get("/files/{name}")
    async def named(request: web.Request) -> web.Response:
        return web.Response(body=b"hello", content_type="application/octet-stream")

    @routes.get("/exact")
    async def exact(request: web.Request) -> web.Response:
        return web.Response(body=b"e" * 1000)

    @routes.get("/r/{n}")
    async def redirect_chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=b"done")
        raise web.HTTPFound(f"/r/{n - 1}")

    @routes.get("/redirect")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    @routes.get("/no-location")
    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    @routes.get("/missing")
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="nope")

    @routes.get("/stall-headers")
    async def stall_headers(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=b"late")

    @routes.get("/stall-body")
    async def stall_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100
        await response.prepare(request)
        await response.write(b"x")
        await release.wait()
        return response

    @routes.get("/declared-large")
    async def declared_large(request: web.Request) -> web.StreamResponse:
        # Headers promise 10 kB, then nothing: refusing must not wait for the body.
        response = web.StreamResponse()
        response.content_length = 10_000
        await response.prepare(request)
        await release.wait()
        return response

    @routes.get("/undeclared-large")
    async def undeclared_large(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(3):
            await response.write(b"u" * 600)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    @routes.get("/gzip")
    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=GZIPPED_ZEROS, headers={"Content-Encoding": "gzip"})

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


@pytest.fixture
async def source(aiohttp_server: AiohttpServer) -> AsyncIterator[Source]:
    hits: list[str] = []
    release = asyncio.Event()
    server = await aiohttp_server(source_app(hits, release), host="127.0.0.1")
    yield Source(server, hits, release)
    release.set()  # let stalled handlers finish so the server can shut down


# ------------------------------------------------------------------ fetchers


@dataclass
class Traffic:
    """What the client session tried: DNS lookups, connections, requests."""

    lookups: list[str] = field(default_factory=list)
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    def trace_config(self) -> aiohttp.TraceConfig:
        async def on_lookup(_: aiohttp.ClientSession, __: SimpleNamespace,
                            params: aiohttp.TraceDnsResolveHostStartParams) -> None:
            self.lookups.append(params.host)

        async def on_connection(_: aiohttp.ClientSession, __: SimpleNamespace,
                                params: aiohttp.TraceConnectionCreateStartParams) -> None:
            self.connections += 1

        async def on_request(_: aiohttp.ClientSession, __: SimpleNamespace,
                             params: aiohttp.TraceRequestStartParams) -> None:
            self.requests.append(str(params.url))

        trace = aiohttp.TraceConfig()
        trace.on_dns_resolvehost_start.append(on_lookup)
        trace.on_connection_create_start.append(on_connection)
        trace.on_request_start.append(on_request)
        return trace


MakeFetcher = Callable[..., UrlFetcher]


@pytest.fixture
async def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
async def make_fetcher(traffic: Traffic) -> AsyncIterator[MakeFetcher]:
    sessions: list[aiohttp.ClientSession] = []

    def make(policy: AddressPolicy | None = None, **settings: Any) -> UrlFetcher:
        session = guarded_session(trace_configs=[traffic.trace_config()])
        sessions.append(session)
        config = replace(UrlFetchConfig(allow_private=True, timeout=5.0), **settings)
        return UrlFetcher(config, session, policy=policy)

    yield make
    for session in sessions:
        await session.close()


async def fetch(fetcher: UrlFetcher, url: str) -> tuple[FetchedSource, list[bytes]]:
    async with fetcher.open(url) as fetched:
        chunks = [chunk async for chunk in fetched.chunks()]
    return fetched, chunks


async def refusal(fetcher: UrlFetcher, url: str) -> CinError:
    with pytest.raises(CinError) as caught:
        await fetch(fetcher, url)
    return caught.value


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ fetching


async def test_fetches_the_body_in_chunks_of_at_most_one_mib(
        source: Source, make_fetcher: MakeFetcher) -> None:
    fetched, chunks = await fetch(make_fetcher(), source.url("/blob"))
    assert b"".join(chunks) == BLOB
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    assert len(chunks) >= 3
    assert fetched.url == source.url("/blob")
    assert fetched.content_type == "text/plain"
    assert fetched.content_length == len(BLOB)
    assert fetched.filename == "blob"


async def test_filename_from_content_disposition(
        source: Source, make_fetcher: MakeFetcher) -> None:
    fetcher = make_fetcher()
    fetched, chunks = await fetch(fetcher, source.url("/download"))
    assert (fetched.filename, fetched.content_type, chunks) == (
        "report.pdf", "application/pdf", [b"%PDF-"])
    fetched, _ = await fetch(fetcher, source.url("/download-utf8"))
    assert fetched.filename == "naïve file.txt"


async def test_filename_from_the_path_and_octet_stream_is_no_type(
        source: Source, make_fetcher: MakeFetcher) -> None:
    fetched, chunks = await fetch(make_fetcher(), source.url("/files/my%20doc.txt"))
    assert chunks == [b"hello"]
    assert fetched.filename == "my doc.txt"
    assert fetched.content_type is None


async def test_follows_redirects_up_to_the_limit(
        source: Source, make_fetcher: MakeFetcher) -> None:
    fetched, chunks = await fetch(make_fetcher(max_redirects=5), source.url("/r/5"))
    assert chunks == [b"done"]
    assert fetched.url == source.url("/r/0")
    assert fetched.filename == "0"


async def test_a_redirect_chain_longer_than_the_limit_is_refused(
        source: Source, make_fetcher: MakeFetcher) -> None:
    error = await refusal(make_fetcher(max_redirects=5), source.url("/r/6"))
    assert error.code is Code.URL_UNREACHABLE
    assert error.detail == "more than 5 redirects"
    assert source.hits == [f"/r/{n}" for n in range(6, 0, -1)]  # the 7th is never asked


async def test_a_redirect_without_location(source: Source, make_fetcher: MakeFetcher) -> None:
    error = await refusal(make_fetcher(), source.url("/no-location"))
    assert error.code is Code.URL_UNREACHABLE
    assert error.detail == "HTTP 302 from the source without a Location header"


async def test_a_404_is_unreachable(source: Source, make_fetcher: MakeFetcher) -> None:
    error = await refusal(make_fetcher(), source.url("/missing"))
    assert (error.code, error.detail) == (Code.URL_UNREACHABLE, "HTTP 404 from the source")
    assert error.status == 400


async def test_a_failing_hop_after_a_redirect_is_named(
        source: Source, make_fetcher: MakeFetcher) -> None:
    target = source.url("/missing")
    error = await refusal(make_fetcher(), str(URL(source.url("/redirect")).with_query(
        to=target)))
    assert (error.code, error.detail) == (Code.URL_UNREACHABLE,
                                          f"redirect to {target}: HTTP 404 from the source")
    refused = f"http://127.0.0.1:{closed_port()}/x"
    error = await refusal(make_fetcher(), str(URL(source.url("/redirect")).with_query(
        to=refused)))
    assert error.detail == f"redirect to {refused}: connection refused"


async def test_a_certificate_from_a_ca_the_pop_does_not_trust(
        source: Source, make_fetcher: MakeFetcher, aiohttp_server: AiohttpServer) -> None:
    """As when a cin link redirects to a POP serving a private CA's certificate: the
    error names the hop, the host and why its certificate was refused."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    served = await aiohttp_server(source_app([], asyncio.Event()), host="127.0.0.1",
                                  ssl=context)
    https = f"https://127.0.0.1:{served.port}/blob"
    reason = "(unable to get local issuer certificate)"
    error = await refusal(make_fetcher(), https)
    assert (error.code, error.detail) == (
        Code.URL_UNREACHABLE, f"the TLS certificate of 127.0.0.1 is not valid {reason}")
    error = await refusal(make_fetcher(), str(URL(source.url("/redirect")).with_query(
        to=https)))
    assert error.detail == (f"redirect to {https}: the TLS certificate of 127.0.0.1 is not "
                            f"valid {reason}")


async def test_connection_refused(make_fetcher: MakeFetcher) -> None:
    error = await refusal(make_fetcher(), f"http://127.0.0.1:{closed_port()}/x")
    assert (error.code, error.detail) == (Code.URL_UNREACHABLE, "connection refused")


async def test_a_fetcher_makes_and_closes_its_own_session(source: Source) -> None:
    fetcher = UrlFetcher(UrlFetchConfig(allow_private=True))
    _, chunks = await fetch(fetcher, source.url("/exact"))
    assert b"".join(chunks) == b"e" * 1000
    await fetcher.close()
    with pytest.raises(RuntimeError):
        await fetch(fetcher, source.url("/exact"))


async def test_a_session_without_the_guard_is_rejected() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TypeError):
            UrlFetcher(UrlFetchConfig(), session)


# ------------------------------------------------------------------ time and size


async def test_a_source_that_stalls_before_headers_times_out(
        source: Source, make_fetcher: MakeFetcher) -> None:
    started = time.monotonic()
    error = await refusal(make_fetcher(timeout=0.5), source.url("/stall-headers"))
    assert (error.code, error.detail) == (Code.URL_UNREACHABLE, "timed out after 0.5 s")
    assert time.monotonic() - started < 2


async def test_a_source_that_stalls_in_the_body_times_out(
        source: Source, make_fetcher: MakeFetcher) -> None:
    started = time.monotonic()
    received: list[bytes] = []
    with pytest.raises(CinError) as caught:
        async with make_fetcher(timeout=0.5).open(source.url("/stall-body")) as fetched:
            async for chunk in fetched.chunks():
                received.append(chunk)
    assert received == [b"x"]
    assert (caught.value.code, caught.value.detail) == (
        Code.URL_UNREACHABLE, "timed out after 0.5 s")
    assert time.monotonic() - started < 2


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
        source: Source, make_fetcher: MakeFetcher) -> None:
    started = time.monotonic()
    with pytest.raises(CinError) as caught:
        async with make_fetcher(max_size=1000).open(source.url("/declared-large")):
            pytest.fail("the fetch must not get as far as the body")
    assert caught.value.code is Code.URL_TOO_LARGE
    assert caught.value.detail == "the source declares 10000 bytes, more than the 1000 allowed"
    assert time.monotonic() - started < 2  # did not wait for the body that never comes


async def test_an_undeclared_body_over_the_limit_stops_at_the_limit(
        source: Source, make_fetcher: MakeFetcher) -> None:
    received: list[bytes] = []
    with pytest.raises(CinError) as caught:
        async with make_fetcher(max_size=1000).open(source.url("/undeclared-large")) as fetched:
            assert fetched.content_length is None
            async for chunk in fetched.chunks():
                received.append(chunk)
    assert caught.value.code is Code.URL_TOO_LARGE
    assert caught.value.detail == "the file is larger than 1000 bytes"
    assert sum(map(len, received)) <= 1000


async def test_a_body_of_exactly_the_limit_is_accepted(
        source: Source, make_fetcher: MakeFetcher) -> None:
    _, chunks = await fetch(make_fetcher(max_size=1000), source.url("/exact"))
    assert sum(map(len, chunks)) == 1000


async def test_the_limit_counts_decompressed_bytes(
        source: Source, make_fetcher: MakeFetcher) -> None:
    assert len(GZIPPED_ZEROS) < 1000
    fetcher = make_fetcher(max_size=1000)
    with pytest.raises(CinError) as caught:
        async with fetcher.open(source.url("/gzip")) as fetched:
            assert fetched.content_length is None  # the declared length is the gzip's
            async for _ in fetched.chunks():
                pass
    assert caught.value.code is Code.URL_TOO_LARGE
    _, chunks = await fetch(make_fetcher(max_size=5000), source.url("/gzip"))
    assert b"".join(chunks) == b"\0" * 5000


# ------------------------------------------------------------------ the guard, end to end


@pytest.mark.parametrize(("host", "detail"), [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost resolves to 127.0.0.1, which is a loopback address"),
    ("[::1]", "::1 is a loopback address"),
    ("[::ffff:127.0.0.1]", "is an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("10.0.0.1", "10.0.0.1 is a private address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("100.64.0.1", "100.64.0.1 is a carrier-grade NAT address"),
])
async def test_forbidden_destinations_are_refused_before_connecting(
        source: Source, make_fetcher: MakeFetcher, traffic: Traffic,
        host: str, detail: str) -> None:
    url = f"http://{host}:{source.port}/blob"
    error = await refusal(make_fetcher(allow_private=False), url)
    assert error.code is Code.URL_FORBIDDEN
    assert error.status == 403
    assert error.detail is not None and error.detail.endswith(detail)
    assert (traffic.lookups, traffic.connections, traffic.requests) == ([], 0, [])
    assert source.hits == []


@dataclass(frozen=True)
class ThisServerOnly(AddressPolicy):
    """The strict policy, except that the test server at 127.0.0.1 counts as public."""

    def problem(self, ip: IPAddress) -> str | None:
        if ip == ipaddress.ip_address("127.0.0.1"):
            return None
        return super().problem(ip)


@pytest.mark.parametrize(("target", "code", "detail"), [
    ("http://169.254.169.254/latest/meta-data/", Code.URL_FORBIDDEN,
     "redirect to http://169.254.169.254/latest/meta-data/: "
     "169.254.169.254 is a link-local address"),
    ("http://[::1]/blob", Code.URL_FORBIDDEN, "redirect to http://[::1]/blob: "
     "::1 is a loopback address"),
    ("http://10.1.2.3:8080/", Code.URL_FORBIDDEN, "redirect to http://10.1.2.3:8080/: "
     "10.1.2.3 is a private address"),
    ("file:///etc/passwd", Code.BAD_URL, "redirect to file:///etc/passwd: "
     "the redirect target has scheme 'file' (only http and https are allowed)"),
])
async def test_every_redirect_hop_is_vetted(
        source: Source, make_fetcher: MakeFetcher, traffic: Traffic,
        target: str, code: Code, detail: str) -> None:
    fetcher = make_fetcher(allow_private=False, policy=ThisServerOnly())
    first = str(URL(source.url("/redirect")).with_query(to=target))
    error = await refusal(fetcher, first)
    assert (error.code, error.detail) == (code, detail)
    assert source.hits == ["/redirect"]
    assert traffic.connections == 1  # the first hop only
    assert traffic.requests == [first]


async def test_the_per_hop_vetting_resolves_names_itself(make_fetcher: MakeFetcher) -> None:
    strict = make_fetcher(allow_private=False)
    with pytest.raises(CinError) as caught:
        await strict.vet(parse_source_url("http://localhost:8080/"))
    assert caught.value.code is Code.URL_FORBIDDEN
    allowed = await make_fetcher(allow_private=True).vet(parse_source_url("http://localhost/"))
    assert {r["host"] for r in allowed} >= {"127.0.0.1"}
    assert all(r["hostname"] == "localhost" and r["port"] == 80 for r in allowed)


async def test_the_connector_never_resolves_a_host_it_was_not_given(source: Source) -> None:
    # A request that goes around the fetcher finds no address: no DNS lookup of its own.
    async with guarded_session() as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.get(f"http://localhost:{source.port}/blob")
    assert "was not vetted" in str(caught.value.os_error)
    assert source.hits == []


async def test_the_pinned_resolver_answers_only_while_pinned() -> None:
    resolver = PinnedResolver()
    result: ResolveResult = {"hostname": "a.example", "host": "127.0.0.1", "port": 80,
                             "family": socket.AF_INET, "proto": 6, "flags": 0}
    with resolver.pinned("a.example", 80, [result]):
        assert await resolver.resolve("a.example.", 80, socket.AF_UNSPEC) == [result]
        with pytest.raises(OSError, match="no vetted address"):
            await resolver.resolve("a.example", 80, socket.AF_INET6)
        with pytest.raises(OSError, match="not vetted"):
            await resolver.resolve("a.example", 443, socket.AF_UNSPEC)
    with pytest.raises(OSError, match="not vetted"):
        await resolver.resolve("a.example", 80, socket.AF_UNSPEC)


async def test_the_guarded_connector_has_no_dns_cache() -> None:
    async with guarded_session() as session:
        assert isinstance(session.connector, GuardedConnector)
        assert not session.connector.use_dns_cache


# ------------------------------------------------------------------ pure functions


@pytest.mark.parametrize(("address", "problem"), [
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "a reserved ('this network') address"),
    ("10.0.0.1", "a private address"),
    ("100.64.0.0", "a carrier-grade NAT address"),
    ("100.127.255.255", "a carrier-grade NAT address"),
    ("127.0.0.1", "a loopback address"),
    ("127.255.255.254", "a loopback address"),
    ("169.254.169.254", "a link-local address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("192.0.2.1", "a reserved (documentation) address"),
    ("198.18.0.1", "a reserved (benchmarking) address"),
    ("224.0.0.1", "a multicast address"),
    ("255.255.255.255", "a reserved address"),
    ("::", "an unspecified address"),
    ("::1", "a loopback address"),
    ("::127.0.0.1", "a reserved (IPv4-compatible) address"),
    ("fe80::1", "a link-local address"),
    ("fec0::1", "a site-local address"),
    ("fd12:3456::1", "a private (unique local) address"),
    ("ff02::1", "a multicast address"),
    ("2001:db8::1", "a reserved (documentation) address"),
    ("4000::1", "a reserved (unallocated) address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.1", "an IPv4-mapped form of 10.0.0.1, a private address"),
    ("::ffff:100.64.0.1", "an IPv4-mapped form of 100.64.0.1, a carrier-grade NAT address"),
    ("64:ff9b::a9fe:a9fe", "a NAT64 form of 169.254.169.254, a link-local address"),
    ("2002:7f00:1::", "a 6to4 form of 127.0.0.1, a loopback address"),
])
def test_forbidden_addresses(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
    "169.253.255.255", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
    "2002:808:808::",
])
def test_public_addresses(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_allow_private_allows_everything_and_one_bad_address_spoils_a_host() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    public = ipaddress.ip_address("8.8.8.8")
    assert AddressPolicy(allow_private=True).problem(loopback) is None
    AddressPolicy(allow_private=True).check("x.example", [public, loopback])
    AddressPolicy().check("x.example", [public])
    with pytest.raises(CinError) as caught:
        AddressPolicy().check("x.example", [public, loopback])
    assert caught.value.detail == "x.example resolves to 127.0.0.1, which is a loopback address"


@pytest.mark.parametrize(("url", "detail"), [
    ("ftp://example.com/x", "the URL has scheme 'ftp' (only http and https are allowed)"),
    ("file:///etc/passwd", "the URL has scheme 'file' (only http and https are allowed)"),
    ("example.com/x", "the URL has no scheme (only http and https are allowed)"),
    ("http:///path", "the URL has no host"),
    ("http://", "the URL has no host"),
    ("http://user:pass@example.com/", "the URL carries credentials (user:pass@)"),
    ("http://user@example.com/", "the URL carries credentials (user:pass@)"),
    ("http://@example.com/", "the URL carries credentials (user:pass@)"),
    ("http://example.com:0/", "the URL has port 0"),
    ("http://example.com:99999/", "the URL cannot be parsed: Port out of range 0-65535"),
    ("http://exa mple.com/", "the URL contains whitespace or control characters"),
    ("http://example.com/\r\nX-Injected: 1", "the URL contains whitespace or control characters"),
    ("http://2130706433/", "the URL host '2130706433' is not a dotted-quad IPv4"),
    ("http://0x7f.1/", "the URL host '0x7f.1' is not a dotted-quad IPv4"),
    ("http://127.1/", "the URL host '127.1' is not a dotted-quad IPv4"),
    ("http://exa$mple.com/", "the URL host 'exa$mple.com' is not a valid host name"),
    ("http://[fe80::1%25eth0]/", "the URL has an IPv6 zone identifier"),
    ("http://" + "a" * 64 + ".com/", f"the URL host '{'a' * 64}.com' is not a valid host name"),
    ("http://" + "a." * 127 + "com/", f"the URL host '{'a.' * 127}com' is not a valid host name"),
    ("http://example.com/" + "a" * MAX_URL_LENGTH,
     f"the URL is longer than {MAX_URL_LENGTH} characters"),
])
def test_bad_urls(url: str, detail: str) -> None:
    with pytest.raises(CinError) as caught:
        parse_source_url(url)
    assert (caught.value.code, caught.value.detail) == (Code.BAD_URL, detail)


async def test_bad_urls_never_reach_the_network(
        make_fetcher: MakeFetcher, traffic: Traffic) -> None:
    fetcher = make_fetcher()
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "http:///x",
                "http://user:pass@127.0.0.1/"):
        error = await refusal(fetcher, url)
        assert error.code is Code.BAD_URL
    assert (traffic.lookups, traffic.connections, traffic.requests) == ([], 0, [])


def test_good_urls() -> None:
    parsed = parse_source_url("HTTPS://Example.COM/a%20b?x=1#frag")
    assert (parsed.host, parsed.port, parsed.literal) == ("example.com", 443, None)
    assert str(parsed.url) == "https://example.com/a%20b?x=1"
    assert parse_source_url("http://[::1]:8080/").literal == ipaddress.ip_address("::1")
    assert parse_source_url("http://10.0.0.1/").literal == ipaddress.ip_address("10.0.0.1")
    redirected = parse_source_url("../c", base=URL("http://example.com/a/b/"))
    assert str(redirected.url) == "http://example.com/a/c"


@pytest.mark.parametrize(("disposition", "url", "filename"), [
    ('attachment; filename="report.pdf"', "http://h/x", "report.pdf"),
    ("attachment; filename*=UTF-8''na%C3%AFve%20file.txt", "http://h/x", "naïve file.txt"),
    ('attachment; filename="../../etc/passwd"', "http://h/x", "passwd"),
    ('attachment; filename="C:\\\\temp\\\\evil.exe"', "http://h/x", "evil.exe"),
    ('attachment; filename=".."', "http://h/x.bin", "x.bin"),
    ("inline", "http://h/dir/my%20doc.txt", "my doc.txt"),
    ("garbage;;==", "http://h/file", "file"),
    (None, "http://h/dir/", None),
    (None, "http://h", None),
])
def test_source_filename(disposition: str | None, url: str, filename: str | None) -> None:
    assert source_filename(disposition, URL(url)) == filename


@pytest.mark.parametrize(("header", "content_type"), [
    ("text/plain; charset=utf-8", "text/plain"),
    ("Image/PNG", "image/png"),
    ("application/octet-stream", None),
    ("nonsense", None),
    ("", None),
    (None, None),
])
def test_source_content_type(header: str | None, content_type: str | None) -> None:
    assert source_content_type(header) == content_type
