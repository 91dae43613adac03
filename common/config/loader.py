"""Reading a config file: YAML through `yaml.safe_load`, every key and value checked.

`load_config(path)` raises `ConfigError` naming the file and the dotted key that is wrong.
The loader is strict: an unknown key is an error, because a misspelt option silently
ignored is how a production bucket ends up public.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from common.config.schema import (
    ANY_ORIGIN,
    MIN_FREE_SPACE,
    STATE_FILE,
    WEBHOOK_ACTIONS,
    AppConfig,
    Config,
    ConfigError,
    CoordinatorConfig,
    CorsConfig,
    EventShippingConfig,
    HandleLeaseConfig,
    HeartbeatConfig,
    IpNetwork,
    Listen,
    MetricsConfig,
    OperatorConfig,
    PopConfig,
    PostgresStateConfig,
    SqliteStateConfig,
    StateConfig,
    StorageConfig,
    TimeoutsConfig,
    TlsConfig,
    UploadExpiryConfig,
    UrlFetchConfig,
    WebhookConfig,
    WebhookDeliveryConfig,
    normalize_origin,
)
from common.protocol.handle_lease import MAX_BLOCK_SIZE
from common.storage.drivers import DRIVERS

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class _Reader:
    """Walks one YAML mapping, remembering where it is for error messages."""

    def __init__(self, source: str, prefix: str, data: Any) -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(source, prefix or "(top level)", "must be a mapping")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def raw(self, name: str, default: Any = ...) -> Any:
        self.used.add(name)
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is ...:
            raise self.fail(name, "is required")
        return default

    def text(self, name: str, default: Any = ...) -> Any:
        value = self.raw(name, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must be a non-empty string")
        return value

    def secret(self, name: str, default: Any = ...) -> Any:
        """A secret, given inline or as `NAME_env: VARIABLE` read from the environment."""
        env_name = f"{name}_env"
        if env_name in self.data:
            self.used.add(env_name)
            self.used.add(name)
            variable = self.data[env_name]
            if not isinstance(variable, str) or not variable:
                raise self.fail(env_name, "must name an environment variable")
            value = os.environ.get(variable)
            if not value:
                raise self.fail(env_name, f"environment variable {variable} is not set")
            return value
        return self.text(name, default)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(name, f"must be a number of at least {minimum}")
        return float(value)

    def count(self, name: str, default: int, *, minimum: int = 1) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(name, f"must be a whole number of at least {minimum}")
        return value

    def size(self, name: str, default: int) -> int:
        value = self.raw(name, default)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str):
            match = _SIZE_RE.match(value)
            if match and match.group(2).lower() in _SIZE_UNITS:
                size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
                if size > 0:
                    return size
        raise self.fail(name, "must be a positive size such as 5GiB, 100MB or 1048576")

    def choice(self, name: str, options: tuple[str, ...], default: Any = ...) -> Any:
        value = self.raw(name, default)
        if value not in options:
            raise self.fail(name, f"must be one of {', '.join(options)} (got {value!r})")
        return value

    def listen(self, name: str) -> Listen:
        value = self.text(name)
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise self.fail(name, f"must be HOST:PORT (got {value!r})")
        return Listen(host, int(port))

    def url(self, name: str, default: Any = ...) -> Any:
        value = self.text(name, default)
        if value is default and default is not ...:
            return value
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise self.fail(name, f"must be an http:// or https:// URL (got {value!r})")
        return str(value).rstrip("/")

    def path(self, name: str, base: Path, default: Any = ...) -> Any:
        value = self.text(name, default)
        if value is default and default is not ...:
            return value
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path

    def child(self, name: str, default: Any = ...) -> _Reader | None:
        value = self.raw(name, default)
        if value is None:
            return None
        return _Reader(self.source, self.key(name), value)

    def items(self, name: str) -> list[tuple[str, _Reader]]:
        value = self.raw(name)
        if not isinstance(value, dict) or not value:
            raise self.fail(name, "must be a non-empty mapping")
        return [(str(k), _Reader(self.source, f"{self.key(name)}.{k}", v))
                for k, v in value.items()]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "is not a known setting")


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError (or OSError if unreadable)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "(file)", exc.strerror or str(exc)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError(source, where, f"is not valid YAML: {exc}") from exc
    # Relative paths in a config file are relative to the directory the command runs in,
    # so `configs/dev.yaml` keeps its state under ./var whichever way it is started.
    return parse_config(data, source=source, base=Path.cwd())


def parse_config(data: Any, *, source: str, base: Path) -> Config:
    top = _Reader(source, "", data)
    event_loop = (top.choice("event_loop", ("uvloop", "asyncio"))
                  if top.raw("event_loop", None) is not None else None)
    internal_secret = top.secret("internal_secret")
    if len(internal_secret) < 16:
        raise top.fail("internal_secret", "must be at least 16 characters")
    shutdown_timeout = top.number("shutdown_timeout", 30.0)

    coordinator = _coordinator(top.child("coordinator"), base)  # type: ignore[arg-type]
    pops = _pops(top, base)
    storage = _storage(top, base)
    apps = _apps(top, storage)
    fetch_reader = top.child("url_fetch", None)
    url_fetch = _url_fetch(fetch_reader) if fetch_reader else UrlFetchConfig()
    delivery_reader = top.child("webhook_delivery", None)
    delivery = _webhook_delivery(delivery_reader) if delivery_reader else WebhookDeliveryConfig()
    cors_reader = top.child("cors", None)
    cors = _cors(cors_reader) if cors_reader else CorsConfig()
    heartbeat_reader = top.child("heartbeat", None)
    heartbeat = _heartbeat(heartbeat_reader) if heartbeat_reader else HeartbeatConfig()
    leases_reader = top.child("handle_leases", None)
    leases = _handle_leases(leases_reader) if leases_reader else HandleLeaseConfig()
    shipping_reader = top.child("event_shipping", None)
    shipping = _event_shipping(shipping_reader) if shipping_reader else EventShippingConfig()
    expiry_reader = top.child("upload_expiry", None)
    expiry = _upload_expiry(expiry_reader) if expiry_reader else UploadExpiryConfig()
    # A store from a URL may fetch for url_fetch.timeout after its file is named: a
    # shorter store TTL would cut every slow fetch short, whatever its own timeout says.
    if expiry.store_ttl <= url_fetch.timeout:
        raise ConfigError(source, "upload_expiry.store_ttl",
                          f"must be longer than url_fetch.timeout ({url_fetch.timeout:g} s), "
                          "which a store from a URL may take")
    timeouts_reader = top.child("timeouts", None)
    timeouts = _timeouts(timeouts_reader) if timeouts_reader else TimeoutsConfig()
    max_connections = top.count("max_connections", Config.max_connections)
    access_log = top.flag("access_log", Config.access_log)
    log_format = top.choice("log_format", ("text", "json"), Config.log_format)
    log_level = top.choice("log_level", ("debug", "info", "warning", "error"), Config.log_level)
    top.done()
    return Config(source=source, event_loop=event_loop, internal_secret=internal_secret,
                  coordinator=coordinator, pops=pops, storage=storage, apps=apps,
                  url_fetch=url_fetch, webhook_delivery=delivery, cors=cors,
                  heartbeat=heartbeat, handle_leases=leases, event_shipping=shipping,
                  upload_expiry=expiry, timeouts=timeouts,
                  max_connections=max_connections, access_log=access_log,
                  log_format=log_format, log_level=log_level,
                  shutdown_timeout=shutdown_timeout)


def _coordinator(r: _Reader, base: Path) -> CoordinatorConfig:
    listen = r.listen("listen")
    public_url = r.url("public_url")
    state_dir = r.path("state_dir", base)
    config = CoordinatorConfig(
        listen=listen,
        public_url=public_url,
        state_dir=state_dir,
        internal_url=r.url("internal_url", public_url),
        state=_state(r, state_dir),
        metrics=_metrics(r),
        operator=_operator(r),
    )
    r.done()
    return config


def _operator(r: _Reader) -> OperatorConfig:
    """`coordinator.operator`: the operator's page's sign-in."""
    reader = r.child("operator", None)
    if reader is None:
        return OperatorConfig()
    if not isinstance(reader.data, dict):
        raise r.fail("operator", "must be a mapping (user, password)")
    password = reader.secret("password", None)
    if password is not None and len(password) < 12:
        raise reader.fail("password", "must be at least 12 characters")
    user = reader.text("user", OperatorConfig.user)
    if ":" in user:  # basic auth splits user from password at the first colon
        raise reader.fail("user", "must not contain ':'")
    config = OperatorConfig(user=user, password=password)
    reader.done()
    return config


_STATE_FORMS = ("sqlite (the default), sqlite:///ABSOLUTE/PATH or "
                "postgresql://USER@HOST:PORT/DATABASE")


def _state(r: _Reader, state_dir: Path) -> StateConfig:
    """`coordinator.state` (or `state_env`: the environment variable that holds it): the
    engine that keeps the coordinator's state, and where."""
    value = r.secret("state", "sqlite")
    synchronous = r.choice("sqlite_synchronous", ("full", "normal"), "full")
    pool_size = r.count("postgres_pool_size", PostgresStateConfig.pool_size)
    if value == "sqlite":
        return SqliteStateConfig(state_dir / STATE_FILE, synchronous)
    scheme, url, rest = value.partition("://")
    if not url:
        # Not repeated back when it came from the environment: it may be a secret.
        given = f" (got {value!r})" if "state_env" not in r.data else ""
        raise r.fail("state", f"must be {_STATE_FORMS}{given}")
    # Only the scheme is repeated back: a database URL may carry a password.
    if scheme == "sqlite":
        if not rest.startswith("/") or not rest.strip("/"):
            raise r.fail("state", f"must be {_STATE_FORMS}: a sqlite:// URL names an "
                                  "absolute path, with three slashes")
        return SqliteStateConfig(Path(rest), synchronous)
    if scheme in ("postgresql", "postgres"):
        if "sqlite_synchronous" in r.data:
            raise r.fail("sqlite_synchronous", "applies to the SQLite engine only")
        return PostgresStateConfig(value, pool_size=pool_size)
    raise r.fail("state", f"must be {_STATE_FORMS} (got a {scheme}:// URL)")


