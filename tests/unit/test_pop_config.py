"""The POPs' client networks and the heartbeat settings, as the config loader reads them."""

from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import ConfigError, HeartbeatConfig
from common.config.loader import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def base() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "configs" / "dev.yaml").read_text()))


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, source="test.yaml", base=Path("/srv"))


def test_networks_and_heartbeat_default_to_nothing_mapped_and_five_seconds() -> None:
    config = parse(base())
    assert [pop.networks for pop in config.pops] == [(), ()]
    assert config.heartbeat == HeartbeatConfig(interval=5.0, timeout=15.0)


def test_networks_are_parsed_as_ipv4_and_ipv6_prefixes() -> None:
    data = yaml.safe_load("""
        networks: [10.0.0.0/8, 2001:db8::/32, 192.168.1.7]
    """)
    config = base()
    config["pops"][0].update(data)
    config["pops"][1]["networks"] = "10.1.0.0/16"  # one prefix needs no list
    pops = parse(config).pops
    assert pops[0].networks == (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"),
                                ip_network("192.168.1.7/32"))
    assert pops[1].networks == (ip_network("10.1.0.0/16"),)


def test_only_an_interval_makes_the_timeout_three_intervals() -> None:
    data = base()
    data["heartbeat"] = {"interval": 10}
    assert parse(data).heartbeat == HeartbeatConfig(interval=10.0, timeout=30.0)
    data["heartbeat"] = {"interval": 0.1, "timeout": 0.5}
    assert parse(data).heartbeat == HeartbeatConfig(interval=0.1, timeout=0.5)


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d["pops"][0].update(networks=["10.0.0.1/8"]), "pops[0].networks[0]",
         "host bits set; did you mean 10.0.0.0/8?"),
        (lambda d: d["pops"][0].update(networks=["10.0.0.0/33"]), "pops[0].networks[0]",
         "not a CIDR prefix"),
        (lambda d: d["pops"][0].update(networks=["europe"]), "pops[0].networks[0]",
         "not a CIDR prefix"),
        (lambda d: d["pops"][0].update(networks=[8]), "pops[0].networks[0]",
         "CIDR prefix in quotes"),
        (lambda d: d["pops"][0].update(networks={"10.0.0.0/8": True}), "pops[0].networks",
         "must be a list"),
        (lambda d: d["pops"][0].update(networks=["10.0.0.0/8", "10.0.0.0/8"]),
         "pops[0].networks[1]", "listed twice"),
        (lambda d: (d["pops"][0].update(networks=["2001:db8::/32"]),
                    d["pops"][1].update(networks=["10.0.0.0/8", "2001:0db8::/32"])),
         "pops[1].networks[1]", "already mapped to POP 'us-east-1'"),
        (lambda d: d.update(heartbeat={"interval": 0}), "heartbeat.interval", "at least 0.01"),
        (lambda d: d.update(heartbeat={"interval": "often"}), "heartbeat.interval",
         "must be a number"),
        (lambda d: d.update(heartbeat={"interval": 5, "timeout": 9}), "heartbeat.timeout",
         "at least twice heartbeat.interval (5 s)"),
        (lambda d: d.update(heartbeat={"period": 5}), "heartbeat.period",
         "not a known setting"),
    ],
)
def test_a_wrong_network_or_heartbeat_names_the_key(mutate: Any, key: str, words: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == key
    assert words in caught.value.problem


def test_the_s3_example_maps_networks_to_its_pops(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CIN_INTERNAL_SECRET", "CIN_APP_SECRET", "CIN_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "a-secret-of-some-length")
    config = load_config(REPO / "configs" / "s3-example.yaml")
    assert [pop.networks for pop in config.pops] == [
        (ip_network("10.10.0.0/16"), ip_network("2001:db8:10::/48")),
        (ip_network("10.20.0.0/16"), ip_network("2001:db8:20::/48"))]
    assert config.heartbeat == HeartbeatConfig()


def test_a_pops_free_space_floor_defaults_to_256_mib_and_may_be_off() -> None:
    config = base()
    config["pops"][0]["min_free_space"] = "1GiB"
    config["pops"][1]["min_free_space"] = 0
    pops = parse(config).pops
    assert [pop.min_free_space for pop in pops] == [1024**3, 0]
    assert parse(base()).pops[0].min_free_space == 256 * 1024**2


@pytest.mark.parametrize("value", [-1, "lots", False])
def test_a_free_space_floor_is_a_size(value: Any) -> None:
    config = base()
    config["pops"][0]["min_free_space"] = value
    with pytest.raises(ConfigError) as caught:
        parse(config)
    assert caught.value.key == "pops[0].min_free_space"
