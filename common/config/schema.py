"""cin's configuration as frozen dataclasses, with every default in this one module.

Pure: no YAML here. `common.config.loader` reads a file into these classes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EventLoop = Literal["uvloop", "asyncio"]
# Each process's event loop when the config does not name one, chosen by `make bench`
# (docs/benchmarks.md, "Event loop"): a POP's work is request bodies, which aiohttp takes
# with less CPU per GB on asyncio's own loop (~23% less with eight uploads streaming at
# once; a bare aiohttp server, ~40%); the coordinator's is small RPCs, which cost as much
# or less CPU on uvloop.
POP_EVENT_LOOP: EventLoop = "asyncio"
COORDINATOR_EVENT_LOOP: EventLoop = "uvloop"
SecurityMode = Literal["required", "optional"]
# How log lines are written: one readable line each, or one JSON object each (for a
# log shipper). Either way every line a request caused names its request id.
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An origin as browsers send it in `Origin`: scheme://host[:port], nothing after. Any
# scheme, because hybrid apps and extensions have their own (capacitor://localhost).
_ORIGIN_RE = re.compile(r"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?",
                        re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def doc(meaning: str, *, key: str | None = None, kind: str | None = None,
        default: str | None = None, secret: bool = False) -> dict[str, Any]:
    """A setting's entry in the config reference (docs/config.md, made by
    `python -m cin.config_reference`), as a dataclass field's metadata:
    `field(default=5.0, metadata=doc("..."))`. `key` is the YAML key when it is not the
    field's name, `kind` and `default` say them in words where the annotation and the
    field's default would not, and `secret` says the value may come from the environment
    instead (`KEY_env: VARIABLE`). A field without it is not read from the file."""
    return {"doc": meaning, "key": key, "kind": kind, "default": default, "secret": secret}


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
    cert: Path = field(metadata=doc("the certificate chain (PEM) the POP serves HTTPS with"))
    key: Path = field(metadata=doc("the certificate's private key (PEM)"))


@dataclass(frozen=True)
class StorageConfig:
    """One storage location. `provider` is the name clients use (`/api/store/S3`)."""

    name: str
    provider: str = field(metadata=doc(
        "the name clients store to (`/api/store/S3`, `store.location`), case-insensitive",
        default="s3"))
    # A row of `common.storage.drivers.DRIVERS`.
    driver: str = field(metadata=doc(
        "the driver: `local` (a folder) or `s3` (any S3-compatible service); its own keys "
        "follow", kind="a driver named below"))
    container: str = field(metadata=doc(
        "the default container: a bucket (s3) or a folder under `root` (local)"))
    containers: tuple[str, ...] = field(default=(), metadata=doc(
        "further containers a request may name", kind="list of strings"))
    # The driver's own keys (a local root; an S3 endpoint, region, addressing style), as
    # its row of the driver table reads them: `settings_of(config, S3Settings)`.
    settings: object = None

    def allows_container(self, container: str) -> bool:
        return container == self.container or container in self.containers


WEBHOOK_ACTIONS = ("fp.upload", "fp.overwrite", "fp.delete")


@dataclass(frozen=True)
class WebhookConfig:
    """One endpoint an app's file events are posted to, signed with its own secret."""

    url: str = field(metadata=doc("where the events are POSTed", kind="URL"))
    secret: str = field(repr=False, metadata=doc(
        "signs each delivery (at least 16 characters)", secret=True))
    actions: frozenset[str] = field(default=frozenset(WEBHOOK_ACTIONS), metadata=doc(
        "the events sent", kind="list of " + ", ".join(f"`{a}`" for a in WEBHOOK_ACTIONS),
        default="all"))


@dataclass(frozen=True)
class AppConfig:
    apikey: str
    secret: str = field(repr=False, metadata=doc(  # never in a log line
        "signs the app's policies and is its basic-auth password (at least 16 characters)",
        secret=True))
    security: SecurityMode = field(metadata=doc(
        "`required`: every call needs a policy or the secret; `optional`: only overwrite, "
        "delete and exif do", kind="`required` or `optional`", default="required"))
    # Names of StorageConfig entries; the first is the default.
    storage: tuple[str, ...] = field(metadata=doc(
        "the `storage` locations the app stores to, one per provider; the first is the "
        "default", kind="list of names"))
    max_upload_size: int = field(metadata=doc(
        "the largest file the app takes", kind="size", default="5GiB"))
    webhooks: tuple[WebhookConfig, ...] = field(default=(), metadata=doc(
        "endpoints the app's file events are posted to (`apps.<apikey>.webhooks[].*`)",
        kind="list"))

    def webhook(self, url: str) -> WebhookConfig | None:
        return next((hook for hook in self.webhooks if hook.url == url), None)


