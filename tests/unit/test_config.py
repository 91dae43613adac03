from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import (
    ConfigError,
    EventShippingConfig,
    HandleLeaseConfig,
    PostgresStateConfig,
    SqliteStateConfig,
    TimeoutsConfig,
    UploadExpiryConfig,
)
from common.config.loader import load_config, parse_config
from common.storage.drivers import LocalSettings, S3Settings

REPO = Path(__file__).resolve().parents[2]


def base() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "configs" / "dev.yaml").read_text()))


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, source="test.yaml", base=Path("/srv"))


def test_dev_config_loads_with_two_pops_and_a_local_bucket() -> None:
    config = load_config(REPO / "configs" / "dev.yaml")
    assert [p.name for p in config.pops] == ["us-east-1", "eu-west-1"]
    assert config.storage["dev-bucket"].driver == "local"
    # No loop named: each process takes its role's (docs/benchmarks.md).
    assert config.event_loop is None
    assert config.loop_for(runs_pops=True) == "asyncio"
    assert config.loop_for(runs_pops=False) == "uvloop"
    app = config.apps["DEMOAPIKEY0123456789"]
    assert app.max_upload_size == 5 * 1024**3


def test_s3_example_reads_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIN_INTERNAL_SECRET", "an-internal-secret-of-length")
    monkeypatch.setenv("CIN_APP_SECRET", "an-app-secret-of-some-length")
    monkeypatch.setenv("CIN_WEBHOOK_SECRET", "a-webhook-secret-of-length")
    config = load_config(REPO / "configs" / "s3-example.yaml")
    assert config.internal_secret == "an-internal-secret-of-length"
    app = config.apps["PRODUCTIONAPIKEY0001"]
    assert app.security == "required"
    assert config.storage["main-bucket"].driver == "s3"
    (hook,) = app.webhooks
    assert hook.secret == "a-webhook-secret-of-length"
    assert hook.actions == {"fp.upload", "fp.overwrite", "fp.delete"}
    assert config.webhook_delivery.give_up_after == 3 * 86400
    assert config.upload_expiry == UploadExpiryConfig()  # the example shows the defaults
    assert (config.log_format, config.log_level) == ("json", "info")
    # Secrets stay out of reprs, so a logged config never carries them.
    assert "of-length" not in repr(config)


