"""Run one or more aiohttp apps in one process until SIGTERM or SIGINT.

Every listener takes its connections through `common.web.connections`: the header and
keep-alive timeouts, one `max_connections` cap for the whole process, JSON answers to
malformed HTTP, and cin's access log.

Shutdown is graceful: listeners close first, in-flight requests get up to the configured
timeout to finish, then each app's resources are released. POPs stop before the
coordinator, so their last requests can still reach it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from common.config import Config, EventLoop, Listen, PopConfig
from common.web.connections import ConnectionCap, GuardedSite
from common.web.drain import DRAIN
from common.web.http import error_middleware
from common.web.metrics import METRICS, METRICS_PATH, scrape
from coordinator.app import make_app as make_coordinator_app
from edge.app import make_app as make_edge_app

log = logging.getLogger("cin")


class StartError(Exception):
    """A node that cannot start as configured (its address is taken, a TLS file is missing
    or unreadable): told in one line, like a config error, rather than a traceback."""


@dataclass(frozen=True)
class Service:
    name: str
    role: Literal["coordinator", "pop"]
    app: web.Application
    listen: Listen
    public_url: str
    ssl_context: ssl.SSLContext | None = None
    metrics_listen: Listen | None = None  # its /metrics on an address of their own


def coordinator_service(config: Config) -> Service:
    return Service("coordinator", "coordinator", make_coordinator_app(config),
                   config.coordinator.listen, config.coordinator.public_url,
                   metrics_listen=config.coordinator.metrics.listen)


def pop_service(config: Config, pop: PopConfig) -> Service:
    context = None
    if pop.tls is not None:
        context = _tls_context(pop)
    return Service(f"pop {pop.name}", "pop", make_edge_app(config, pop), pop.listen, pop.public_url,
                   context, metrics_listen=pop.metrics.listen)


def metrics_app(service: web.Application) -> web.Application:
    """The app that serves `service`'s /metrics on their own address: the same figures,
    the same check of who scrapes."""
    app = web.Application(middlewares=[error_middleware])
    app[METRICS] = service[METRICS]
    app.router.add_get(METRICS_PATH, scrape)
    return app


def _tls_context(pop: PopConfig) -> ssl.SSLContext:
    assert pop.tls is not None
    where = f"pop {pop.name}: tls"
    for name, path in (("cert", pop.tls.cert), ("key", pop.tls.key)):
        _readable(f"{where}.{name} {path}", path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(pop.tls.cert, pop.tls.key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise StartError(f"{where}: {pop.tls.cert} and {pop.tls.key} are not a "
                         f"certificate and its key in PEM ({reason})") from exc
    return context


def _readable(what: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise StartError(f"{what}: {exc.strerror or exc}") from exc


def check_addresses(services: list[Service]) -> None:
    """Raise StartError when a service's address cannot be listened on, before any service
    starts: a node that cannot listen then stops with that one line, not after the others
    have started and logged. (Binding again at start still reports a port taken since.)"""
    for service in services:
        host, port = service.listen.host, service.listen.port
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in addresses:
                with socket.socket(family, kind, proto) as probe:
                    # As asyncio's listeners do, so that a port in TIME_WAIT is not "in use".
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
        except OSError as exc:
            raise _listen_error(service, exc) from exc


def _listen_error(service: Service, exc: OSError) -> StartError:
    # asyncio's own text repeats the address; the system's says only why.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StartError(f"{service.name}: cannot listen on {service.listen}: {reason}")


async def serve(services: list[Service], config: Config,
                on_ready: Callable[[list[Service]], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shutdown_timeout = config.shutdown_timeout
    cap = ConnectionCap(config.max_connections)
    _check_descriptors(config.max_connections)
    runners: list[web.AppRunner] = []
    sites: list[GuardedSite] = []
    side: list[web.AppRunner] = []  # the metrics apps on addresses of their own
    try:
        for service in services:
            runner = web.AppRunner(service.app, shutdown_timeout=shutdown_timeout)
            await runner.setup()
            runners.append(runner)
            site = GuardedSite(runner, service.listen, config, cap,
                               ssl_context=service.ssl_context)
            try:
                await site.start()
            except OSError as exc:
                raise _listen_error(service, exc) from exc
            sites.append(site)
            log.info("%s listening on %s", service.name, service.listen)
            if service.metrics_listen is not None:
                metrics_runner = web.AppRunner(metrics_app(service.app))
                await metrics_runner.setup()
                side.append(metrics_runner)
                await GuardedSite(metrics_runner, service.metrics_listen, config, cap).start()
                log.info("%s metrics on %s", service.name, service.metrics_listen)
        if on_ready is not None:
            on_ready(services)
        await stop.wait()
        log.info("shutting down: finishing requests in flight")
    finally:
        started = list(zip(services, runners, sites, strict=False))
        # POPs wholly first: their last requests may still need the coordinator.
        for role in ("pop", "coordinator"):
            await _stop([(runner, site) for service, runner, site in started
                         if service.role == role], shutdown_timeout)
        for runner in runners[len(sites):]:  # set up, but failed before listening
            await runner.cleanup()
        for runner in side:  # last: the figures stay readable while the services stop
            await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _check_descriptors(max_connections: int) -> None:
    """Warn when the process may run out of file descriptors before it reaches the cap:
    past that, new connections fail at accept instead of getting their 503."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Beyond the connections: spool and bucket files, outgoing connections, the listeners.
    wanted = max_connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("max_connections is %d but this process may open only %d files "
                    "(ulimit -n); raise the limit to at least %d", max_connections, soft,
                    wanted)


async def _stop(group: list[tuple[web.AppRunner, GuardedSite]], grace_seconds: float) -> None:
    for _, site in group:
        await site.stop()  # no new connections
    drains = [runner.app[DRAIN].drain(grace_seconds) for runner, _ in group]
    if not all(await asyncio.gather(*drains)):
        log.warning("requests still running after %.0f s are cut off", grace_seconds)
    for runner, _ in group:
        await runner.cleanup()


# Blocking file work (every fsync of a store) runs in the loop's default executor. Python
# sizes it at cores + 4: 6 threads on a 2-core host, so 50 concurrent stores, each with
# its fsyncs (the object's, and a directory's it may share with others), queued for a
# thread while the disk could take more. A thread waiting in fsync holds no GIL; a fixed
# number keeps memory bounded.
WORKER_THREADS = 32


def run(main: Coroutine[Any, Any, None], event_loop: EventLoop) -> None:
    """Run `main` on the configured event loop implementation, with `WORKER_THREADS`
    threads for blocking work."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.get_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="cin-io"))
        runner.run(main)
