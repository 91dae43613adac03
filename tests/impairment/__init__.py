"""A TCP proxy the tests own, to put a bad network between a client and cin: latency,
a bandwidth limit, stalls and resets, each changeable while it runs, and counters.

    with ImpairmentProxy(pop_port, Impairment.link(latency=0.075, rate=2 * MiB,
                         reset=Fault(every=4, after=(64 * KiB, MiB)))) as proxy:
        ...  # clients use proxy.url
        proxy.impair(Impairment.link(latency=0.2))  # worse, from now on
        proxy.counters.resets, proxy.counters.bytes_up

It runs its own event loop in a thread (see `Relay`), so sync and async tests use it
alike; `Relay` is also the base of tests/lossy_proxy.py.

Latency holds bytes, not TCP's handshake: the kernel accepts a connection before the
proxy sees it, so a new connection costs no extra round trip as it would on a real
link. A request still costs one round trip of added latency; compare links by that.
"""

from impairment._proxy import Counters, ImpairmentProxy
from impairment._relay import Connection, Relay, Reset
from impairment._shaping import (
    ConnectionFaults,
    Direction,
    Fault,
    Impairment,
    KiB,
    Kind,
    MiB,
    Shape,
    Strike,
    TokenBucket,
    plan_connection,
)

__all__ = [
    "Connection",
    "ConnectionFaults",
    "Counters",
    "Direction",
    "Fault",
    "Impairment",
    "ImpairmentProxy",
    "KiB",
    "Kind",
    "MiB",
    "Relay",
    "Reset",
    "Shape",
    "Strike",
    "TokenBucket",
    "plan_connection",
]
