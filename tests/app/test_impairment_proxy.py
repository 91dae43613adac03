"""The impairment proxy over real loopback sockets, in front of servers on the test's loop.

Timing is checked by lower bounds (a link cannot be faster than its rate, a round trip
cannot be shorter than its latency), which a slow or loaded machine cannot break; an
upper bound, where there is one, is a loose ratio.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from impairment import Direction, Fault, Impairment, ImpairmentProxy, KiB, MiB, Shape

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None
                  ) -> AsyncIterator[int]:
    """A server on the test's loop; its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Sink:
    """Takes what each connection sends until it ends; answers `reply` at EOF."""

    reply: bytes = b"ok"
    received: list[bytes] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)  # "eof" or "reset", one a connection
    finished_at: list[float] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = bytearray()
        try:
            while chunk := await reader.read(64 * KiB):
                data += chunk
            writer.write(self.reply)
            await writer.drain()
            self.ends.append("eof")
        except ConnectionResetError:
            self.ends.append("reset")
        finally:
            self.received.append(bytes(data))
            self.finished_at.append(time.monotonic())
            writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(64 * KiB):
            writer.write(chunk)
            await writer.drain()
    except ConnectionResetError:
        pass
    finally:
        writer.close()


async def send_all(port: int, payload: bytes) -> bytes:
    """Send `payload` and EOF to `port`; the answer. ConnectionResetError if reset,
    however the client finds out (a write, the EOF or the read fails)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await reader.read()
    except OSError as error:
        raise ConnectionResetError(str(error)) from error
    finally:
        writer.close()


async def ending(reading: Awaitable[bytes]) -> bytes | str:
    """What `reading` got, or "reset"."""
    try:
        return await reading
    except ConnectionResetError:
        return "reset"


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     message: bytes = b"ping") -> float:
    started = time.monotonic()
    writer.write(message)
    await writer.drain()
    assert await reader.readexactly(len(message)) == message
    return time.monotonic() - started


# ------------------------------------------------------------------------- rate


@pytest.mark.parametrize("direction", [Direction.UP, Direction.DOWN])
async def test_the_rate_limit_holds_in_each_direction(direction: Direction) -> None:
    size, rate = MiB, MiB  # the burst (64 KiB) lets 1/16 through at once: >= 0.94 s
    payload = os.urandom(size)
    limited = Shape(rate=rate)
    impairment = (Impairment(up=limited) if direction is Direction.UP
                  else Impairment(down=limited))
    sink = Sink(reply=payload if direction is Direction.DOWN else b"ok")
    async with serving(sink) as port, ImpairmentProxy(port, impairment) as proxy:
        started = time.monotonic()
        answer = await send_all(proxy.port, payload if direction is Direction.UP else b"go")
        elapsed = time.monotonic() - started
    moved = sink.received[0] if direction is Direction.UP else answer
    assert moved == payload
    achieved = size / elapsed
    assert achieved <= rate / 0.9, f"{achieved / rate:.2f} of the rate"
    assert achieved >= rate / 5, f"{achieved / rate:.2f} of the rate"


async def test_connections_share_the_links_rate() -> None:
    rate, each, count = MiB, 256 * KiB, 4
    sink = Sink()
    async with serving(sink) as port, \
            ImpairmentProxy(port, Impairment.link(rate=rate)) as proxy:
        started = time.monotonic()
        await asyncio.gather(*(send_all(proxy.port, os.urandom(each)) for _ in range(count)))
        elapsed = time.monotonic() - started
        assert proxy.counters.bytes_up == count * each
    assert count * each / elapsed <= rate / 0.9


async def test_the_rate_changes_while_a_transfer_runs() -> None:
    sink = Sink()
    async with serving(sink) as port, ImpairmentProxy(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(os.urandom(256 * KiB))  # unlimited: goes at once
        await writer.drain()
        while proxy.counters.bytes_up < 256 * KiB:
            await asyncio.sleep(0.01)
        proxy.impair(Impairment.link(rate=256 * KiB))
        started = time.monotonic()
        writer.write(os.urandom(256 * KiB))
        writer.write_eof()
        await reader.read()
        elapsed = time.monotonic() - started
        writer.close()
    assert len(sink.received[0]) == 512 * KiB
    assert elapsed >= 0.9 * (256 - 64) / 256  # all but one burst at the new rate


# ---------------------------------------------------------------------- latency


async def test_latency_adds_its_delay_each_way_to_every_round_trip() -> None:
    latency = 0.05
    async with serving(echo) as port, \
            ImpairmentProxy(port, Impairment.link(latency=latency)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        trips = [await round_trip(reader, writer) for _ in range(5)]
        writer.close()
    assert min(trips) >= 2 * latency, trips


async def test_latency_changes_on_an_open_connection() -> None:
    async with serving(echo) as port, ImpairmentProxy(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await round_trip(reader, writer)
        proxy.impair(Impairment(up=Shape(latency=0.1)))  # one way only
        slow = await round_trip(reader, writer)
        writer.close()
    assert slow >= 0.1


async def test_latency_holds_bytes_back_without_reordering_them() -> None:
    payload = os.urandom(4 * MiB)
    async with serving(echo) as port, \
            ImpairmentProxy(port, Impairment.link(latency=0.2)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

        async def send() -> None:
            writer.write(payload[:MiB])
            await writer.drain()
            await asyncio.sleep(0.05)  # the proxy holds the first MiB for 0.2 s
            # Later bytes now due before earlier ones: they must still wait their turn.
            proxy.impair(Impairment.link(latency=0.0))
            for offset in range(MiB, len(payload), 100_000):
                writer.write(payload[offset:offset + 100_000])
                await writer.drain()
            writer.write_eof()

        sending = asyncio.ensure_future(send())
        echoed = await reader.read()
        await sending
        writer.close()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


# ------------------------------------------------------------------------ faults


async def test_a_reset_comes_after_the_configured_bytes() -> None:
    sink = Sink()
    impairment = Impairment(reset=Fault(after=100_000, every=1))
    async with serving(sink) as port, ImpairmentProxy(port, impairment) as proxy:
        with pytest.raises(ConnectionResetError):
            await send_all(proxy.port, os.urandom(MiB))
        deadline = time.monotonic() + 10
        while not sink.ends and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert proxy.counters.resets == 1
        assert proxy.counters.bytes_up == 100_000
    assert sink.ends == ["reset"]
    assert len(sink.received[0]) == 100_000


async def test_every_kth_connection_is_reset_and_the_others_are_not() -> None:
    sink = Sink()
    impairment = Impairment(reset=Fault(after=5000, every=3))
    outcomes = []
    async with serving(sink) as port, ImpairmentProxy(port, impairment) as proxy:
        for _ in range(6):
            try:
                outcomes.append(await send_all(proxy.port, b"x" * 10_000))
            except ConnectionResetError:
                outcomes.append(b"reset")
        counters = proxy.counters
    assert outcomes == [b"ok", b"ok", b"reset"] * 2
    assert (counters.connections, counters.resets) == (6, 2)


async def test_a_reset_can_strike_the_answers() -> None:
    reply = os.urandom(200_000)
    impairment = Impairment(reset=Fault(after=50_000, every=1, direction=Direction.DOWN))
    async with serving(Sink(reply=reply)) as port, \
            ImpairmentProxy(port, impairment) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write_eof()
        got = bytearray()
        with pytest.raises(ConnectionResetError):
            while chunk := await reader.read(64 * KiB):
                got += chunk
        writer.close()
    assert bytes(got) == reply[:50_000]


async def test_a_stall_pauses_the_connection_then_it_goes_on() -> None:
    seconds = 0.5
    sink = Sink()
    payload = os.urandom(256 * KiB)
    impairment = Impairment(stall=Fault(after=64 * KiB, every=1, seconds=seconds))
    async with serving(sink) as port, ImpairmentProxy(port, impairment) as proxy:
        started = time.monotonic()
        assert await send_all(proxy.port, payload) == b"ok"
        elapsed = time.monotonic() - started
        assert proxy.counters.stalls == 1
    assert elapsed >= seconds
    assert sink.received == [payload]


async def test_a_stall_stops_both_directions() -> None:
    impairment = Impairment(stall=Fault(after=4, every=1, seconds=0.5))
    async with serving(echo) as port, ImpairmentProxy(port, impairment) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        # The request's 4 bytes pass, then the stall: the echo waits for its end.
        assert await round_trip(reader, writer, b"ping") >= 0.5
        writer.close()


async def test_a_stall_by_chance_is_drawn_from_the_seed() -> None:
    impairment = Impairment(stall=Fault(after=1, chance=0.5, seconds=0.01))

    async def stalls(seed: int) -> int:
        async with serving(Sink()) as port, \
                ImpairmentProxy(port, impairment, seed=seed) as proxy:
            for _ in range(8):
                await send_all(proxy.port, b"abc")
            return proxy.counters.stalls

    first = await stalls(seed=11)
    assert await stalls(seed=11) == first
    assert 0 < first < 8


# --------------------------------------------------------------------- counters


async def test_counters_count_each_way_and_clear() -> None:
    async with serving(Sink(reply=b"r" * 1234)) as port, ImpairmentProxy(port) as proxy:
        for size in (1000, 20_000, 300_000):
            await send_all(proxy.port, b"u" * size)
        counters = proxy.counters
        assert (counters.connections, counters.bytes_up, counters.bytes_down) == (
            3, 321_000, 3 * 1234)
        assert (counters.resets, counters.stalls) == (0, 0)
        proxy.clear()
        assert proxy.counters.connections == 0
        await send_all(proxy.port, b"u")
        assert (proxy.counters.connections, proxy.counters.bytes_up) == (1, 1)


# -------------------------------------------------------------------- lifecycle


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("relay-")]


async def test_closing_resets_open_connections_and_leaves_no_thread_behind() -> None:
    assert relay_threads() == []
    async with serving(echo) as port:
        proxy = ImpairmentProxy(port, Impairment.link(latency=0.05))
        async with proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            await round_trip(reader, writer)
            assert proxy.open_connections == 1
        assert not proxy.running
        assert proxy.open_connections == 0
        assert await ending(reader.read()) in (b"", "reset")
        writer.close()
    assert relay_threads() == []


async def test_a_proxy_that_cannot_listen_says_so_and_leaves_no_thread() -> None:
    async with serving(echo) as port:
        with pytest.raises(OSError):  # the port is the server's
            ImpairmentProxy(port, port=port).start()
    assert relay_threads() == []


async def test_reset_connections_drops_what_is_open_and_the_proxy_goes_on() -> None:
    async with serving(echo) as port, ImpairmentProxy(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await round_trip(reader, writer)
        proxy.reset_connections()
        assert await ending(reader.read()) in (b"", "reset")
        writer.close()
        assert proxy.open_connections == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await round_trip(reader, writer)
        writer.close()


async def test_a_target_that_refuses_closes_the_client() -> None:
    async with serving(echo) as port:
        pass  # closed: nothing listens there now
    async with ImpairmentProxy(port) as proxy:
        assert await ending(send_all(proxy.port, b"hello")) in (b"", "reset")
        assert proxy.counters.connections == 0


async def test_tls_passes_through(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with serving(echo, server_context) as port, \
            ImpairmentProxy(port, Impairment.link(latency=0.01)) as proxy:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy.port, ssl=client_context, server_hostname="127.0.0.1")
        assert await round_trip(reader, writer, b"secret") >= 0.02
        writer.close()
        assert proxy.counters.bytes_up > len(b"secret")  # the handshake, then the record
