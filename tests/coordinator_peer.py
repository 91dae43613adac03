"""A small stand-in for the coordinator's RPC route, on loopback, for the POP's shipper
and lease keeper: it verifies and decodes real signed messages, takes event batches (counting
how often each event arrived), grants leases, and can be told to be away (503 from something
that is not the coordinator), to stall, or to refuse given events.

The real coordinator's side of these messages is tested against the coordinator; this
peer lets the POP's side be tested for what a coordinator cannot be made to do on cue.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.handle_lease import new_block_id
from common.protocol.pop_events import event_from_wire

Mode = Literal["answer", "away", "stall"]


@dataclass
class CoordinatorPeer:
    secret: str
    mode: Mode = "answer"
    # "stall": the batch is taken, then the reply is held this long (a lost reply).
    stall_seconds: float = 30.0
    # Seconds every batch takes to apply, to give the POP a chance to send two at once.
    apply_seconds: float = 0.0
    refuse: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)  # refused as if their id were unread
    lease_size: int = 1000
    lease_pop: str | None = None  # grant the lease to this POP instead of the asker
    batches: list[list[str]] = field(default_factory=list)  # event ids, as received
    arrivals: dict[str, int] = field(default_factory=dict)  # event id -> times received
    statuses: dict[str, str] = field(default_factory=dict)  # what to answer, by handle
    leases: list[wire.HandleLease] = field(default_factory=list)
    messages: list[wire.Message] = field(default_factory=list)  # every one, in order
    in_flight: int = 0
    most_in_flight: int = 0
    received: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/internal/v1/rpc", self.rpc)
        return app

    async def rpc(self, request: web.Request) -> web.Response:
        body = await request.read()
        wire.verify(self.secret, body, request.headers.get(wire.SIGNATURE_HEADER))
        msg = wire.decode(body)
        self.messages.append(msg)
        if self.mode == "away":
            return web.Response(status=503, text="no coordinator here")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            reply = await self.answer(msg)
        finally:
            self.in_flight -= 1
        self.received.set()
        return web.Response(body=wire.encode(reply), content_type=wire.CONTENT_TYPE)

    async def answer(self, msg: wire.Message) -> wire.Message:
        match msg:
            case wire.EventBatch(events=events):
                if self.apply_seconds:
                    await asyncio.sleep(self.apply_seconds)
                parsed = [event_from_wire(body) for body in events]
                self.batches.append([event.id for event in parsed])
                # As the coordinator refuses: an id (none for an event it could not read),
                # a reason, and the event's position in the batch.
                refused = [["" if e.id in self.unreadable else e.id, "not leased to this POP",
                            str(position)] for position, e in enumerate(parsed)
                           if e.id in self.refuse | self.unreadable]
                for event in parsed:
                    self.arrivals[event.id] = self.arrivals.get(event.id, 0) + 1
                if self.mode == "stall":
                    self.mode = "answer"  # the next attempt is answered
                    await asyncio.sleep(self.stall_seconds)
                named = {event.handle for event in parsed}
                return wire.BatchReply(refused=refused, statuses={
                    h: s for h, s in self.statuses.items() if h in named})
            case wire.LeaseHandles(pop=pop, count=count):
                if self.mode == "stall":
                    await asyncio.sleep(self.stall_seconds)
                lease = wire.HandleLease(block=new_block_id(), size=min(count, self.lease_size),
                                         pop=self.lease_pop or pop)
                self.leases.append(lease)
                return lease
            case wire.PopHeartbeat():
                return wire.Ack()
        return wire.ErrorReply.of(CinError(Code.BAD_MESSAGE, f"not taken: {msg.TYPE}"))
