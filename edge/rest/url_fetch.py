"""Store-from-URL: fetch a client-named URL without letting it reach where it must not.

A POP that fetches any URL a client names is a request forgery gadget: `http://127.0.0.1`,
the cloud metadata service at 169.254.169.254, or a name whose DNS answer points inside
the network. The guard works hop by hop:

1. `parse_source_url` accepts only http(s) URLs with a host, no credentials, no
   non-canonical numeric hosts, at most `MAX_URL_LENGTH` characters.
2. The fetcher resolves the host itself and `AddressPolicy.check` refuses it when any
   address is loopback, private, link-local, carrier-grade NAT, multicast, reserved or
   unspecified, or an IPv6 form that embeds such an IPv4 address.
3. The vetted addresses are pinned in a `PinnedResolver`, the only resolver of the
   session's `GuardedConnector`, so the connection goes to an address that was checked:
   there is no second DNS query for a rebinding server to answer differently. TLS SNI and
   the Host header still carry the host name.
4. Redirects are followed by hand, each hop going through 1-3 again.

Size and time are enforced on what actually arrives: the body is counted after
decompression, and one deadline covers every hop's connect, headers and body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.multipart import (
    BadContentDispositionHeader,
    BadContentDispositionParam,
    content_disposition_filename,
    parse_content_disposition,
)
from yarl import URL

from common.config import UrlFetchConfig
from common.protocol.errors import CinError, Code

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CHUNK_SIZE = 1024 * 1024
MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# ------------------------------------------------------------------ address policy

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match names the reason. From the IANA special-purpose address registries; the
# standard library's flags are checked after these as a backstop, but their exact ranges
# vary between Python releases, so the table is what the refusals are tested against.
_SPECIAL_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "an unspecified address"),
    # Linux connects 0.0.0.0/8 to the local host.
    (_V4("0.0.0.0/8"), "a reserved ('this network') address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.0.0.0/24"), "a reserved (IETF protocol) address"),
    (_V4("192.0.2.0/24"), "a reserved (documentation) address"),
    (_V4("192.88.99.0/24"), "a reserved (6to4 relay) address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("198.18.0.0/15"), "a reserved (benchmarking) address"),
    (_V4("198.51.100.0/24"), "a reserved (documentation) address"),
    (_V4("203.0.113.0/24"), "a reserved (documentation) address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
_SPECIAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("::/96"), "a reserved (IPv4-compatible) address"),
    (_V6("64:ff9b:1::/48"), "a private (local-use NAT64) address"),
    (_V6("100::/64"), "a reserved (discard-only) address"),
    (_V6("2001:db8::/32"), "a reserved (documentation) address"),
    (_V6("2001::/23"), "a reserved (IETF protocol) address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_NAT64_V6 = _V6("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, when packets to it reach that one."""
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped form", ip.ipv4_mapped
    if ip in _NAT64_V6:
        return "a NAT64 form", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "a 6to4 form", ip.sixtofour
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is no place to fetch from ("a loopback address"), or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, inner = embedded
            problem = address_problem(inner)
            return None if problem is None else f"{form} of {inner}, {problem}"
        for net6, reason in _SPECIAL_V6:
            if ip in net6:
                return reason
        if ip not in _GLOBAL_UNICAST_V6:
            return "a reserved (unallocated) address"
    else:
        for net4, reason in _SPECIAL_V4:
            if ip in net4:
                return reason
    flags = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a globally reachable address"),
    )
    return next((reason for flagged, reason in flags if flagged), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Which destination addresses a fetch may connect to."""

    allow_private: bool = False

    def problem(self, ip: IPAddress) -> str | None:
        return None if self.allow_private else address_problem(ip)

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise URL_FORBIDDEN when any address of `host` is refused.

        One bad address spoils the host, because the connector may pick any of them.
        """
        for ip in addresses:
            problem = self.problem(ip)
            if problem is None:
                continue
            literal = _ip_literal(host)
            if literal is not None:
                raise CinError(Code.URL_FORBIDDEN, f"{ip} is {problem}")
            raise CinError(Code.URL_FORBIDDEN, f"{host} resolves to {ip}, which is {problem}")


# ------------------------------------------------------------------ URL checks


@dataclass(frozen=True)
class SourceUrl:
    """A URL that passed the syntactic checks; `host` is as the connector will see it."""

    url: URL
    host: str
    port: int
    literal: IPAddress | None  # the host, when it is an IP address


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_host_name(host: str) -> bool:
    """RFC 1035's shape: labels of 1 to 63 characters, 253 in all. The resolver's IDNA
    codec raises UnicodeError on a longer one rather than failing to resolve it."""
    name = host.removesuffix(".")
    return (bool(_HOST_NAME.match(host)) and len(name) <= 253
            and all(len(label) <= 63 for label in name.split(".")))


def parse_source_url(text: str, *, base: URL | None = None) -> SourceUrl:
    """Check a source URL, or a redirect's Location against the URL it came from.

    Raises BAD_URL naming what is wrong.
    """
    where = "the redirect target" if base is not None else "the URL"
    if len(text) > MAX_URL_LENGTH:
        raise CinError(Code.BAD_URL, f"{where} is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(text):
        raise CinError(Code.BAD_URL, f"{where} contains whitespace or control characters")
    try:
        # yarl drops an empty userinfo ("http://@host/"); the raw authority still shows it.
        userinfo = "@" in urlsplit(text).netloc
        url = URL(text)
        if base is not None:
            url = base.join(url)
        port = url.port
    except ValueError as exc:
        raise CinError(Code.BAD_URL, f"{where} cannot be parsed: {exc}") from None
    if len(str(url)) > MAX_URL_LENGTH:
        raise CinError(Code.BAD_URL, f"{where} is longer than {MAX_URL_LENGTH} characters")
    if not url.scheme:
        raise CinError(Code.BAD_URL, f"{where} has no scheme (only http and https are allowed)")
    if url.scheme not in ("http", "https"):
        raise CinError(
            Code.BAD_URL, f"{where} has scheme {url.scheme!r} (only http and https are allowed)")
    host = url.raw_host
    if not host:
        raise CinError(Code.BAD_URL, f"{where} has no host")
    if userinfo or url.raw_user is not None or url.raw_password is not None:
        raise CinError(Code.BAD_URL, f"{where} carries credentials (user:pass@)")
    if not port:
        raise CinError(Code.BAD_URL, f"{where} has port 0")
    literal: IPAddress | None = None
    if ":" in host:
        if "%" in host:
            raise CinError(Code.BAD_URL, f"{where} has an IPv6 zone identifier")
        literal = _ip_literal(host)
        if literal is None:
            raise CinError(Code.BAD_URL, f"{where} has an invalid IPv6 host {host!r}")
    elif _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        # A numeric last label makes the host an IPv4 address to URL parsers and to
        # inet_aton ("2130706433", "0x7f.1", "127.1"); only the dotted quad is unambiguous.
        literal = _ip_literal(host)
        if not isinstance(literal, ipaddress.IPv4Address) or str(literal) != host:
            raise CinError(Code.BAD_URL, f"{where} host {host!r} is not a dotted-quad IPv4")
    elif not _is_host_name(host):
        raise CinError(Code.BAD_URL, f"{where} host {host!r} is not a valid host name")
    return SourceUrl(url=url.with_fragment(None), host=host, port=port, literal=literal)


# ------------------------------------------------------------------ pinned resolution


def _pin_key(host: str, port: int) -> tuple[str, int]:
    # The connector folds trailing dots; certificates and caches treat "a." as "a".
    return host.rstrip(".").lower(), port


class PinnedResolver(AbstractResolver):
    """Answers the connector with the addresses the fetcher vetted, and nothing else.

    A lookup of a host that is not pinned fails, so a request that bypassed the fetcher
    cannot make the connector resolve (and reach) an unchecked address.
    """

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], list[list[ResolveResult]]] = {}

    @contextmanager
    def pinned(self, host: str, port: int, results: list[ResolveResult]) -> Iterator[None]:
        """Pin `results` for host:port while the block runs (a stack: fetches may overlap)."""
        key = _pin_key(host, port)
        stack = self._pins.setdefault(key, [])
        stack.append(results)
        try:
            yield
        finally:
            for index, item in enumerate(stack):
                if item is results:
                    del stack[index]
                    break
            if not stack:
                del self._pins[key]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        stack = self._pins.get(_pin_key(host, port))
        if not stack:
            raise OSError(f"{host}:{port} was not vetted for this connection")
        results = [r for r in stack[-1] if family in (socket.AF_UNSPEC, r["family"])]
        if not results:
            raise OSError(f"{host}:{port} has no vetted address of family {family.name}")
        return results

    async def close(self) -> None:
        self._pins.clear()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector whose only source of addresses is its `PinnedResolver`."""

    def __init__(self, *, limit: int = 100, limit_per_host: int = 0) -> None:
        self.pins = PinnedResolver()
        # No DNS cache: every connection must take the pins of the hop that opens it.
        super().__init__(resolver=self.pins, use_dns_cache=False,
                         limit=limit, limit_per_host=limit_per_host)


def guarded_session(
    *, trace_configs: Sequence[aiohttp.TraceConfig] | None = None
) -> aiohttp.ClientSession:
    """A client session fit for `UrlFetcher`; one per app, shared by its fetchers."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(),
        # Sources must not see each other's cookies through a shared session.
        cookie_jar=aiohttp.DummyCookieJar(),
        # A proxy from the environment would resolve hosts itself, behind the guard.
        trust_env=False,
        # The fetcher's own deadline bounds each fetch.
        timeout=aiohttp.ClientTimeout(),
        trace_configs=list(trace_configs) if trace_configs else None,
    )