def test_missing_environment_secret_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIN_INTERNAL_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "configs" / "s3-example.yaml")
    assert caught.value.key == "internal_secret_env"
    assert "CIN_INTERNAL_SECRET" in str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d.update(evnet_loop="asyncio"), "evnet_loop", "not a known setting"),
        (lambda d: d.update(event_loop="trio"), "event_loop", "one of uvloop, asyncio"),
        (lambda d: d["coordinator"].update(listen="localhost"), "coordinator.listen",
         "HOST:PORT"),
        (lambda d: d["pops"][1].update(name="us-east-1"), "pops[1].name", "defined twice"),
        (lambda d: d["pops"][0].pop("spool_dir"), "pops[0].spool_dir", "required"),
        (lambda d: d["storage"]["dev-bucket"].update(driver="ftp"),
         "storage.dev-bucket.driver", "one of local, s3"),
        (lambda d: d["storage"]["dev-bucket"].pop("root"), "storage.dev-bucket.root",
         "required"),
        # A key of another driver is not one of this driver's settings.
        (lambda d: d["storage"]["dev-bucket"].update(region="us-east-1"),
         "storage.dev-bucket.region", "not a known setting"),
        (lambda d: d["storage"]["dev-bucket"].update(driver="s3"),
         "storage.dev-bucket.root", "not a known setting"),
        (lambda d: d["storage"]["dev-bucket"].update(
            driver="s3", root=None, addressing_style="sideways"),
         "storage.dev-bucket.addressing_style", "one of auto, path, virtual"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(storage=["nope"]),
         "apps.DEMOAPIKEY0123456789.storage", "no storage location"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(max_upload_size="lots"),
         "apps.DEMOAPIKEY0123456789.max_upload_size", "positive size"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(security="sometimes"),
         "apps.DEMOAPIKEY0123456789.security", "required, optional"),
        (lambda d: d["url_fetch"].update(allow_private="yes"), "url_fetch.allow_private",
         "true or false"),
        (lambda d: d.update(internal_secret="short"), "internal_secret", "16 characters"),
        (lambda d: d["pops"][0].update(public_url="127.0.0.1:1"), "pops[0].public_url",
         "http:// or https://"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(webhooks={"url": "x"}),
         "apps.DEMOAPIKEY0123456789.webhooks", "must be a list"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(
            webhooks=[{"url": "ftp://hooks", "secret": "s" * 16}]),
         "apps.DEMOAPIKEY0123456789.webhooks[0].url", "http:// or https://"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(
            webhooks=[{"url": "http://hooks.test/a", "secret": "short"}]),
         "apps.DEMOAPIKEY0123456789.webhooks[0].secret", "16 characters"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(
            webhooks=[{"url": "http://hooks.test/a", "secret": "s" * 16,
                       "actions": ["fp.upload", "fp.converted"]}]),
         "apps.DEMOAPIKEY0123456789.webhooks[0].actions", "fp.upload, fp.overwrite"),
        (lambda d: d["apps"]["DEMOAPIKEY0123456789"].update(
            webhooks=[{"url": "http://hooks.test/a", "secret": "s" * 16}] * 2),
         "apps.DEMOAPIKEY0123456789.webhooks[1].url", "listed twice"),
        (lambda d: d.update(webhook_delivery={"first_retry": 0}),
         "webhook_delivery.first_retry", "at least 0.01"),
        (lambda d: d.update(webhook_delivery={"retries": 3}),
         "webhook_delivery.retries", "not a known setting"),
        (lambda d: d.update(upload_expiry={"ttl": 30}), "upload_expiry.ttl",
         "at least 60"),
        (lambda d: d.update(upload_expiry={"ttl": "1d"}), "upload_expiry.ttl",
         "must be a number"),
        (lambda d: d.update(upload_expiry={"sweep_interval": 0}),
         "upload_expiry.sweep_interval", "at least 1"),
        (lambda d: d.update(upload_expiry={"tll": 3600}), "upload_expiry.tll",
         "not a known setting"),
        (lambda d: d.update(upload_expiry={"store_ttl": 0}), "upload_expiry.store_ttl",
         "at least 1"),
        (lambda d: d.update(upload_expiry={"store_ttl": 60}), "upload_expiry.store_ttl",
         "longer than url_fetch.timeout (60 s)"),
        (lambda d: d.update(url_fetch={"timeout": 7200}), "upload_expiry.store_ttl",
         "longer than url_fetch.timeout (7200 s)"),
        (lambda d: d.update(timeouts={"body_idle": 0}), "timeouts.body_idle",
         "at least 0.1"),
        (lambda d: d.update(timeouts={"header": "30s"}), "timeouts.header",
         "must be a number"),
        (lambda d: d.update(timeouts={"keepalive": 75}), "timeouts.keepalive",
         "not a known setting"),
        (lambda d: d.update(max_connections=0), "max_connections", "at least 1"),
        (lambda d: d.update(max_connections=10.5), "max_connections", "whole number"),
        (lambda d: d.update(access_log="off"), "access_log", "true or false"),
        (lambda d: d.update(log_format="logfmt"), "log_format", "one of text, json"),
        (lambda d: d.update(log_level="verbose"), "log_level",
         "one of debug, info, warning, error"),
        (lambda d: d.update(log_level="INFO"), "log_level", "got 'INFO'"),
    ],
)
def test_a_wrong_key_or_value_names_the_file_and_key(mutate: Any, key: str, words: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == key
    assert words in caught.value.problem
    assert str(caught.value).startswith(f"test.yaml: {key}: ")


def test_upload_expiry_defaults_to_a_day_and_can_be_set() -> None:
    assert parse(base()).upload_expiry == UploadExpiryConfig(ttl=86400, store_ttl=3600,
                                                             sweep_interval=600)
    data = base()
    data["upload_expiry"] = {"ttl": 7200}
    assert parse(data).upload_expiry == UploadExpiryConfig(ttl=7200, sweep_interval=600)


def test_a_store_ttl_may_be_short_when_url_fetches_are() -> None:
    data = base()
    data["url_fetch"] = {"timeout": 1}
    data["upload_expiry"] = {"store_ttl": 2, "sweep_interval": 1}
    assert parse(data).upload_expiry == UploadExpiryConfig(store_ttl=2, sweep_interval=1)


def test_the_state_is_sqlite_under_the_state_dir_unless_named() -> None:
    assert parse(base()).coordinator.state == SqliteStateConfig(
        Path("/srv/var/coordinator/state.sqlite3"), synchronous="full")
    data = base()
    data["coordinator"].update(state="sqlite", sqlite_synchronous="normal")
    assert parse(data).coordinator.state == SqliteStateConfig(
        Path("/srv/var/coordinator/state.sqlite3"), synchronous="normal")
    data["coordinator"].update(state="sqlite:///data/cin/state.db")
    assert parse(data).coordinator.state == SqliteStateConfig(
        Path("/data/cin/state.db"), synchronous="normal")


@pytest.mark.parametrize(("state", "words"), [
    ("mysql://cin:hunter22@db.internal/cin", "got a mysql:// URL"),
    ("sqlite://relative/state.db", "absolute path, with three slashes"),
    ("sqlite:///", "absolute path, with three slashes"),
    ("sqlite3", "sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST:PORT/DATABASE "
                "(got 'sqlite3')"),
    ("/var/lib/cin/state.db", "sqlite (the default), sqlite:///ABSOLUTE/PATH or"),
])
def test_a_state_engine_cin_does_not_have_is_a_config_error(state: str, words: str) -> None:
    data = base()
    data["coordinator"]["state"] = state
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == "coordinator.state"
    assert words in caught.value.problem
    assert "hunter22" not in str(caught.value)  # a database URL's password is not echoed


def test_the_state_may_be_a_postgresql_url_given_or_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = base()
    data["coordinator"]["state"] = "postgresql://cin:hunter22@db.internal/cin"
    state = parse(data).coordinator.state
    assert state == PostgresStateConfig("postgresql://cin:hunter22@db.internal/cin",
                                        pool_size=10)
    assert "hunter22" not in repr(state)
    data = base()
    data["coordinator"].update(state_env="CIN_TEST_STATE", postgres_pool_size=4)
    monkeypatch.setenv("CIN_TEST_STATE", "postgres://db.internal/cin")
    assert parse(data).coordinator.state == PostgresStateConfig("postgres://db.internal/cin",
                                                                pool_size=4)


@pytest.mark.parametrize(("settings", "key", "words"), [
    ({"state_env": "CIN_TEST_UNSET"}, "coordinator.state_env",
     "environment variable CIN_TEST_UNSET is not set"),
    ({"state_env": "CIN_TEST_STATE"}, "coordinator.state",
     "must be sqlite (the default), sqlite:///ABSOLUTE/PATH or postgresql://"),
    ({"state": "postgresql://cin:hunter22@db/cin", "sqlite_synchronous": "normal"},
     "coordinator.sqlite_synchronous", "applies to the SQLite engine only"),
    ({"state": "postgresql://cin:hunter22@db/cin", "postgres_pool_size": 0},
     "coordinator.postgres_pool_size", "at least 1"),
])
def test_a_postgresql_state_that_cannot_be_used_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch, settings: dict[str, object], key: str,
        words: str) -> None:
    monkeypatch.delenv("CIN_TEST_UNSET", raising=False)
    monkeypatch.setenv("CIN_TEST_STATE", "hunter22")  # not a URL: a password, misplaced
    data = base()
    data["coordinator"].update(settings)
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == key
    assert words in caught.value.problem
    assert "hunter22" not in str(caught.value)