def _pops(top: _Reader, base: Path) -> tuple[PopConfig, ...]:
    value = top.raw("pops")
    if not isinstance(value, list) or not value:
        raise top.fail("pops", "must be a non-empty list")
    pops: list[PopConfig] = []
    for index, item in enumerate(value):
        r = _Reader(top.source, f"pops[{index}]", item)
        name = r.text("name")
        if not _NAME_RE.match(name):
            raise r.fail("name", "must be lowercase letters, digits, '-', '_' or '.'")
        if any(p.name == name for p in pops):
            raise r.fail("name", f"POP {name!r} is defined twice")
        tls_reader = r.child("tls", None)
        tls = None
        if tls_reader is not None:
            tls = TlsConfig(cert=tls_reader.path("cert", base), key=tls_reader.path("key", base))
            tls_reader.done()
        pops.append(PopConfig(
            name=name,
            region=r.text("region", name),
            listen=r.listen("listen"),
            public_url=r.url("public_url"),
            spool_dir=r.path("spool_dir", base),
            tls=tls,
            networks=_networks(r, pops),
            min_free_space=_floor(r, "min_free_space", MIN_FREE_SPACE),
            metrics=_metrics(r),
        ))
        r.done()
    return tuple(pops)


def _metrics(r: _Reader) -> MetricsConfig:
    """A service's `metrics:` block: who may scrape `/metrics`, and on which address."""
    reader = r.child("metrics", None)
    if reader is None:
        return MetricsConfig()
    if not isinstance(reader.data, dict):
        raise r.fail("metrics", "must be a mapping (auth, listen)")
    config = MetricsConfig(
        auth=reader.choice("auth", ("internal", "none"), MetricsConfig.auth),
        listen=reader.listen("listen") if reader.raw("listen", None) is not None else None)
    reader.done()
    return config