# ------------------------------------------------------------------ response metadata

_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean_filename(name: str | None) -> str | None:
    # The name is metadata, never a path: keep only the last segment of either separator.
    if not name:
        return None
    name = _CONTROL.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return None if name in ("", ".", "..") else name


def source_filename(content_disposition: str | None, url: URL) -> str | None:
    """Content-Disposition filename* or filename, else the URL's last path segment."""
    if content_disposition:
        with warnings.catch_warnings():
            # aiohttp warns on every malformed header; a source's bad header is not ours.
            warnings.simplefilter("ignore", BadContentDispositionHeader)
            warnings.simplefilter("ignore", BadContentDispositionParam)
            _, params = parse_content_disposition(content_disposition)
        name = _clean_filename(content_disposition_filename(params))
        if name is not None:
            return name
    return _clean_filename(url.name)


def source_content_type(header: str | None) -> str | None:
    """The media type without parameters; None when absent, malformed or the generic one."""
    if header is None:
        return None
    mime = header.split(";", 1)[0].strip().lower()
    if not _MIME.match(mime) or mime == "application/octet-stream":
        return None
    return mime


def _timed_out(timeout: float) -> CinError:
    return CinError(Code.URL_UNREACHABLE, f"timed out after {timeout:g} s")


def _too_large(max_size: int) -> CinError:
    return CinError(Code.URL_TOO_LARGE, f"the file is larger than {max_size} bytes")


