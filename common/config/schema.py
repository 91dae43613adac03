"""cin's configuration as frozen dataclasses, with every default in this one module.

Pure: no YAML here. `common.config.loader` reads a file into these classes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

EventLoop = Literal["uvloop", "asyncio"]
# Each process's event loop when the config does not name one, chosen by `make bench`
# (docs/benchmarks.md, "Event loop"): a POP's work is request bodies, which aiohttp takes
# with less CPU per GB on asyncio's own loop (~23% less with eight uploads streaming at
# once; a bare aiohttp server, ~40%); the coordinator's is small RPCs, which cost as much
# or less CPU on uvloop.
POP_EVENT_LOOP: EventLoop = "asyncio"
COORDINATOR_EVENT_LOOP: EventLoop = "uvloop"
SecurityMode = Literal["required", "optional"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An origin as browsers send it in `Origin`: scheme://host[:port], nothing after. Any
# scheme, because hybrid apps and extensions have their own (capacitor://localhost).
_ORIGIN_RE = re.compile(r"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?",
                        re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfigError(Exception):
    """A configuration mistake, told in one line: file, key, what is wrong."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path


@dataclass(frozen=True)
class StorageConfig:
    """One storage location. `provider` is the name clients use (`/api/store/S3`)."""

    name: str
    provider: str
    driver: str  # a row of `common.storage.drivers.DRIVERS`
    container: str  # default bucket (S3) or folder under the root (local)
    containers: tuple[str, ...] = ()  # further containers a request may name
    # The driver's own keys (a local root; an S3 endpoint, region, addressing style), as
    # its row of the driver table reads them: `settings_of(config, S3Settings)`.
    settings: object = None

    def allows_container(self, container: str) -> bool:
        return container == self.container or container in self.containers


WEBHOOK_ACTIONS = ("fp.upload", "fp.overwrite", "fp.delete")


@dataclass(frozen=True)
class WebhookConfig:
    """One endpoint an app's file events are posted to, signed with its own secret."""

    url: str
    secret: str = field(repr=False)
    actions: frozenset[str] = frozenset(WEBHOOK_ACTIONS)


@dataclass(frozen=True)
class AppConfig:
    apikey: str
    secret: str = field(repr=False)  # never in a log line
    security: SecurityMode
    storage: tuple[str, ...]  # names of StorageConfig entries; the first is the default
    max_upload_size: int
    webhooks: tuple[WebhookConfig, ...] = ()

    def webhook(self, url: str) -> WebhookConfig | None:
        return next((hook for hook in self.webhooks if hook.url == url), None)


@dataclass(frozen=True)
class WebhookDeliveryConfig:
    """How the coordinator's outbox worker delivers webhooks (seconds)."""

    timeout: float = 10.0  # per attempt
    first_retry: float = 5.0  # the delay after the first failure; doubles after each
    max_interval: float = 3600.0  # backoff cap
    give_up_after: float = 3 * 86400.0  # since the event; then it is kept as abandoned
    concurrency: int = 8


@dataclass(frozen=True)
class UrlFetchConfig:
    """Store-from-URL: where a POP may fetch from, how much, for how long."""

    allow_private: bool = False  # loopback, private, link-local destinations
    max_size: int = 1024**3
    timeout: float = 60.0
    max_redirects: int = 5


ANY_ORIGIN = "*"


def normalize_origin(text: str) -> str | None:
    """`text` as a browser serializes an origin (lowercase, no default port), or None when
    it is not scheme://host[:port]. Config and requests go through it alike, so
    `https://App.example.com:443` in the config matches what a browser sends."""
    match = _ORIGIN_RE.fullmatch(text)  # not `$`, which lets a final newline through
    if not match or match.group(2).strip(".") == "":
        return None
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if port is not None:
        number = int(port)
        if not 0 < number < 65536:
            return None
        if _DEFAULT_PORTS.get(scheme) != number:
            return f"{scheme}://{host}:{number}"
    return f"{scheme}://{host}"


@dataclass(frozen=True)
class CorsConfig:
    """The web origins whose pages may call cin from a browser. No origins (the default)
    is CORS off: browsers keep pages of other origins from reading cin's answers."""

    origins: tuple[str, ...] = ()  # normalized; (ANY_ORIGIN,) allows every origin
    max_age: int = 600  # seconds a browser may reuse a preflight's answer

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    @property
    def any_origin(self) -> bool:
        return self.origins == (ANY_ORIGIN,)


@dataclass(frozen=True)
class HeartbeatConfig:
    """How often a POP tells the coordinator it is alive and how busy it is (seconds), and
    how long the coordinator goes on believing it without hearing again."""

    interval: float = 5.0
    # No heartbeat for this long and the POP is not handed out. When only `interval` is
    # set, the timeout is three intervals (at least this default).
    timeout: float = 15.0


