"""`admit_store`: the checks a new file passes before a byte is read, the same for a REST
store and an Upload API start."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import Config
from common.config.loader import parse_config
from common.protocol.errors import CinError, Code
from common.protocol.security import Action, Credentials, encode_policy, sign_policy
from common.protocol.store_admission import admit_store
from common.storage import Access

REPO = Path(__file__).resolve().parents[2]
APIKEY = "DEMOAPIKEY0123456789"
SECRET = "demo-app-secret-change-me"


def config(security: str = "optional") -> Config:
    data: dict[str, Any] = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    data["apps"][APIKEY]["security"] = security
    return parse_config(data, source="dev.yaml", base=REPO)


def policy(**fields: Any) -> Credentials:
    text = encode_policy({"expiry": int(time.time()) + 3600, **fields})
    return Credentials(policy=text, signature=sign_policy(SECRET, text))


def test_a_store_is_admitted_with_its_app_location_params_and_grant() -> None:
    admitted = admit_store(config(), apikey=APIKEY, provider="S3",
                           options={"path": "/in/", "access": "public"},
                           creds=Credentials.NONE)

    assert admitted.app.apikey == APIKEY
    assert admitted.location.name == "dev-bucket"
    assert (admitted.params.path, admitted.params.container) == ("in/", "cin-dev")
    assert admitted.params.access is Access.PUBLIC
    assert admitted.action == Action.store(path="in/", container="cin-dev")
    assert not admitted.grant.secured


def test_no_provider_is_the_apps_first_location() -> None:
    admitted = admit_store(config(), apikey=APIKEY, provider=None, options={},
                           creds=Credentials.NONE)
    assert admitted.location.name == "dev-bucket"


def test_the_policy_is_checked_against_the_store_options() -> None:
    secured = config("required")
    creds = policy(call=["store"], path="in/.*")
    admitted = admit_store(secured, apikey=APIKEY, provider="S3", options={"path": "in/a"},
                           creds=creds)
    assert admitted.grant.secured

    with pytest.raises(CinError) as refused:
        admit_store(secured, apikey=APIKEY, provider="S3", options={"path": "out/a"},
                    creds=creds)
    assert refused.value.code is Code.POLICY_DENIES


@pytest.mark.parametrize(("apikey", "provider", "options", "code"), [
    (None, "S3", {}, Code.MISSING_APIKEY),
    ("NOSUCHAPIKEY00", "S3", {}, Code.UNKNOWN_APIKEY),
    (APIKEY, "azure", {}, Code.UNKNOWN_PROVIDER),
    (APIKEY, "S3", {"container": "someone-elses"}, Code.CONTAINER_NOT_ALLOWED),
    (APIKEY, "S3", {"access": "world"}, Code.BAD_PARAMETER),
])
def test_a_bad_store_is_refused_saying_why(apikey: str | None, provider: str,
                                           options: dict[str, str], code: Code) -> None:
    with pytest.raises(CinError) as refused:
        admit_store(config(), apikey=apikey, provider=provider, options=options,
                    creds=Credentials.NONE)
    assert refused.value.code is code


def test_a_required_app_needs_credentials() -> None:
    with pytest.raises(CinError) as refused:
        admit_store(config("required"), apikey=APIKEY, provider="S3", options={},
                    creds=Credentials.NONE)
    assert refused.value.code is Code.SECURITY_REQUIRED