def _connection_problem(exc: aiohttp.ClientError, host: str) -> CinError:
    """Translate an aiohttp failure before the response headers into URL_UNREACHABLE."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        # The reason says whether the POP lacks the CA that signed it (a private CA).
        reason = getattr(exc.certificate_error, "verify_message", None) or ""
        detail = f"the TLS certificate of {host} is not valid" + (
            f" ({reason})" if reason else "")
    elif isinstance(exc, aiohttp.ClientSSLError):
        detail = f"the TLS handshake with {host} failed"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            detail = "connection refused"
        else:
            reason = os_error.strerror or str(os_error) or type(os_error).__name__
            detail = f"cannot connect to {host}: {reason[:1].lower()}{reason[1:]}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        detail = "the source closed the connection without a response"
    elif isinstance(exc, aiohttp.ClientResponseError):
        detail = "the source sent an invalid HTTP response"
    else:
        detail = f"the request failed ({type(exc).__name__})"
    return CinError(Code.URL_UNREACHABLE, detail)


class FetchedSource:
    """The final response of a fetch: headers read, body still to stream."""

    def __init__(self, response: aiohttp.ClientResponse, *, max_size: int,
                 deadline: float, timeout: float) -> None:
        self.url: str = str(response.url)
        self.filename: str | None = source_filename(
            response.headers.get(hdrs.CONTENT_DISPOSITION), response.url)
        self.content_type: str | None = source_content_type(
            response.headers.get(hdrs.CONTENT_TYPE))
        encoding = response.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        # A compressed body is decoded on the way in, so its declared length is not the
        # length of what `chunks` yields.
        self.content_length: int | None = (
            response.content_length if encoding in ("", "identity") else None)
        self._response = response
        self._max_size = max_size
        self._deadline = deadline
        self._timeout = timeout
        self._reading = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, decoded, in chunks of up to CHUNK_SIZE; raises past max_size."""
        if self._reading:
            raise RuntimeError("the body of a fetched source can be read only once")
        self._reading = True
        received = 0
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await self._response.content.read(CHUNK_SIZE)
            except TimeoutError:
                raise _timed_out(self._timeout) from None
            except aiohttp.ClientPayloadError:
                raise CinError(Code.URL_UNREACHABLE,
                               "the body ended early or could not be decoded") from None
            except aiohttp.ClientError as exc:
                raise CinError(Code.URL_UNREACHABLE,
                               f"reading the body failed ({type(exc).__name__})") from None
            if not chunk:
                return
            received += len(chunk)
            if received > self._max_size:
                raise _too_large(self._max_size)
            yield chunk


# ------------------------------------------------------------------ the fetcher