def test_timeouts_and_the_connection_cap_have_defaults_and_can_be_set() -> None:
    defaults = parse(base())
    assert defaults.timeouts == TimeoutsConfig(header=30, body_idle=60, keep_alive=75)
    assert (defaults.max_connections, defaults.access_log) == (4096, True)
    data = base()
    data.update(timeouts={"body_idle": 5}, max_connections=100, access_log=False)
    config = parse(data)
    assert config.timeouts == TimeoutsConfig(header=30, body_idle=5, keep_alive=75)
    assert (config.max_connections, config.access_log) == (100, False)


def test_handle_leases_and_event_shipping_have_defaults_and_can_be_set() -> None:
    defaults = parse(base())
    assert defaults.handle_leases == HandleLeaseConfig(block_size=65536, low_water=4096,
                                                       outage=900)
    assert defaults.event_shipping == EventShippingConfig(batch_size=500, linger=0.005,
                                                          retention=3600)
    data = base()
    data.update(handle_leases={"block_size": 1000, "low_water": 10, "outage": 60},
                event_shipping={"batch_size": 50, "linger": 0, "retention": 0})
    config = parse(data)
    assert config.handle_leases == HandleLeaseConfig(block_size=1000, low_water=10, outage=60)
    assert config.event_shipping == EventShippingConfig(batch_size=50, linger=0, retention=0)


