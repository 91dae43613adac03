"""tus: cin's tus endpoint at a POP against @tus/server 2.x with its file store, the tus
project's own Node server, on the same machine in the same run.

* one large upload: a creation, then one PATCH of the whole file (tus-js-client's
  default, `chunkSize: Infinity`), answered once every byte is acknowledged: MB/s, and
  the server's peak RSS (cin: the POP; the coordinator beside it is small and steady).
* 10 KiB creation-with-upload stores (one POST carrying the bytes) from 50 clients, for
  a bounded time: stores per second, with p50 and p99.

cin fsyncs every acknowledged byte and makes each store a cin file (a coordinator start
and complete, a bucket put); @tus/server's file store writes without fsync. Goal: cin ≥
@tus/server on both.

@tus/server and @tus/file-store are installed with npm into the bench's scratch folder,
not into the project. The large upload's size is `CIN_BENCH_TUS_SIZE` (bytes, or with a
MiB or GiB suffix): 1 GiB by default, 64 MiB with --quick.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import subprocess
from pathlib import Path

from bench.cases import Context, Measured, measure
from bench.closed_loop import Load, closed_loop
from bench.http import Body, Connection
from bench.processes import APIKEY, CinNetwork, Process, cin_network, free_port, started
from bench.report import MB, Figure, Summary, ratios

CASE = "tus"
FULL_SIZE = 1024**3
QUICK_SIZE = 64 * 1024**2
SMALL = 10 * 1024
CLIENTS = 50
FULL_SECONDS, QUICK_SECONDS = 8.0, 1.5
WARMUP_SECONDS = 0.5
PEER_PACKAGES = ("@tus/server@2", "@tus/file-store@2")
PEER = "@tus/server 2.x (file store)"
TARGET = "≥ @tus/server"
_BLOCK = os.urandom(1024 * 1024)
_SMALL_BODY = os.urandom(SMALL)
_METADATA = "apikey " + base64.b64encode(APIKEY.encode()).decode()

_SERVER_JS = """
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), '127.0.0.1',
  () => console.log('tus-server: ready'));
"""


def size_asked(quick: bool) -> int:
    text = os.environ.get("CIN_BENCH_TUS_SIZE")
    if not text:
        return QUICK_SIZE if quick else FULL_SIZE
    for suffix, unit in (("GiB", 1024**3), ("MiB", 1024**2)):
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * unit)
    return int(text)


class NodeProcess(Process):
    """@tus/server in Node: the same handle on CPU, RSS and stopping as a cin process."""

    def __init__(self, name: str, script: Path, args: list[str], log: Path,
                 ready: str) -> None:
        self.name = name
        self.log = log
        self._ready = ready
        self._profiler = None
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("bench tus needs Node (node) for @tus/server")
        with log.open("w") as out:
            self.proc = subprocess.Popen([node, str(script), *args], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=script.parent)


def install_peer(root: Path) -> Path:
    """@tus/server and its file store in `root` (npm), and the server script."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "node_modules" / "@tus" / "server").is_dir():
        (root / "package.json").write_text('{"private": true, "type": "module"}\n')
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("bench tus needs npm to install @tus/server")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent",
                        *PEER_PACKAGES], cwd=root, check=True, timeout=600)
    script = root / "server.mjs"
    script.write_text(_SERVER_JS)
    return script


def peer(root: Path) -> tuple[Process, str]:
    script = install_peer(root / "tus-server")
    port = free_port()
    store = root / "tus-server-files"
    store.mkdir(parents=True, exist_ok=True)
    return (NodeProcess("tus-server", script, [str(port), str(store)],
                        root / "tus-server.log", "tus-server: ready"),
            f"http://127.0.0.1:{port}")


async def one_upload(url: str, size: int) -> None:
    """Create, then PATCH every byte in one request, as tus-js-client does by default."""
    connection = Connection.to(url)
    try:
        created = (await connection.request("POST", "/files/", None, {
            "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
            "Upload-Metadata": _METADATA})).check(201)
        location = created.headers["location"]
        target = "/files/" + location.rstrip("/").rsplit("/", 1)[1]
        done = (await connection.request("PATCH", target, Body(_BLOCK, size), {
            "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream"})).check(204)
        if int(done.headers["upload-offset"]) != size:
            raise RuntimeError(f"{url}: the upload ended at {done.headers['upload-offset']}")
    finally:
        await connection.close()


