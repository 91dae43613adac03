"""A PostgreSQL server for the coordinator case: the tests' throwaway server
(tests/postgres_server.py, which `make test` installs the binaries for), here with every
commit on disk before it returns, as in production and as SQLite's synchronous=full.
A fresh database for each configuration measured."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator

import asyncpg

from bench.processes import REPO

sys.path.insert(0, str(REPO / "tests"))
from postgres_server import (  # tests/ is not a package: found on the path above
    PostgresServer,
    PostgresUnavailable,
    running_server,
)

__all__ = ["PostgresServer", "PostgresUnavailable", "durable_server", "new_database"]

_names = itertools.count(1)


@contextlib.contextmanager
def durable_server() -> Iterator[PostgresServer]:
    with running_server(durable=True) as server:
        yield server


async def new_database(server: PostgresServer) -> str:
    """The URL of a new, empty database on `server`."""
    name = f"cin_bench_{next(_names)}"
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.url(name)