@pytest.mark.parametrize(("section", "settings", "key", "problem"), [
    ("handle_leases", {"block_size": 0}, "handle_leases.block_size", "at least 1"),
    ("handle_leases", {"block_size": 20_000_000}, "handle_leases.block_size", "at most"),
    ("handle_leases", {"low_water": "many"}, "handle_leases.low_water", "whole number"),
    ("handle_leases", {"outage": -1}, "handle_leases.outage", "at least 0"),
    ("handle_leases", {"block": 5}, "handle_leases.block", "not a known setting"),
    ("event_shipping", {"batch_size": 0}, "event_shipping.batch_size", "at least 1"),
    ("event_shipping", {"batch_size": 100_000}, "event_shipping.batch_size", "at most"),
    ("event_shipping", {"linger": 5}, "event_shipping.linger", "at most 1 second"),
    ("event_shipping", {"retention": "1h"}, "event_shipping.retention", "a number"),
])
def test_handle_lease_and_shipping_mistakes_name_the_key(
        section: str, settings: dict[str, Any], key: str, problem: str) -> None:
    data = base()
    data[section] = settings
    with pytest.raises(ConfigError) as raised:
        parse(data)
    assert raised.value.key == key
    assert problem in raised.value.problem


def test_logs_are_text_at_info_unless_set() -> None:
    defaults = parse(base())
    assert (defaults.log_format, defaults.log_level) == ("text", "info")
    data = base()
    data.update(log_format="json", log_level="warning")
    config = parse(data)
    assert (config.log_format, config.log_level) == ("json", "warning")


def test_webhooks_default_to_every_action() -> None:
    data = base()
    data["apps"]["DEMOAPIKEY0123456789"]["webhooks"] = [
        {"url": "https://hooks.test/all", "secret": "s" * 16},
        {"url": "https://hooks.test/uploads", "secret": "t" * 16, "actions": "fp.upload"}]
    app = parse(data).apps["DEMOAPIKEY0123456789"]
    assert [hook.actions for hook in app.webhooks] == [
        {"fp.upload", "fp.overwrite", "fp.delete"}, {"fp.upload"}]
    assert app.webhook("https://hooks.test/uploads") is app.webhooks[1]
    assert app.webhook("https://hooks.test/other") is None


def test_sizes_accept_units() -> None:
    data = base()
    data["apps"]["DEMOAPIKEY0123456789"]["max_upload_size"] = "100MB"
    assert parse(data).apps["DEMOAPIKEY0123456789"].max_upload_size == 100_000_000
    data["apps"]["DEMOAPIKEY0123456789"]["max_upload_size"] = "1.5KiB"
    assert parse(data).apps["DEMOAPIKEY0123456789"].max_upload_size == 1536


def test_relative_paths_resolve_against_the_base() -> None:
    config = parse(base())
    assert config.pops[0].spool_dir == Path("/srv/var/spool/us-east-1")
    assert config.storage["dev-bucket"].settings == LocalSettings(root=Path("/srv/var/bucket"))


def test_each_driver_reads_its_own_settings() -> None:
    data = base()
    data["storage"]["dev-bucket"] = {
        "provider": "s3", "driver": "s3", "container": "uploads",
        "endpoint_url": "http://127.0.0.1:9000/", "addressing_style": "path"}
    location = parse(data).storage["dev-bucket"]
    assert (location.driver, location.container) == ("s3", "uploads")
    assert location.settings == S3Settings(endpoint_url="http://127.0.0.1:9000",
                                           region=None, addressing_style="path")


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("coordinator: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_named_event_loop_is_every_process_loop(loop: str) -> None:
    config = parse({**base(), "event_loop": loop})
    assert config.loop_for(runs_pops=True) == config.loop_for(runs_pops=False) == loop
