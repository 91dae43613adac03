"""The REST store's query parameters (and the Upload API's store options, checked alike)."""

from pathlib import Path

import pytest
from support import config_data, to_config

from common.protocol.errors import CinError, Code
from common.protocol.store_params import StoreParams

LOCATION = to_config(config_data(Path("/nonexistent/cin")),
                     Path("/nonexistent/cin")).storage["bucket"]


def test_store_params_as_clients_send_them() -> None:
    params = StoreParams.from_query({"filename": "a.png", "mimetype": " Image/PNG ",
                                     "path": "/in/", "region": "eu-west-1",
                                     "access": "PUBLIC", "container": "cin-test-other",
                                     "upload_tags": '{"user": "42"}'}, LOCATION)
    assert (params.filename, params.mimetype, params.path, params.region) == (
        "a.png", "image/png", "in/", "eu-west-1")
    assert (params.access.value, params.container, params.tags) == (
        "public", "cin-test-other", {"user": "42"})


@pytest.mark.parametrize(("query", "code"), [
    ({"region": "us-east-1\n"}, Code.BAD_PARAMETER),  # `$` matches before a last newline
    ({"region": "US-EAST-1"}, Code.BAD_PARAMETER),
    ({"mimetype": "text"}, Code.BAD_PARAMETER),
    ({"access": "secret"}, Code.BAD_PARAMETER),
    ({"path": "../x"}, Code.BAD_PATH),
    ({"container": "another"}, Code.CONTAINER_NOT_ALLOWED),
])
def test_store_params_refused(query: dict[str, str], code: Code) -> None:
    with pytest.raises(CinError) as caught:
        StoreParams.from_query(query, LOCATION)
    assert caught.value.code is code
