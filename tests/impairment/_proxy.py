"""The impairment proxy: a TCP relay that gives the bytes it carries a bad network's
latency, bandwidth, stalls and resets, and counts what it did.

Each direction of a connection is two tasks joined by a bounded queue, as a link is a
sender and a wire: the taker reads from one side, waits for the direction's token
bucket (shared by every connection: the link's bandwidth), and queues the bytes with
the time they are due (now + latency); the deliverer writes them to the other side when
due, in order. A fault is queued after the byte where it strikes, so the far side gets
exactly the bytes before it, then the stall or the reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from impairment._relay import HOST, Connection, Relay, Reset
from impairment._shaping import (
    ConnectionFaults,
    Direction,
    Impairment,
    KiB,
    Kind,
    Strike,
    TokenBucket,
    plan_connection,
)

READ_BYTES = 64 * KiB
QUEUE_CHUNKS = 256  # per direction and connection: at most 16 MiB held in flight
FLUSH_SECONDS = 1.0  # how long a reset waits for the bytes before it to leave


@dataclass(frozen=True)
class Counters:
    """What the proxy carried and did, since it started or was last cleared."""

    connections: int = 0  # accepted (and dialed through to the target)
    bytes_up: int = 0  # delivered to the target
    bytes_down: int = 0  # delivered to clients
    resets: int = 0  # injected
    stalls: int = 0  # injected


@dataclass(frozen=True)
class _Chunk:
    due: float  # loop time when it may be delivered
    data: bytes


class _End(Enum):
    EOF = "eof"


_Item = _Chunk | Strike | _End


@dataclass(eq=False)
class _Flow:
    """One connection's state that both directions share."""

    faults: ConnectionFaults
    resume_at: float = 0.0  # a stall: nothing is delivered either way before this


class ImpairmentProxy(Relay):
    """Listens on 127.0.0.1:`port` (0: any free port) and relays to `target_port`,
    impaired as `impairment` says. `seed` makes the faults drawn by chance repeatable."""

    def __init__(self, target_port: int, impairment: Impairment | None = None, *,
                 port: int = 0, seed: int = 0, target_host: str = HOST) -> None:
        super().__init__(target_port, port=port, target_host=target_host)
        self.seed = seed
        self._impairment = Impairment()
        self._buckets: dict[Direction, TokenBucket | None] = dict.fromkeys(Direction)
        self._counters = Counters()
        self._set(impairment or Impairment())

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def impairment(self) -> Impairment:
        return self._impairment

    @property
    def counters(self) -> Counters:
        """A snapshot (the proxy's thread replaces it whole, never changes it)."""
        return self._counters

    def impair(self, impairment: Impairment) -> None:
        """Change what the proxy does, from any thread. Latency and rate change at once
        for open connections too; faults apply to connections opened from now on."""
        self._on_loop(self._set, impairment)

    def clear(self) -> None:
        """Zero the counters, and so restart the connection numbering that `every=`
        faults and the seeded draws go by."""
        self._on_loop(self._clear)

    def _on_loop(self, change: Callable[..., None], *args: object) -> None:
        """Make `change` on the proxy's thread, where the state it changes is used."""

        async def run() -> None:
            change(*args)

        if self.running:
            self.call(run())
        else:
            change(*args)

    def _set(self, impairment: Impairment) -> None:
        for direction in Direction:
            shape = impairment.shape(direction)
            bucket = self._buckets[direction]
            if shape.rate is None:
                self._buckets[direction] = None
            elif bucket is None or (bucket.rate, bucket.burst) != (shape.rate, shape.burst):
                self._buckets[direction] = TokenBucket(shape.rate, shape.burst,
                                                       self._loop.time())
        self._impairment = impairment

    def _clear(self) -> None:
        self._counters = Counters()

    def _count(self, **increments: int) -> None:
        self._counters = replace(self._counters, **{
            name: getattr(self._counters, name) + n for name, n in increments.items()})

    # ------------------------------------------------------------------ relaying

    async def _relay(self, connection: Connection) -> None:
        self._count(connections=1)
        flow = _Flow(plan_connection(self._impairment, self._counters.connections, self.seed))
        up: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        down: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        await self.run_all(
            self._take(flow, Direction.UP, connection.client_in, up),
            self._deliver(flow, Direction.UP, up, connection.server_out),
            self._take(flow, Direction.DOWN, connection.server_in, down),
            self._deliver(flow, Direction.DOWN, down, connection.client_out))

    async def _take(self, flow: _Flow, direction: Direction, source: asyncio.StreamReader,
                    queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        strikes = flow.faults.in_direction(direction)
        passed = 0
        while True:
            while strikes and strikes[0].at <= passed:
                strike = strikes.pop(0)
                await queue.put(strike)
                if strike.kind is Kind.RESET:
                    return  # nothing more goes this way
            shape = self._impairment.shape(direction)
            want = READ_BYTES if shape.rate is None else min(READ_BYTES, shape.burst)
            if strikes:
                want = min(want, strikes[0].at - passed)
            data = await source.read(want)
            if not data:
                await queue.put(_End.EOF)
                return
            bucket = self._buckets[direction]
            if bucket is not None:
                await asyncio.sleep(bucket.reserve(len(data), loop.time()))
            await queue.put(_Chunk(loop.time() + self._impairment.shape(direction).latency,
                                   data))
            passed += len(data)

    async def _deliver(self, flow: _Flow, direction: Direction, queue: asyncio.Queue[_Item],
                       sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        counter = f"bytes_{direction.value}"
        while True:
            item = await queue.get()
            if isinstance(item, _Chunk):
                while (wait := max(item.due, flow.resume_at) - loop.time()) > 0:
                    await asyncio.sleep(wait)  # again: a stall may start meanwhile
                sink.write(item.data)
                await sink.drain()
                self._count(**{counter: len(item.data)})
            elif item is _End.EOF:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            elif item.kind is Kind.STALL:
                flow.resume_at = max(flow.resume_at, loop.time() + item.seconds)
                self._count(stalls=1)
            else:
                # The bytes before the reset leave first: drain waits for an empty buffer.
                sink.transport.set_write_buffer_limits(high=0)
                # If the far side reads no more, its bytes are lost with the reset.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sink.drain(), FLUSH_SECONDS)
                self._count(resets=1)
                raise Reset