class UrlFetcher:
    """Fetches source URLs through the guard: `async with fetcher.open(url) as source`."""

    def __init__(self, config: UrlFetchConfig, session: aiohttp.ClientSession | None = None,
                 *, policy: AddressPolicy | None = None) -> None:
        if session is not None:
            if not isinstance(session.connector, GuardedConnector):
                raise TypeError("UrlFetcher needs a session made by guarded_session()")
            if session.trust_env:
                raise ValueError("UrlFetcher needs a session with trust_env=False")
        self._config = config
        self._policy = policy or AddressPolicy(allow_private=config.allow_private)
        self._session = session
        self._owns_session = session is None
        self._closed = False

    async def close(self) -> None:
        """Close the session if this fetcher made it."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _guarded_session(self) -> tuple[aiohttp.ClientSession, PinnedResolver]:
        if self._closed:
            raise RuntimeError("the URL fetcher is closed")
        if self._session is None:
            # Made on first use: a connector wants a running event loop.
            self._session = guarded_session()
        connector = self._session.connector
        if not isinstance(connector, GuardedConnector):  # checked in __init__
            raise TypeError("UrlFetcher needs a session made by guarded_session()")
        return self._session, connector.pins

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[FetchedSource]:
        """Fetch `url` up to its final response's headers; the body streams from `chunks`."""
        timeout = self._config.timeout
        deadline = asyncio.get_running_loop().time() + timeout
        source = parse_source_url(url)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._final_response(source)
        except TimeoutError:
            raise _timed_out(timeout) from None
        try:
            yield FetchedSource(response, max_size=self._config.max_size,
                                deadline=deadline, timeout=timeout)
        finally:
            # After a complete body the connection is back in the pool and this is a no-op;
            # otherwise the unread rest of the body dies with the connection.
            response.close()

    async def vet(self, source: SourceUrl) -> list[ResolveResult]:
        """Resolve a hop's host and check every address; the results are what to pin."""
        if source.literal is not None:
            self._policy.check(source.host, [source.literal])
            family = socket.AF_INET6 if source.literal.version == 6 else socket.AF_INET
            return [_resolve_result(source, str(source.literal), family, socket.IPPROTO_TCP)]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(source.host, source.port,
                                           type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise CinError(Code.URL_UNREACHABLE,
                           f"cannot resolve {source.host} ({exc.strerror})") from None
        results: list[ResolveResult] = []
        addresses: list[IPAddress] = []
        for family, _, proto, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(sockaddr[0])
            ip = _ip_literal(address)
            if ip is None:
                raise CinError(Code.URL_UNREACHABLE,
                               f"{source.host} resolves to an unusable address {address!r}")
            addresses.append(ip)
            results.append(_resolve_result(source, address, family, proto))
        if not results:
            raise CinError(Code.URL_UNREACHABLE, f"{source.host} has no IP address")
        self._policy.check(source.host, addresses)
        return results

    async def _final_response(self, source: SourceUrl) -> aiohttp.ClientResponse:
        session, pins = self._guarded_session()
        redirects = 0
        while True:
            try:
                vetted = await self.vet(source)
            except CinError as exc:
                if redirects:
                    raise _in_redirect(exc, str(source.url)) from None
                raise
            with pins.pinned(source.host, source.port, vetted):
                try:
                    response = await session.get(
                        source.url, allow_redirects=False, timeout=aiohttp.ClientTimeout())
                except aiohttp.ClientError as exc:
                    if isinstance(exc, TimeoutError):
                        raise
                    problem = _connection_problem(exc, source.host)
                    if redirects:
                        raise _in_redirect(problem, str(source.url)) from None
                    raise problem from None
            status = response.status
            if status not in REDIRECT_STATUSES:
                break
            location = response.headers.get(hdrs.LOCATION)
            response.close()
            if location is None:
                raise CinError(Code.URL_UNREACHABLE,
                               f"HTTP {status} from the source without a Location header")
            if redirects >= self._config.max_redirects:
                raise CinError(Code.URL_UNREACHABLE,
                               f"more than {self._config.max_redirects} redirects")
            redirects += 1
            source = _redirect_target(location, response.url)
        if not 200 <= status < 300:
            response.close()
            refused = CinError(Code.URL_UNREACHABLE, f"HTTP {status} from the source")
            raise _in_redirect(refused, str(source.url)) if redirects else refused
        declared = response.content_length
        if declared is not None and declared > self._config.max_size:
            response.close()
            raise CinError(Code.URL_TOO_LARGE,
                           f"the source declares {declared} bytes, more than the "
                           f"{self._config.max_size} allowed")
        return response


def _redirect_target(location: str, base: URL) -> SourceUrl:
    try:
        return parse_source_url(location, base=base)
    except CinError as exc:
        raise _in_redirect(exc, location) from None


def _in_redirect(exc: CinError, target: str) -> CinError:
    # Say which hop failed: the client only knows the first URL. A cin link, for one,
    # redirects to the POP holding an In Transit file, whose certificate may be from a
    # private CA this POP must trust too.
    shown = target if len(target) <= 200 else f"{target[:200]}..."
    return CinError(exc.code, f"redirect to {shown}: {exc.detail}")


def _resolve_result(source: SourceUrl, address: str, family: int, proto: int) -> ResolveResult:
    return {"hostname": source.host, "host": address, "port": source.port, "family": family,
            "proto": proto, "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}