async def small_stores(url: str, seconds: float, servers: list[Process]) -> Load:
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(SMALL),
               "Upload-Metadata": _METADATA,
               "Content-Type": "application/offset+octet-stream"}

    async def send(connection: Connection, _: int) -> None:
        answer = (await connection.request("POST", "/files/", _SMALL_BODY, headers)).check(201)
        if answer.headers.get("upload-offset") != str(SMALL):
            raise RuntimeError(f"{url}: a store acknowledged {answer.headers}")

    return await closed_loop(url, CLIENTS, seconds, servers, send, warmup=WARMUP_SECONDS)


async def run(ctx: Context) -> list[Figure]:
    return await ctx.on_each_loop(_on_loop)


async def _on_loop(ctx: Context, loop: str) -> list[Figure]:
    size = size_asked(ctx.quick)
    label = f"{size // 1024**2} MiB" if size < 1024**3 else f"{size / 1024**3:g} GiB"
    seconds = QUICK_SECONDS if ctx.quick else FULL_SECONDS
    root = ctx.scratch(f"{CASE}-{loop}")
    network = CinNetwork(root / "cin", event_loop=loop)
    peer_process, peer_url = peer(ctx.root)
    large: dict[str, list[Measured]] = {"peer": [], "cin": []}
    rss: dict[str, list[float]] = {"peer": [], "cin": []}
    small: dict[str, list[Load]] = {"peer": [], "cin": []}
    with started(peer_process) as node, cin_network(network) as (coordinator, pop):
        for _ in range(ctx.runs):
            for who, url, servers, holder in (("peer", peer_url, [node], node),
                                              ("cin", network.pop_url, [coordinator, pop],
                                               pop)):
                holder.reset_peak_rss()
                large[who].append(await measure(functools.partial(one_upload, url, size),
                                                servers))
                rss[who].append(holder.peak_rss_bytes() / MB)
                small[who].append(await small_stores(url, seconds, servers))
            if ctx.out_of_time():
                break
    figures: list[Figure] = []
    peer_rates = [size / run.seconds / MB for run in large["peer"]]
    cin_rates = [size / run.seconds / MB for run in large["cin"]]
    peer_name = f"{PEER}: tus upload {label}, one PATCH"
    figures.append(Figure(CASE, peer_name, loop, "MB/s", Summary.of(peer_rates),
                          extra={"peak_rss_mb": Summary.of(rss["peer"]),
                                 "server_cpu_s": Summary.of(r.server_cpu
                                                            for r in large["peer"])}))
    figures.append(Figure(CASE, f"cin: tus upload {label}, one PATCH, fsync'd", loop, "MB/s",
                          Summary.of(cin_rates), ratio=ratios(cin_rates, peer_rates),
                          against=peer_name, target=TARGET,
                          extra={"peak_rss_mb": Summary.of(rss["cin"]),
                                 "server_cpu_s": Summary.of(r.server_cpu
                                                            for r in large["cin"])}))
    small_peer = f"{PEER}: 10 KiB creation-with-upload, {CLIENTS} clients"
    for who, name in (("peer", small_peer),
                      ("cin", f"cin: 10 KiB creation-with-upload, {CLIENTS} clients")):
        loads = small[who]
        figures.append(Figure(
            CASE, name, loop, "stores/s", Summary.of(load.rate for load in loads),
            ratio=ratios([load.rate for load in loads],
                         [load.rate for load in small["peer"]]) if who == "cin" else None,
            against=small_peer if who == "cin" else None,
            target=TARGET if who == "cin" else None,
            extra={"p50_ms": Summary.of(load.p50_ms for load in loads),
                   "p99_ms": Summary.of(load.p99_ms for load in loads),
                   "server_cpu_ms": Summary.of(load.server_cpu_ms for load in loads)}))
    return figures