def _floor(r: _Reader, name: str, default: int) -> int:
    """A size that may also be 0 (no floor)."""
    value = r.raw(name, default)
    return 0 if type(value) is int and value == 0 else r.size(name, default)


def _networks(r: _Reader, earlier: list[PopConfig]) -> tuple[IpNetwork, ...]:
    """A POP's client networks, as CIDR prefixes. One prefix maps to one POP: two would
    leave the choice between them to the order of the file."""
    value = r.raw("networks", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise r.fail("networks", "must be a list of CIDR prefixes such as 10.0.0.0/8")
    networks: list[IpNetwork] = []
    for index, item in enumerate(value):
        key = f"networks[{index}]"
        if not isinstance(item, str):
            raise r.fail(key, f"must be a CIDR prefix in quotes (got {item!r})")
        try:
            network = ipaddress.ip_network(item.strip(), strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                loose = ipaddress.ip_network(item.strip(), strict=False)
                raise r.fail(key, f"{item} has host bits set; did you mean {loose}?") from exc
            raise r.fail(key, f"{item!r} is not a CIDR prefix such as 10.0.0.0/8 or "
                              "2001:db8::/32") from exc
        if network in networks:
            raise r.fail(key, f"{network} is listed twice")
        for pop in earlier:
            if network in pop.networks:
                raise r.fail(key, f"{network} is already mapped to POP {pop.name!r}")
        networks.append(network)
    return tuple(networks)


def _storage(top: _Reader, base: Path) -> dict[str, StorageConfig]:
    result: dict[str, StorageConfig] = {}
    for name, r in top.items("storage"):
        if not _NAME_RE.match(name):
            raise top.fail(f"storage.{name}", "must be lowercase letters, digits, '-', '_', '.'")
        driver = DRIVERS[r.choice("driver", tuple(DRIVERS))]
        provider = r.text("provider", "s3").lower()
        container = r.text("container")
        extra = r.raw("containers", [])
        if not isinstance(extra, list) or not all(isinstance(c, str) and c for c in extra):
            raise r.fail("containers", "must be a list of container names")
        settings = driver.read_settings(r, base)
        r.done()  # a key of another driver is unknown here, and said so
        result[name] = StorageConfig(
            name=name, provider=provider, driver=driver.name, container=container,
            containers=tuple(extra), settings=settings)
    return result


def _apps(top: _Reader, storage: Mapping[str, StorageConfig]) -> dict[str, AppConfig]:
    apps: dict[str, AppConfig] = {}
    for apikey, r in top.items("apps"):
        if not re.match(r"^[A-Za-z0-9_-]{8,64}$", apikey):
            raise top.fail(f"apps.{apikey}", "an apikey is 8-64 letters, digits, '-' or '_'")
        names = r.raw("storage")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise r.fail("storage", "must name at least one storage location")
        for name in names:
            if name not in storage:
                raise r.fail("storage", f"no storage location named {name!r}")
        providers = [storage[n].provider for n in names]
        if len(set(providers)) != len(providers):
            raise r.fail("storage", "two locations of one app have the same provider")
        secret = r.secret("secret")
        if len(secret) < 16:
            raise r.fail("secret", "must be at least 16 characters")
        apps[apikey] = AppConfig(
            apikey=apikey,
            secret=secret,
            security=r.choice("security", ("required", "optional"), "required"),
            storage=tuple(names),
            max_upload_size=r.size("max_upload_size", 5 * 1024**3),
            webhooks=_webhooks(r),
        )
        r.done()
    return apps


def _webhooks(app: _Reader) -> tuple[WebhookConfig, ...]:
    value = app.raw("webhooks", [])
    if not isinstance(value, list):
        raise app.fail("webhooks", "must be a list of {url, secret, actions}")
    hooks: list[WebhookConfig] = []
    for index, item in enumerate(value):
        r = _Reader(app.source, f"{app.key('webhooks')}[{index}]", item)
        url = r.url("url")
        if any(hook.url == url for hook in hooks):
            raise r.fail("url", f"{url} is listed twice")
        secret = r.secret("secret")
        if len(secret) < 16:
            raise r.fail("secret", "must be at least 16 characters")
        actions = r.raw("actions", list(WEBHOOK_ACTIONS))
        if isinstance(actions, str):
            actions = [actions]
        if (not isinstance(actions, list) or not actions
                or any(action not in WEBHOOK_ACTIONS for action in actions)):
            raise r.fail("actions", f"must be a list of: {', '.join(WEBHOOK_ACTIONS)}")
        hooks.append(WebhookConfig(url=url, secret=secret, actions=frozenset(actions)))
        r.done()
    return tuple(hooks)


def _webhook_delivery(r: _Reader) -> WebhookDeliveryConfig:
    defaults = WebhookDeliveryConfig()
    config = WebhookDeliveryConfig(
        timeout=r.number("timeout", defaults.timeout, minimum=0.1),
        first_retry=r.number("first_retry", defaults.first_retry, minimum=0.01),
        max_interval=r.number("max_interval", defaults.max_interval, minimum=0.01),
        give_up_after=r.number("give_up_after", defaults.give_up_after, minimum=1),
        concurrency=int(r.number("concurrency", defaults.concurrency, minimum=1)),
    )
    r.done()
    return config


def _heartbeat(r: _Reader) -> HeartbeatConfig:
    defaults = HeartbeatConfig()
    interval = r.number("interval", defaults.interval, minimum=0.01)
    timeout = r.number("timeout", max(defaults.timeout, 3 * interval), minimum=0.01)
    # One heartbeat late (a busy POP, a slow network) must not make a POP look down.
    if timeout < 2 * interval:
        raise r.fail("timeout", f"must be at least twice heartbeat.interval ({interval:g} s), "
                                "so that one late heartbeat does not mark a POP down")
    r.done()
    return HeartbeatConfig(interval=interval, timeout=timeout)


def _handle_leases(r: _Reader) -> HandleLeaseConfig:
    block_size = r.count("block_size", HandleLeaseConfig.block_size)
    if block_size > MAX_BLOCK_SIZE:
        raise r.fail("block_size", f"must be at most {MAX_BLOCK_SIZE:,} (what a handle's "
                                   "index can number)")
    config = HandleLeaseConfig(
        block_size=block_size,
        low_water=r.count("low_water", HandleLeaseConfig.low_water),
        outage=r.number("outage", HandleLeaseConfig.outage),
    )
    r.done()
    return config


def _event_shipping(r: _Reader) -> EventShippingConfig:
    batch_size = r.count("batch_size", EventShippingConfig.batch_size)
    if batch_size > 10_000:
        raise r.fail("batch_size", "must be at most 10000 (one transaction at the "
                                   "coordinator)")
    linger = r.number("linger", EventShippingConfig.linger)
    # Every event waits this long before it leaves: the time until the coordinator
    # shows a store grows by as much.
    if linger > 1.0:
        raise r.fail("linger", "must be at most 1 second")
    config = EventShippingConfig(
        batch_size=batch_size, linger=linger,
        retention=r.number("retention", EventShippingConfig.retention),
    )
    r.done()
    return config


def _upload_expiry(r: _Reader) -> UploadExpiryConfig:
    # A TTL under a minute would fail uploads between two of their own requests.
    config = UploadExpiryConfig(
        ttl=r.number("ttl", UploadExpiryConfig.ttl, minimum=60),
        store_ttl=r.number("store_ttl", UploadExpiryConfig.store_ttl, minimum=1),
        sweep_interval=r.number("sweep_interval", UploadExpiryConfig.sweep_interval,
                                minimum=1),
    )
    r.done()
    return config


def _timeouts(r: _Reader) -> TimeoutsConfig:
    # Under a tenth of a second a busy node would drop clients that are only slow.
    config = TimeoutsConfig(
        header=r.number("header", TimeoutsConfig.header, minimum=0.1),
        body_idle=r.number("body_idle", TimeoutsConfig.body_idle, minimum=0.1),
        keep_alive=r.number("keep_alive", TimeoutsConfig.keep_alive, minimum=0.1),
    )
    r.done()
    return config


def _url_fetch(r: _Reader) -> UrlFetchConfig:
    config = UrlFetchConfig(
        allow_private=r.flag("allow_private", False),
        max_size=r.size("max_size", UrlFetchConfig.max_size),
        timeout=r.number("timeout", UrlFetchConfig.timeout, minimum=0.1),
        max_redirects=int(r.number("max_redirects", UrlFetchConfig.max_redirects)),
    )
    r.done()
    return config



# Browsers cap a preflight's lifetime (Firefox at a day, Chromium at two hours); a larger
# value would only pretend to save requests.
_MAX_PREFLIGHT_AGE = 86400


def _cors(r: _Reader) -> CorsConfig:
    value = r.raw("origins", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise r.fail("origins", 'must be a list of origins such as https://app.example.com, '
                                'or "*"')
    origins: list[str] = []
    for index, item in enumerate(value):
        key = f"origins[{index}]"
        if item == ANY_ORIGIN:
            if len(value) != 1:
                raise r.fail(key, '"*" allows every origin: list it alone')
            origins.append(ANY_ORIGIN)
            continue
        origin = normalize_origin(item) if isinstance(item, str) else None
        if origin is None:
            raise r.fail(key, f"must be an origin, scheme://host[:port] with no path "
                              f"(got {item!r})")
        if origin in origins:
            raise r.fail(key, f"{origin} is listed twice")
        origins.append(origin)
    max_age = r.raw("max_age", CorsConfig.max_age)
    if (isinstance(max_age, bool) or not isinstance(max_age, int)
            or not 0 <= max_age <= _MAX_PREFLIGHT_AGE):
        raise r.fail("max_age", f"must be whole seconds from 0 to {_MAX_PREFLIGHT_AGE}")
    r.done()
    return CorsConfig(origins=tuple(origins), max_age=max_age)
