"""CORS without a server: origins, the `cors:` config section, the policy's decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from multidict import CIMultiDict

from common.config import ConfigError, CorsConfig, normalize_origin
from common.config.loader import load_config, parse_config
from common.web.cors import CorsPolicy, add_vary_origin

REPO = Path(__file__).resolve().parents[2]


def parse_cors(section: Any) -> CorsConfig:
    data = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    data["cors"] = section
    return parse_config(data, source="test.yaml", base=Path("/srv")).cors


@pytest.mark.parametrize(("text", "origin"), [
    ("https://app.example.com", "https://app.example.com"),
    ("HTTPS://App.Example.COM", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),  # the default port goes
    ("http://app.example.com:80", "http://app.example.com"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("https://app.example.com:80", "https://app.example.com:80"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:5173", "http://[::1]:5173"),
    ("capacitor://localhost", "capacitor://localhost"),
])
def test_origins_are_normalized_as_browsers_send_them(text: str, origin: str) -> None:
    assert normalize_origin(text) == origin


@pytest.mark.parametrize("text", [
    "https://app.example.com/", "https://app.example.com/upload", "https://app.example.com?x",
    "https://user@app.example.com", "app.example.com", "//app.example.com", "https://",
    "https://app.example.com:0", "https://app.example.com:65536", "https://app.example.com:",
    "https://..", "https://app.example.com\n", "null", "*", "",
])
def test_anything_but_scheme_host_and_port_is_not_an_origin(text: str) -> None:
    assert normalize_origin(text) is None


def test_cors_is_off_unless_configured() -> None:
    data = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    config = parse_config(data, source="test.yaml", base=Path("/srv")).cors
    assert config == CorsConfig()
    assert not config.enabled
    assert not parse_cors({}).enabled
    assert not parse_cors({"origins": []}).enabled


def test_cors_section_reads_origins_and_max_age() -> None:
    config = parse_cors({"origins": ["https://App.example.com", "http://localhost:3000"],
                         "max_age": 120})
    assert config.origins == ("https://app.example.com", "http://localhost:3000")
    assert config.max_age == 120
    assert config.enabled and not config.any_origin
    assert parse_cors({"origins": "*"}).any_origin
    assert parse_cors({"origins": ["*"]}).max_age == CorsConfig.max_age


def test_the_s3_example_shows_cors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CIN_INTERNAL_SECRET", "CIN_APP_SECRET", "CIN_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "a-secret-of-some-length")
    config = load_config(REPO / "configs" / "s3-example.yaml").cors
    assert config.origins == ("https://app.example.com",)


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"origins": ["https://app.example.com/"]}, "cors.origins[0]", "with no path"),
    ({"origins": ["https://a.example.com", "app.example.com"]}, "cors.origins[1]",
     "scheme://host[:port]"),
    ({"origins": [3]}, "cors.origins[0]", "must be an origin"),
    ({"origins": ["https://a.example.com", "*"]}, "cors.origins[1]", "list it alone"),
    ({"origins": ["https://a.example.com", "https://A.example.com:443"]}, "cors.origins[1]",
     "listed twice"),
    ({"origins": {"app": "https://a.example.com"}}, "cors.origins", "must be a list"),
    ({"max_age": -1}, "cors.max_age", "whole seconds"),
    ({"max_age": 1.5}, "cors.max_age", "whole seconds"),
    ({"max_age": 86401}, "cors.max_age", "0 to 86400"),
    ({"origin": ["https://a.example.com"]}, "cors.origin", "not a known setting"),
    (["https://a.example.com"], "cors", "must be a mapping"),
])
def test_a_wrong_cors_setting_names_its_key(section: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cors(section)
    assert caught.value.key == key
    assert words in caught.value.problem


def test_the_policy_echoes_an_allowed_origin_and_refuses_others() -> None:
    policy = CorsPolicy(parse_cors({"origins": ["https://app.example.com",
                                                "http://localhost:3000"]}))
    assert policy.allow_origin("https://app.example.com") == "https://app.example.com"
    assert policy.allow_origin("https://app.example.com:443") == "https://app.example.com:443"
    assert policy.allow_origin("http://localhost:3000") == "http://localhost:3000"
    for other in ("http://app.example.com", "https://app.example.com.evil.test",
                  "https://evil.test", "http://localhost:3001", "null", "", "*"):
        assert policy.allow_origin(other) is None, other


def test_star_allows_every_origin_without_echoing_it() -> None:
    policy = CorsPolicy(parse_cors({"origins": "*"}))
    assert policy.allow_origin("https://anyone.test") == "*"
    assert policy.allow_origin("null") == "*"


def test_vary_keeps_what_is_there() -> None:
    cases = [(None, "Origin"), ("Accept-Encoding", "Accept-Encoding, Origin"),
             ("origin", "origin"), ("Accept, Origin", "Accept, Origin"), ("*", "*")]
    for before, after in cases:
        headers: CIMultiDict[str] = CIMultiDict()
        if before is not None:
            headers["Vary"] = before
        add_vary_origin(headers)
        assert headers["Vary"] == after