@dataclass(frozen=True)
class UploadExpiryConfig:
    """When what an abandoned or interrupted upload left is cleaned up (seconds).

    One setting for the coordinator and every POP: an Upload API upload still `Started`
    `ttl` after its start is failed and its bucket upload aborted; a POP drops the spool of
    an upload idle this long unless it is In Transit. A REST store is one request: a POP
    gives up on one that takes longer than `store_ttl`, so a store still `Started` after
    that lost its POP mid-store; the coordinator fails it and removes what it left in the
    bucket, and the temp files of a local-disk bucket untouched for as long.
    """

    ttl: float = 24 * 3600.0  # a day: ample for a slow client, and no part lingers long
    store_ttl: float = 3600.0  # an hour: far more than a store of 5 GiB takes
    sweep_interval: float = 600.0  # how often the coordinator and each POP look


# The embedded state engine's database, in `coordinator.state_dir` unless
# `coordinator.state` names another file.
STATE_FILE = "state.sqlite3"


@dataclass(frozen=True)
class SqliteStateConfig:
    """The embedded state engine: one SQLite database file, for one coordinator."""

    path: Path
    # FULL: a commit is on disk before the coordinator acknowledges it, even through a
    # power cut. NORMAL: it may be lost in a power cut, not in a crash of the process.
    synchronous: Literal["full", "normal"] = "full"


@dataclass(frozen=True)
class PostgresStateConfig:
    """A PostgreSQL database, which several coordinators can share."""

    # A libpq URL (postgresql://USER@HOST:PORT/DATABASE). What it leaves out comes from
    # the environment as libpq's PG* variables say (PGPASSWORD, PGUSER, PGHOST, ...). It
    # may hold a password: never shown, in a repr, a log line or an error.
    url: str = field(repr=False)
    pool_size: int = 10  # connections each coordinator holds at most


# Which engine keeps the coordinator's state (`coordinator.state`), with its settings.
StateConfig = SqliteStateConfig | PostgresStateConfig


@dataclass(frozen=True)
class TimeoutsConfig:
    """How long a connection may wait on its client at each phase of a request (seconds),
    the same for the coordinator and every POP. A peer that stalls past one is dropped:
    it must not hold a connection, a file Started or a spool, however it misbehaves."""

    # A request's header block, from its first byte to its blank line: a slowloris client
    # trickling header lines is closed after this.
    header: float = 30.0
    # A request body that sends no byte for this long (any body, on any route) is given
    # up: 408 body_timeout, and what the request had begun is cleaned up as for a client
    # that hangs up. Only time spent waiting on the client counts, never the time the
    # node itself takes to write what it has read.
    body_idle: float = 60.0
    # A connection with no request under way (a new one that sends nothing, or one kept
    # alive after an answer) is closed after this. Longer than the idle time clients keep
    # a pooled connection for (aiohttp 15 s, browsers about a minute), so that a client
    # seldom reuses a connection just as it is closed.
    keep_alive: float = 75.0


@dataclass(frozen=True)
class CoordinatorConfig:
    listen: Listen
    public_url: str
    state_dir: Path
    internal_url: str  # where POPs reach the coordinator's internal API
    state: StateConfig


# Below this much free space on its spool (or a local-disk bucket) a POP says it is full.
MIN_FREE_SPACE = 256 * 1024**2


@dataclass(frozen=True)
class PopConfig:
    name: str
    region: str
    listen: Listen
    public_url: str
    spool_dir: Path
    tls: TlsConfig | None = None
    # Clients in these networks are sent to this POP when they do not pick one themselves
    # (the most specific network wins, and only while the POP is healthy).
    networks: tuple[IpNetwork, ...] = ()
    # Bytes that must stay free on each file system the POP writes to; 0: no floor.
    min_free_space: int = MIN_FREE_SPACE


@dataclass(frozen=True)
class Config:
    source: str
    event_loop: EventLoop | None  # None: each process takes its role's default (loop_for)
    internal_secret: str = field(repr=False)
    coordinator: CoordinatorConfig
    pops: tuple[PopConfig, ...]
    storage: Mapping[str, StorageConfig]
    apps: Mapping[str, AppConfig]
    url_fetch: UrlFetchConfig = field(default_factory=UrlFetchConfig)
    webhook_delivery: WebhookDeliveryConfig = field(default_factory=WebhookDeliveryConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    upload_expiry: UploadExpiryConfig = field(default_factory=UploadExpiryConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # Client connections one process holds at once; past it a new connection is answered
    # 503 too_many_connections and closed, rather than queued (a POP's file descriptors,
    # memory and spool bandwidth are finite). Each connection takes a file descriptor.
    max_connections: int = 4096
    access_log: bool = True  # one INFO line per request, logger `cin.access`
    shutdown_timeout: float = 30.0

    def loop_for(self, *, runs_pops: bool) -> EventLoop:
        """The event loop of a process that runs POPs (alone, or with the coordinator, as
        `cin dev` does) or only the coordinator."""
        if self.event_loop is not None:
            return self.event_loop
        return POP_EVENT_LOOP if runs_pops else COORDINATOR_EVENT_LOOP

    def pop(self, name: str) -> PopConfig:
        for pop in self.pops:
            if pop.name == name:
                return pop
        names = ", ".join(p.name for p in self.pops)
        raise ConfigError(self.source, "pops", f"no POP named {name!r} (have: {names})")

    def app_storage(self, app: AppConfig) -> list[StorageConfig]:
        return [self.storage[name] for name in app.storage]