@dataclass(frozen=True)
class WebhookDeliveryConfig:
    """How the coordinator's outbox worker delivers webhooks (seconds)."""

    timeout: float = field(default=10.0, metadata=doc("seconds one delivery attempt may take"))
    first_retry: float = field(default=5.0, metadata=doc(
        "seconds before the first retry; the delay doubles after each failure"))
    max_interval: float = field(default=3600.0, metadata=doc(
        "the longest delay between two attempts (seconds)"))
    give_up_after: float = field(default=3 * 86400.0, metadata=doc(
        "seconds after the event when delivery stops; the event is kept as abandoned"))
    concurrency: int = field(default=8, metadata=doc("deliveries under way at once"))


@dataclass(frozen=True)
class UrlFetchConfig:
    """Store-from-URL: where a POP may fetch from, how much, for how long."""

    allow_private: bool = field(default=False, metadata=doc(
        "allow loopback, private and link-local destinations (never on a public POP)"))
    max_size: int = field(default=1024**3, metadata=doc(
        "the largest file a POP fetches", kind="size", default="1GiB"))
    timeout: float = field(default=60.0, metadata=doc("seconds a whole fetch may take"))
    max_redirects: int = field(default=5, metadata=doc("redirects a fetch follows"))


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

    # Normalized; (ANY_ORIGIN,) allows every origin.
    origins: tuple[str, ...] = field(default=(), metadata=doc(
        "origins (`scheme://host[:port]`) whose pages may call cin, or `\"*\"` alone for "
        "any; none is CORS off", kind="list of origins"))
    max_age: int = field(default=600, metadata=doc(
        "seconds a browser may reuse a preflight's answer (at most 86400)"))

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

    interval: float = field(default=5.0, metadata=doc(
        "seconds between two heartbeats of a POP (its health and load)"))
    # No heartbeat for this long and the POP is not handed out. When only `interval` is
    # set, the timeout is three intervals (at least this default).
    timeout: float = field(default=15.0, metadata=doc(
        "seconds without a heartbeat after which a POP is down and not handed out; at "
        "least twice `interval`", default="15, or three intervals if longer"))


@dataclass(frozen=True)
class HandleLeaseConfig:
    """The handles each POP holds ahead, leased by the coordinator in blocks, so that it
    takes stores and uploads through an outage of the coordinator (README, "The edge
    stands on its own")."""

    # 65,536: a few weeks of a quiet POP, and about ten minutes at 100 stores a second.
    block_size: int = field(default=65536, metadata=doc(
        "handles the POP asks the coordinator for at a time (at most 14,776,336)"))
    low_water: int = field(default=4096, metadata=doc(
        "the POP asks for more before it holds fewer handles than this"))
    # 15 minutes: the 10 minutes with room for a slow return.
    outage: float = field(default=900.0, metadata=doc(
        "seconds of coordinator outage the handles held must last at the POP's recent "
        "store rate; the POP asks for more blocks when the rate needs them"))


@dataclass(frozen=True)
class EventShippingConfig:
    """How a POP ships the events in its journal to the coordinator."""

    batch_size: int = field(default=500, metadata=doc(
        "events in one batch at most (a batch also stays under the 1 MiB message limit)"))
    linger: float = field(default=0.005, metadata=doc(
        "seconds the POP waits after an event before sending, so that stores taken "
        "together share a batch (at most 1)"))
    retention: float = field(default=3600.0, metadata=doc(
        "seconds a POP keeps its view of a Complete or Failed file after the coordinator "
        "has acknowledged it (a file still under way is kept for `upload_expiry.ttl`)"))


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

    # A day: ample for a slow client, and no part lingers long.
    ttl: float = field(default=24 * 3600.0, metadata=doc(
        "seconds after its start when an upload still Started is failed, its bucket "
        "upload aborted and its POP spool deleted (at least 60)"))
    # An hour: far more than a store of 5 GiB takes.
    store_ttl: float = field(default=3600.0, metadata=doc(
        "seconds after a REST store's file is named when a store still Started is cut "
        "(408 store_timeout), failed, and its leftovers removed (longer than "
        "url_fetch.timeout)"))
    sweep_interval: float = field(default=600.0, metadata=doc(
        "seconds between two looks for expired uploads and stores, at the coordinator and "
        "each POP"))


