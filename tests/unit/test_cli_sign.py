import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from cin.cli import EXIT_OK, EXIT_USAGE, main
from common.config import AppConfig
from common.protocol.security import Action, Credentials, Policy, authorize, sign_policy

REPO = Path(__file__).resolve().parents[2]
APIKEY = "SIGNTESTAPIKEY0001"
SECRET = "sign-test-secret-0123456789"

CONFIG = f"""
internal_secret: internal-secret-for-tests
coordinator:
  listen: 127.0.0.1:18700
  public_url: http://127.0.0.1:18700
  state_dir: state
pops:
  - name: pop-a
    listen: 127.0.0.1:18701
    public_url: http://127.0.0.1:18701
    spool_dir: spool
storage:
  disk:
    driver: local
    root: bucket
    container: box
apps:
  {APIKEY}:
    secret: {SECRET}
    storage: [disk]
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "cin.yaml"
    path.write_text(CONFIG)
    return str(path)


def decode(policy: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(base64.urlsafe_b64decode(policy))
    return fields


def sign(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["sign", *argv]) == EXIT_OK
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["sign", *argv]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    return captured.err


def test_sign_with_every_option(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = int(time.time())
    out = sign(capsys, "-c", config, "--app", APIKEY, "--expiry", "600", "--call", "store",
               "--call", "read", "--call", "store", "--handle", "H1", "--path", "up/.*",
               "--container", "box", "--url", r"https://x\.example/.*", "--max-size", "1000",
               "--min-size", "1")
    assert sign_policy(SECRET, out["policy"]) == out["signature"]
    assert before + 600 <= out["expiry"] <= int(time.time()) + 600
    assert decode(out["policy"]) == {
        "expiry": out["expiry"], "call": ["store", "read"], "handle": "H1", "path": "up/.*",
        "container": "box", "url": r"https://x\.example/.*", "maxSize": 1000, "minSize": 1}
    assert parse_qs(out["query"]) == {"policy": [out["policy"]],
                                      "signature": [out["signature"]]}
    assert out["security"] == f"security=p:{out['policy']},s:{out['signature']}"


def test_signed_policy_is_accepted_by_authorize(config: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = sign(capsys, "-c", config, "--app", APIKEY, "--call", "read", "--handle", "H1")
    app = AppConfig(apikey=APIKEY, secret=SECRET, security="required", storage=("disk",),
                    max_upload_size=10)
    grant = authorize(app, Credentials(out["policy"], out["signature"]), Action.read("H1"))
    assert grant.policy == Policy(expiry=out["expiry"], calls=frozenset({"read"}), handle="H1")


def test_default_is_one_hour_and_no_call(config: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = int(time.time())
    out = sign(capsys, "-c", config, "--app", APIKEY)
    assert decode(out["policy"]) == {"expiry": out["expiry"]}
    assert before + 3600 <= out["expiry"] <= int(time.time()) + 3600


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CIN_TEST_SIGN_SECRET", "from-the-environment")
    out = sign(capsys, "--secret-env", "CIN_TEST_SIGN_SECRET", "--call", "pick")
    assert sign_policy("from-the-environment", out["policy"]) == out["signature"]
    assert decode(out["policy"])["call"] == ["pick"]


def test_compact_output_is_one_line(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "-c", config, "--app", APIKEY, "--compact"]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.count("\n") == 1
    assert set(json.loads(text)) == {"policy", "signature", "expiry", "query", "security"}


def test_unknown_call_is_a_one_line_usage_error(config: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "-c", config, "--app", APIKEY, "--call", "read", "--call", "fly")
    assert err.startswith("cin: sign: unknown call 'fly'")


@pytest.mark.parametrize(("argv", "words"), [
    (["--app", "NOSUCHAPIKEY0000"], "no app 'NOSUCHAPIKEY0000'"),
    (["--app", APIKEY, "--path", "("], "path: is not a valid regular expression"),
    (["--app", APIKEY, "--max-size", "-1"], "maxSize:"),
    (["--app", APIKEY, "--max-size", "5", "--min-size", "6"], "minSize:"),
    (["--app", APIKEY, "--expiry", "0"], "--expiry must be a positive"),
])
def test_usage_errors(config: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                      words: str) -> None:
    assert words in refused(capsys, "-c", config, *argv)


def test_usage_errors_without_a_config(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CIN_TEST_UNSET_SECRET", raising=False)
    assert "CIN_TEST_UNSET_SECRET is not set" in refused(
        capsys, "--secret-env", "CIN_TEST_UNSET_SECRET")
    assert "needs -c CONFIG" in refused(capsys, "--app", APIKEY)


def test_as_a_subprocess(config: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cin", "sign", "-c", config, "--app", APIKEY, "--call", "stat"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == EXIT_OK, result.stderr
    out = json.loads(result.stdout)
    assert sign_policy(SECRET, out["policy"]) == out["signature"]
    assert decode(out["policy"]) == {"expiry": out["expiry"], "call": ["stat"]}
