"""`cin upload`, `cin status`, `cin pops` and `cin download`: the SDK from a shell.

Where the coordinator is and who is asking, first found wins:

* the coordinator: `--url`, `$CIN_URL`, the `-c` config's coordinator `public_url`;
* the app: `--apikey`, `$CIN_APIKEY`, the `-c` config's app (when it has one);
* credentials: `--policy`/`--signature` (`$CIN_POLICY`/`$CIN_SIGNATURE`), the app
  secret in the variable `--secret-env` names (or `$CIN_APP_SECRET`), or the `-c`
  config's secret for the app; none for an app with optional security.

Exit statuses: 0 done, 1 failed, 2 a bad command line, 75 (EX_TEMPFAIL) interrupted
and resumable: run the same command again and the upload carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from cin.progress_bar import ProgressBar
from cin.usage import EXIT_FAILURE, EXIT_OK, EXIT_RESUMABLE, UsageError
from common.config import Config
from sdk import (
    ApiError,
    AsyncClient,
    CinClientError,
    ConnectionFailed,
    NoPopAvailable,
    UploadInterrupted,
    UploadResult,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`8MiB`, `512k`, `1048576`: bytes (k, M, G are powers of 1024 here, as for a
    chunk size or a rate nobody means in powers of ten)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512KiB or 8MiB")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def add_commands(commands: Any) -> None:
    """Add the four commands to `cin`'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group(
        "coordinator and credentials",
        "A flag wins over the environment ($CIN_URL, $CIN_APIKEY, $CIN_POLICY, "
        "$CIN_SIGNATURE, $CIN_APP_SECRET), which wins over -c CONFIG.")
    where.add_argument("-c", "--config", help="a cin config: its coordinator, app and secret")
    where.add_argument("--url", help="the coordinator's URL (default $CIN_URL)")
    where.add_argument("--apikey", help="the app's apikey (default $CIN_APIKEY)")
    where.add_argument("--policy", help="a policy (default $CIN_POLICY), with --signature")
    where.add_argument("--signature", help="the policy's signature (default $CIN_SIGNATURE)")
    where.add_argument("--secret-env", metavar="VAR",
                       help="sign policies with the app secret in this environment "
                            "variable (default: $CIN_APP_SECRET when set)")
    where.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="the longest any one request may take (default 60)")
    where.add_argument("--state-dir", metavar="DIR",
                       help="where resume state and the POP choice are kept (default "
                            "$CIN_STATE_DIR, else $XDG_CACHE_HOME/cin or ~/.cache/cin)")

    upload = commands.add_parser(
        "upload", parents=[common], help="upload files through the nearest POP",
        description="Upload files in Intelligent Ingestion mode through the nearest POP, "
                    "resumably: after Ctrl-C or a failure the same command carries on. "
                    "Exit status: 0 done, 1 failed, 2 bad usage, 75 interrupted "
                    "(run it again to resume).")
    upload.add_argument("files", nargs="+", metavar="FILE", help="the files to upload")
    upload.add_argument("--pop", default="auto", metavar="auto|NAME",
                        help="the nearest POP (auto, the default) or the one named")
    upload.add_argument("--path", help="where in the bucket (ending in / for a folder)")
    upload.add_argument("--container", help="the container (bucket) to store in")
    upload.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="an upload tag (repeatable)")
    upload.add_argument("--wait", action="store_true",
                        help="wait until each file is Complete (in the bucket)")
    upload.add_argument("--json", action="store_true",
                        help="print one JSON object per file, and no progress bar")
    upload.add_argument("--chunk-size", type=parse_size, metavar="SIZE",
                        help="fixed chunks of this size (32KiB to 8MiB) instead of chunks "
                             "sized to the network")
    upload.add_argument("--parallel", type=int, default=3, metavar="N",
                        help="parts in flight at once (default 3)")
    upload.add_argument("--limit-rate", type=parse_size, metavar="RATE",
                        help="send at most RATE bytes per second (e.g. 2MiB)")
    upload.set_defaults(run=run_upload)

    status = commands.add_parser("status", parents=[common],
                                 help="a file's upload status (Started, In Transit, ...)")
    status.add_argument("handle", help="the file's handle")
    status.add_argument("--wait", action="store_true", help="wait until it is Complete")
    status.add_argument("--max-wait", type=float, default=600.0, metavar="SECONDS",
                        help="give up waiting after this long (default 600)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=run_status)

    pops = commands.add_parser("pops", parents=[common],
                               help="every POP with its measured round trip")
    pops.add_argument("--json", action="store_true", help="print JSON")
    pops.set_defaults(run=run_pops)

    download = commands.add_parser("download", parents=[common], help="download a file")
    download.add_argument("handle", help="the file's handle")
    download.add_argument("-o", "--output", metavar="FILE",
                          help="where to save it (default: its name, here; - for stdout)")
    download.set_defaults(run=run_download)


# ------------------------------------------------------------------ connection


def _first(*values: str | None) -> str | None:
    return next((value for value in values if value), None)


def client_options(config: Config | None, args: argparse.Namespace) -> dict[str, Any]:
    """The AsyncClient's url, apikey and credentials, from flags, environment, config."""
    env = os.environ
    url = _first(args.url, env.get("CIN_URL"),
                 config.coordinator.public_url if config is not None else None)
    if url is None:
        raise UsageError("which coordinator? give --url URL, set CIN_URL, or -c CONFIG")
    apikey = _first(args.apikey, env.get("CIN_APIKEY"))
    if apikey is None and config is not None:
        if len(config.apps) != 1:
            raise UsageError(f"{config.source} has several apps: choose one with --apikey "
                             f"({', '.join(config.apps)})")
        apikey = next(iter(config.apps))
    if apikey is None:
        raise UsageError("which app? give --apikey KEY, set CIN_APIKEY, or -c CONFIG")
    options: dict[str, Any] = {"url": url, "apikey": apikey,
                               "request_timeout": args.timeout}
    if args.state_dir:
        options["state_dir"] = args.state_dir
    policy = _first(args.policy, env.get("CIN_POLICY"))
    signature = _first(args.signature, env.get("CIN_SIGNATURE"))
    if (policy is None) != (signature is None):
        raise UsageError("a policy needs its signature: give both --policy and --signature")
    if policy is not None:
        options.update(policy=policy, signature=signature)
        return options
    if args.secret_env:
        secret = env.get(args.secret_env)
        if not secret:
            raise UsageError(f"environment variable {args.secret_env} is not set")
        options["secret"] = secret
    elif env.get("CIN_APP_SECRET"):
        options["secret"] = env["CIN_APP_SECRET"]
    elif config is not None and apikey in config.apps:
        options["secret"] = config.apps[apikey].secret
    return options


def _fail(command: str, message: str) -> None:
    print(f"cin: {command}: {message}", file=sys.stderr)


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine to its exit status."""
    return asyncio.run(coroutine)


# ---------------------------------------------------------------------- upload


def _tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r} is not KEY=VALUE")
        tags[key] = value
    return tags


def run_upload(config: Config | None, args: argparse.Namespace) -> int:
    options = client_options(config, args)
    tags = _tags(args.tag)
    files = [Path(name) for name in args.files]
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path}: no such file" if not path.exists()
                             else f"{path}: not a regular file")
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    options.update(pop=args.pop, chunk_size=args.chunk_size, parallel_parts=args.parallel,
                   max_rate=args.limit_rate)
    try:
        client = AsyncClient(**options)
    except ValueError as error:
        raise UsageError(str(error)) from error
    outcome: list[int] = []  # each file's exit status, as it ends
    try:
        asyncio.run(_upload_all(client, files, args, tags, outcome))
    except KeyboardInterrupt:
        _fail("upload", "interrupted: run the same command again to resume")
        outcome.append(EXIT_RESUMABLE)
    return max(outcome, key=_severity, default=EXIT_OK)


def _severity(status: int) -> int:
    """Which exit status a run of several files ends with: a failure outranks an
    interruption, which outranks success."""
    return {EXIT_OK: 0, EXIT_RESUMABLE: 1, EXIT_FAILURE: 2}.get(status, 3)


async def _upload_all(client: AsyncClient, files: list[Path], args: argparse.Namespace,
                      tags: dict[str, str], outcome: list[int]) -> None:
    bars = sys.stdout.isatty() and not args.json
    async with client:
        for path in files:
            bar = ProgressBar(path.name, path.stat().st_size) if bars else None
            try:
                result = await client.upload(path, store_path=args.path,
                                             container=args.container, tags=tags,
                                             progress=bar)
                if args.wait:
                    status = await client.wait_until_complete(result.handle)
                    result = _with_status(result, status.status)
            except CinClientError as error:
                outcome.append(_report_error(path, error, args.json))
                continue
            except TimeoutError as error:  # --wait: uploaded, but not Complete in time
                _fail("upload", f"{path}: {error}")
                outcome.append(EXIT_FAILURE)
                continue
            finally:
                if bar is not None:  # before any message, and on Ctrl-C too
                    bar.close()
            _report(path, result, args.json)
            outcome.append(EXIT_OK)


def _with_status(result: UploadResult, status: str) -> UploadResult:
    values = {**result.__dict__, "status": status}
    return UploadResult(**values)


def _report(path: Path, result: UploadResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(path), **result.to_json()}), flush=True)
        return
    via = " then ".join(result.pops) or "no POP (already uploaded)"
    resumed = f", {result.resumed_bytes} bytes resumed" if result.resumed_bytes else ""
    print(f"{path}: {result.handle} {result.url} ({result.size} bytes, {result.status}, "
          f"via {via}{resumed}, {result.elapsed:.1f} s)", flush=True)


def _report_error(path: Path, error: CinClientError, as_json: bool) -> int:
    resumable = isinstance(error, UploadInterrupted | ConnectionFailed | NoPopAvailable) \
        or (isinstance(error, ApiError) and error.retryable)
    status = EXIT_RESUMABLE if resumable else EXIT_FAILURE
    hint = " (run the same command again to resume)" if resumable else ""
    _fail("upload", f"{path}: {error}{hint}")
    if as_json:
        failed: dict[str, Any] = {"file": str(path), "error": str(error),
                                  "resumable": resumable}
        if isinstance(error, ApiError):
            failed["code"] = error.code
        print(json.dumps(failed), flush=True)
    return status


# ---------------------------------------------------------------------- status


def run_status(config: Config | None, args: argparse.Namespace) -> int:
    client = AsyncClient(**client_options(config, args))
    return _run(_status(client, args))


async def _status(client: AsyncClient, args: argparse.Namespace) -> int:
    async with client:
        try:
            if args.wait:
                status = await client.wait_until_complete(args.handle,
                                                          max_wait=args.max_wait)
            else:
                status = await client.status(args.handle)
        except (CinClientError, TimeoutError) as error:
            _fail("status", str(error))
            return EXIT_FAILURE
    if args.json:
        print(json.dumps(status.to_json()))
    else:
        print(f"{status.handle} {status.status} {status.size} bytes {status.filename}")
    return EXIT_FAILURE if status.status == "Failed" else EXIT_OK


# ------------------------------------------------------------------------ pops


def run_pops(config: Config | None, args: argparse.Namespace) -> int:
    client = AsyncClient(**client_options(config, args))
    return _run(_pops(client, args))


async def _pops(client: AsyncClient, args: argparse.Namespace) -> int:
    async with client:
        try:
            probes = await client.pops()
        except CinClientError as error:
            _fail("pops", str(error))
            return EXIT_FAILURE
    answered = [p for p in probes if p.rtt is not None]
    nearest = min((p for p in answered if p.pop.healthy), key=lambda p: p.rtt or 0.0,
                  default=None)
    if args.json:
        print(json.dumps({"pops": [
            {"name": p.pop.name, "region": p.pop.region, "url": p.pop.url,
             "healthy": p.pop.healthy, "state": p.pop.state,
             "rtt_ms": round(p.rtt * 1000, 3) if p.rtt is not None else None,
             "nearest": p is nearest} for p in probes]}))
    else:
        print(f"  {'POP':<16} {'REGION':<16} {'STATE':<9} {'RTT':>10}  URL")
        for probe in probes:
            rtt = f"{probe.rtt * 1000:.1f} ms" if probe.rtt is not None else "no answer"
            mark = "*" if probe is nearest else " "
            print(f"{mark} {probe.pop.name:<16} {probe.pop.region:<16} {probe.pop.state:<9} "
                  f"{rtt:>10}  {probe.pop.url}")
    return EXIT_OK if answered else EXIT_FAILURE


# -------------------------------------------------------------------- download


def run_download(config: Config | None, args: argparse.Namespace) -> int:
    client = AsyncClient(**client_options(config, args))
    return _run(_download(client, args))


async def _download(client: AsyncClient, args: argparse.Namespace) -> int:
    async with client:
        try:
            if args.output == "-":
                async for piece in client.iter_download(args.handle):
                    await asyncio.to_thread(sys.stdout.buffer.write, piece)
                sys.stdout.buffer.flush()
                return EXIT_OK
            output = Path(args.output) if args.output else await _own_name(client,
                                                                           args.handle)
            size = await client.download(args.handle, output)
        except (CinClientError, OSError) as error:
            _fail("download", str(error))
            return EXIT_FAILURE
    print(f"{output}: {size} bytes", file=sys.stderr)
    return EXIT_OK


async def _own_name(client: AsyncClient, handle: str) -> Path:
    """The file's own name, as a plain name in this directory (never a path the name
    could smuggle in, such as ../x)."""
    metadata = await client.metadata(handle, "filename")
    name = Path(str(metadata.get("filename") or "")).name
    return Path(name if name not in ("", ".", "..") else handle)