# The embedded state engine's database, in `coordinator.state_dir` unless
# `coordinator.state` names another file.
STATE_FILE = "state.sqlite3"


@dataclass(frozen=True)
class SqliteStateConfig:
    """The embedded state engine: one SQLite database file, for one coordinator."""

    path: Path  # `coordinator.state` names it
    # FULL: a commit is on disk before the coordinator acknowledges it, even through a
    # power cut. NORMAL: it may be lost in a power cut, not in a crash of the process.
    synchronous: Literal["full", "normal"] = field(default="full", metadata=doc(
        "`full`: a commit is on disk before it is acknowledged; `normal`: faster, and a "
        "power cut (not a crash of cin) may lose the last commits",
        key="sqlite_synchronous", kind="`full` or `normal`"))


@dataclass(frozen=True)
class PostgresStateConfig:
    """A PostgreSQL database, which several coordinators can share."""

    # A libpq URL (postgresql://USER@HOST:PORT/DATABASE). What it leaves out comes from
    # the environment as libpq's PG* variables say (PGPASSWORD, PGUSER, PGHOST, ...). It
    # may hold a password: never shown, in a repr, a log line or an error.
    url: str = field(repr=False)
    pool_size: int = field(default=10, metadata=doc(
        "PostgreSQL connections each coordinator holds at most for its transactions "
        "(with a `postgresql://` state), and at most as many again for the per-file "
        "locks it holds while their work runs", key="postgres_pool_size"))


# Which engine keeps the coordinator's state (`coordinator.state`), with its settings.
StateConfig = SqliteStateConfig | PostgresStateConfig


@dataclass(frozen=True)
class TimeoutsConfig:
    """How long a connection may wait on its client at each phase of a request (seconds),
    the same for the coordinator and every POP. A peer that stalls past one is dropped:
    it must not hold a connection, a file Started or a spool, however it misbehaves."""

    # A request's header block, from its first byte to its blank line: a slowloris client
    # trickling header lines is closed after this.
    header: float = field(default=30.0, metadata=doc(
        "seconds a request's header block may take, first byte to blank line"))
    # A request body that sends no byte for this long (any body, on any route) is given
    # up: 408 body_timeout, and what the request had begun is cleaned up as for a client
    # that hangs up. Only time spent waiting on the client counts, never the time the
    # node itself takes to write what it has read.
    body_idle: float = field(default=60.0, metadata=doc(
        "seconds a request body may send no byte; then 408 body_timeout and its work "
        "undone"))
    # A connection with no request under way (a new one that sends nothing, or one kept
    # alive after an answer) is closed after this. Longer than the idle time clients keep
    # a pooled connection for (aiohttp 15 s, browsers about a minute), so that a client
    # seldom reuses a connection just as it is closed.
    keep_alive: float = field(default=75.0, metadata=doc(
        "seconds a connection with no request under way stays open"))


MetricsAuth = Literal["internal", "none"]


@dataclass(frozen=True)
class MetricsConfig:
    """Where a service's Prometheus metrics (`/metrics`) are served, and to whom."""

    # "none" is meant with a `listen` address that only the monitoring network reaches.
    auth: MetricsAuth = field(default="internal", metadata=doc(
        "`internal`: a scrape must send `Authorization: Bearer <internal_secret>`; "
        "`none`: anyone who reaches the address may read them"))
    listen: Listen | None = field(default=None, metadata=doc(
        "an address of their own instead of the service's public listener, which then "
        "answers /metrics 404", kind="HOST:PORT", default="the service's own"))


@dataclass(frozen=True)
class OperatorConfig:
    """Who may open the coordinator's operator's page (`/operator`): HTTP basic auth."""

    user: str = field(default="operator", metadata=doc(
        "the user name the browser's sign-in asks for"))
    # Unset, the page takes the internal secret: whoever holds it can already sign any
    # POP's messages, so the page gives them nothing more. A password of its own lets a
    # person watch the network without holding the secret every POP signs with.
    password: str | None = field(default=None, repr=False, metadata=doc(
        "the password (at least 12 characters); serve the page over HTTPS (a TLS proxy) "
        "where it crosses a network you do not trust", secret=True,
        default="the internal secret"))

    def password_or(self, internal_secret: str) -> str:
        return self.password if self.password is not None else internal_secret


