"""A coordinator and a TLS POP as real processes, for the real SDKs to upload through.

The SDKs send their bytes to `https://{location_url}`, so the POP serves TLS with a
certificate from a throwaway `trustme` CA; each SDK is told to trust `ca` its own way.
The coordinator stays plain HTTP: the SDKs take its URL whole, scheme included.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiobotocore.session
import pytest
import trustme
from support import CinProcess, config_data, write_config


@dataclass(frozen=True)
class TlsNetwork:
    coordinator: str  # http://127.0.0.1:port
    pop: str  # https://127.0.0.1:port, as clients are told to reach the POP
    pop_port: int  # where the POP itself listens
    certificate: Path  # the POP's key and certificate chain (PEM)
    ca: Path  # the test CA's certificate (PEM)
    root: Path


def create_buckets(moto_url: str, *names: str) -> None:
    async def create() -> None:
        async with aiobotocore.session.get_session().create_client(
                "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
            for name in names:
                await s3.create_bucket(Bucket=name)

    asyncio.run(create())


@contextmanager
def tls_network(root: Path, *, moto_url: str | None = None,
                public_port: int | None = None) -> Iterator[TlsNetwork]:
    """The network on the local-disk driver, or on S3 at `moto_url` (fresh buckets).
    `public_port`: the port clients are told to use for the POP, when something (a
    proxy) stands between them and the POP's own port."""
    settings: dict[str, Any] = {}
    if moto_url is not None:
        bucket = f"cin-{uuid.uuid4().hex[:12]}"
        create_buckets(moto_url, bucket, f"{bucket}-other")
        settings = {"s3_endpoint": moto_url, "bucket": bucket}
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(root / "pop.pem"))
    authority.cert_pem.write_to_path(str(root / "ca.pem"))
    data = config_data(root, **settings)
    pop = data["pops"][0]
    host, port = pop["listen"].rsplit(":", 1)
    pop["public_url"] = f"https://{host}:{public_port or port}"
    pop["tls"] = {"cert": str(root / "pop.pem"), "key": str(root / "pop.pem")}
    config = write_config(data, root / "cin.yaml")
    with pytest.MonkeyPatch.context() as patch:
        # The coordinator reaches the POP at its public (TLS) URL, to hand it overwrites.
        patch.setenv("SSL_CERT_FILE", str(root / "ca.pem"))
        coordinator = CinProcess(["coordinator", "-c", str(config)], root).wait_ready()
        try:
            edge = CinProcess(["edge", "-c", str(config), "--pop", pop["name"]],
                              root).wait_ready()
        except BaseException:
            coordinator.stop()
            raise
    try:
        yield TlsNetwork(coordinator=data["coordinator"]["public_url"],
                         pop=pop["public_url"], pop_port=int(port),
                         certificate=root / "pop.pem", ca=root / "ca.pem", root=root)
    finally:
        edge.stop()
        coordinator.stop()
