"""A throwaway PostgreSQL server for the tests: a fresh cluster in a temporary directory,
listening on a free loopback port, stopped (by its PID) when the tests end.

The server binaries are the system's (`make test` installs Debian's postgresql package
when they are missing; CIN_POSTGRES_BINDIR names another directory). PostgreSQL refuses
to run as root, so as root the cluster belongs to the `postgres` system user, which runs
the server. The cluster trusts connections from loopback only: it holds nothing but
test data, and lives as long as the test session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from support import free_port

USER = "cin"  # the cluster's superuser, which the tests connect as
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class PostgresUnavailable(RuntimeError):
    """No server could be started here (the message says why)."""


def server_bindir() -> Path:
    """Where initdb and postgres are: CIN_POSTGRES_BINDIR, else Debian's newest
    /usr/lib/postgresql/N/bin, else the PATH."""
    named = os.environ.get("CIN_POSTGRES_BINDIR")
    candidates = [Path(named)] if named else []
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit()
                    else 0)
    candidates += [Path(d) for d in reversed(debian)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, postgres) found: "
                              "`make test` installs Debian's postgresql package, or set "
                              "CIN_POSTGRES_BINDIR")


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs the server (as its own user when this process is
    root), and that user's uid and gid when it is not this process's own.

    setpriv execs the program, so the PID is the server's own, and asks the kernel to
    send it SIGINT (a fast shutdown) if this process dies: a test run that is killed
    leaves no server behind."""
    prefix = ["setpriv", "--pdeathsig=INT"]
    if os.geteuid() != 0:
        return [*prefix, "--"], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root, and there is no `postgres` system user "
                                  "to run the server as (Debian's postgresql package "
                                  "makes one)") from None
    prefix += [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return prefix, user.pw_uid, user.pw_gid


class PostgresServer:
    def __init__(self, bindir: Path, root: Path, port: int, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        prefix, uid, gid = _as_server_user()
        if uid is not None and gid is not None:
            os.chown(self.root, uid, gid)
        initdb = subprocess.run(
            [*prefix, str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, timeout=START_TIMEOUT, check=False)
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.decode()[-2000:]}")
        with self.log.open("wb") as log:
            if uid is not None and gid is not None:
                os.chown(self.log, uid, gid)
            # Durability is not what the tests are about: no fsync, so they stay fast. A
            # benchmark asks for it (`durable`), as a deployment runs.
            fast = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"]
            self.process = subprocess.Popen(
                [*prefix, str(self.bindir / "postgres"), "-D", str(self.data),
                 "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root),
                 *fast, "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                   "-p", str(self.port), "-U", USER]
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresUnavailable("the server exited at start: "
                                          + self.log.read_text(errors="replace")[-2000:])
            if subprocess.run(isready, check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresUnavailable(f"the server was not ready in {START_TIMEOUT:.0f}s")

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions ended, no waiting for clients), then a
        kill if it has not exited in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A started server, stopped and its files removed on leaving; `durable`: each commit
    on disk before it returns, as in production (the tests run without)."""
    bindir = server_bindir()
    # As root, the server's user must reach the directory: not under a TMPDIR that only
    # root can enter.
    root = Path(tempfile.mkdtemp(prefix="cin-postgres-",
                                 dir="/tmp" if os.geteuid() == 0 else None))
    server = PostgresServer(bindir, root, free_port(), durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
