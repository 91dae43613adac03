"""A service's Prometheus metrics, served at `/metrics`.

Each app (the coordinator, every POP) has a registry of its own rather than the
process-wide default one: `cin dev` runs a coordinator and its POPs in one process, and
each must show only its own figures. The HTTP figures every service shares are here; the
coordinator and the POPs add theirs (coordinator/metrics.py, edge/metrics.py) to the same
registry.

Labels are bounded: a request is counted under the route pattern it matched
(`/api/file/{handle}`), never its path, and under a known method or "other"; no handle,
key or upload id is ever a label.

Who may scrape is set per service (`metrics:` in its config): by default the internal
secret, as a bearer token; or anyone, on an address of its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from common.config import MetricsConfig
from common.protocol.errors import CinError, Code

METRICS_PATH = "/metrics"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: from a quick File API read to a store of a large file.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0)

_Refresh = Callable[[], Awaitable[None]]


class ServiceMetrics:
    """One service's registry, its HTTP figures, and what is looked at when it is scraped."""

    def __init__(self, config: MetricsConfig, internal_secret: str) -> None:
        self.config = config
        self._secret = internal_secret.encode()
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "cin_http_requests", "Requests answered, by method, route pattern and status.",
            ["method", "route", "status"], registry=self.registry)
        self._latency = Histogram(
            "cin_http_request_duration_seconds",
            "Time from a request's headers to its handler's end (a download's last byte).",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._received = Counter(
            "cin_http_received_bytes", "Request body bytes received, by route pattern.",
            ["route"], registry=self.registry)
        self._refreshers: list[_Refresh] = []
        # The children prometheus-client would look up under its lock on every request,
        # kept here: one dict lookup per figure instead.
        self._count_of: dict[tuple[str, str, int], Counter] = {}
        self._route_of: dict[str, tuple[Histogram, Counter]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float,
                        received: int) -> None:
        counted = self._count_of.get((method, route, status))
        if counted is None:
            label = method if method in _METHODS else "other"
            counted = self._requests.labels(label, route, str(status))
            self._count_of[(method, route, status)] = counted
        counted.inc()
        per_route = self._route_of.get(route)
        if per_route is None:
            per_route = self._route_of[route] = (self._latency.labels(route),
                                                 self._received.labels(route))
        per_route[0].observe(seconds)
        if received:
            per_route[1].inc(received)

    def on_scrape(self, refresh: _Refresh) -> None:
        """Run `refresh` before each scrape: for figures that are read, not counted (free
        space, an outbox's size)."""
        self._refreshers.append(refresh)

    async def exposition(self) -> bytes:
        for refresh in self._refreshers:
            await refresh()
        return generate_latest(self.registry)

    def check_scraper(self, request: web.Request) -> None:
        if self.config.auth == "none":
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._secret):
            raise CinError(Code.NOT_AUTHENTICATED, "send Authorization: Bearer "
                                                   "<internal_secret> to read /metrics")


METRICS = web.AppKey("metrics", ServiceMetrics)


async def scrape(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.check_scraper(request)
    return web.Response(body=await metrics.exposition(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def install(app: web.Application, config: MetricsConfig, internal_secret: str) -> None:
    """Give `app` its metrics; served on its own listener unless they have an address of
    their own (cin/serve.py serves them there)."""
    app[METRICS] = ServiceMetrics(config, internal_secret)
    if config.listen is None:
        app.router.add_get(METRICS_PATH, scrape)