@dataclass(frozen=True)
class CoordinatorConfig:
    listen: Listen = field(metadata=doc("the address it listens on", kind="HOST:PORT"))
    public_url: str = field(metadata=doc(
        "the URL clients reach it at; file URLs and handles' links start with it",
        kind="URL"))
    state_dir: Path = field(metadata=doc("the folder of its state (relative to the working "
                                         "directory)"))
    internal_url: str = field(metadata=doc(
        "the URL POPs reach its internal API at", kind="URL", default="`public_url`"))
    state: StateConfig = field(metadata=doc(
        "the engine keeping files, uploads and the webhook outbox: `sqlite` "
        "(`state_dir/state.sqlite3`), `sqlite:///ABSOLUTE/PATH`, or "
        "`postgresql://USER@HOST:PORT/DATABASE` (PG* environment variables fill in the "
        "rest); `state_env: VARIABLE` reads it from the environment instead",
        kind="string", default="sqlite"))
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)


# Below this much free space on its spool (or a local-disk bucket) a POP says it is full.
MIN_FREE_SPACE = 256 * 1024**2


@dataclass(frozen=True)
class PopConfig:
    name: str = field(metadata=doc(
        "the POP's name (`cin edge --pop NAME`): lowercase letters, digits, `-`, `_`, `.`"))
    region: str = field(metadata=doc("the region it serves, shown by `/pops`",
                                     default="`name`"))
    listen: Listen = field(metadata=doc("the address it listens on", kind="HOST:PORT"))
    public_url: str = field(metadata=doc("the URL clients and the coordinator reach it at",
                                         kind="URL"))
    spool_dir: Path = field(metadata=doc(
        "where it keeps bytes until they are in the bucket; on a disk that survives a "
        "restart"))
    tls: TlsConfig | None = field(default=None, metadata=doc(
        "serve HTTPS with `tls.cert` and `tls.key`", kind="mapping", default="HTTP"))
    # Clients in these networks are sent to this POP when they do not pick one themselves
    # (the most specific network wins, and only while the POP is healthy).
    networks: tuple[IpNetwork, ...] = field(default=(), metadata=doc(
        "client networks sent to this POP while it is healthy (the most specific wins)",
        kind="list of CIDR prefixes"))
    min_free_space: int = field(default=MIN_FREE_SPACE, metadata=doc(
        "bytes that must stay free on each file system the POP writes to (its spool, a "
        "local-disk bucket); below it the POP refuses new bytes with 507 and reports "
        "itself full; 0: no floor", kind="size"))
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


@dataclass(frozen=True)
class Config:
    source: str
    # None: each process takes its role's default (loop_for).
    event_loop: EventLoop | None = field(metadata=doc(
        "the event loop of every process", kind="`uvloop` or `asyncio`",
        default=f"{POP_EVENT_LOOP} for POPs and `cin dev`, {COORDINATOR_EVENT_LOOP} for "
                "the coordinator"))
    internal_secret: str = field(repr=False, metadata=doc(
        "signs messages between POPs and the coordinator; the same on every node, at "
        "least 16 characters", secret=True))
    coordinator: CoordinatorConfig
    pops: tuple[PopConfig, ...]
    storage: Mapping[str, StorageConfig]
    apps: Mapping[str, AppConfig]
    url_fetch: UrlFetchConfig = field(default_factory=UrlFetchConfig)
    webhook_delivery: WebhookDeliveryConfig = field(default_factory=WebhookDeliveryConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    handle_leases: HandleLeaseConfig = field(default_factory=HandleLeaseConfig)
    event_shipping: EventShippingConfig = field(default_factory=EventShippingConfig)
    upload_expiry: UploadExpiryConfig = field(default_factory=UploadExpiryConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # Client connections one process holds at once; past it a new connection is answered
    # 503 too_many_connections and closed, rather than queued (a POP's file descriptors,
    # memory and spool bandwidth are finite). Each connection takes a file descriptor.
    max_connections: int = field(default=4096, metadata=doc(
        "client connections one process holds at once; past it a new one is answered 503 "
        "too_many_connections (raise `ulimit -n` above it)"))
    access_log: bool = field(default=True, metadata=doc(
        "one INFO line per request, logger `cin.access`"))
    log_format: LogFormat = field(default="text", metadata=doc(
        "`text` (one readable line) or `json` (one JSON object per line, with the request id)"))
    log_level: LogLevel = field(default="info", metadata=doc(
        "debug, info, warning or error; `cin -v` lowers it to debug"))
    shutdown_timeout: float = field(default=30.0, metadata=doc(
        "seconds requests in flight get to finish after SIGTERM or SIGINT"))

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
