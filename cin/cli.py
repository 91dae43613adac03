"""The `cin` command: run the services, check storage, sign policies; upload, status,
pops and download through the SDK (cin/client_commands.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cin import client_commands, config_reference, dev_config, logs
from cin.dev_balancer import DevBalancer, free_listens
from cin.serve import (
    Service,
    StartError,
    check_addresses,
    coordinator_service,
    pop_service,
    run,
    serve,
)
from cin.storage_check import check_storage
from cin.usage import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from common.config import Config, ConfigError, PostgresStateConfig
from common.config.loader import load_config
from common.protocol.errors import CinError
from common.protocol.security import CALLS, Policy, encode_policy, sign_policy
from coordinator.app import make_app as make_coordinator_app

# The exit statuses stay importable from here, where callers have always found them.
__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "UsageError", "main"]

DEFAULT_POLICY_LIFETIME = 3600  # seconds, as the Filestack SDKs default to


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose)  # until the config says how
    try:
        if args.command == "dev" and args.config is None:
            args.config = dev_config.ensure(Path.cwd())
        # Only `cin sign --secret-env` runs without a config file.
        config = load_config(args.config) if args.config is not None else None
        if config is not None:
            logs.configure(config.log_format, config.log_level, verbose=args.verbose)
        return int(args.run(config, args))
    except ConfigError as exc:
        print(f"cin: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartError as exc:
        print(f"cin: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"cin: {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cin", description="cin, a content ingestion network")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (as log_level: debug)")
    parser.add_argument("--version", action="version", version=f"cin {metadata.version('cin')}",
                        help="print cin's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    coordinator = commands.add_parser("coordinator", help="run the coordinator")
    coordinator.add_argument("-c", "--config", required=True, help="config file (YAML)")
    coordinator.set_defaults(run=_run_coordinator)

    edge = commands.add_parser("edge", help="run one POP")
    edge.add_argument("-c", "--config", required=True, help="config file (YAML)")
    edge.add_argument("--pop", required=True, help="the POP's name in the config")
    edge.set_defaults(run=_run_edge)

    dev = commands.add_parser("dev", help="run the coordinator and every POP in one process")
    dev.add_argument("-c", "--config",
                     help=f"config file (default {dev_config.FILE_NAME}, written with the "
                          "dev network's settings if it is not there)")
    dev.add_argument("--coordinators", type=int, default=1, metavar="N",
                     help="run N coordinators on one PostgreSQL state, behind the "
                          "coordinator's address (default 1)")
    dev.set_defaults(run=_run_dev)

    reference = commands.add_parser(
        "config-reference", help="print the config reference (docs/config.md) as Markdown")
    reference.set_defaults(run=_run_config_reference, config=None)

    check = commands.add_parser("storage-check",
                                help="verify every configured storage location works")
    check.add_argument("-c", "--config", required=True, help="config file (YAML)")
    check.set_defaults(run=_run_storage_check)

    sign = commands.add_parser(
        "sign", help="print a policy and its signature for an app",
        description="Print a Filestack policy and signature as JSON. Regular expressions "
                    "must match the whole path, container or URL.")
    sign.add_argument("-c", "--config", help="config file (YAML) that defines the app")
    secret = sign.add_mutually_exclusive_group(required=True)
    secret.add_argument("--app", metavar="APIKEY", help="sign with this app's secret")
    secret.add_argument("--secret-env", metavar="VAR",
                        help="sign with the secret in this environment variable (no config)")
    sign.add_argument("--expiry", type=int, default=DEFAULT_POLICY_LIFETIME, metavar="SECONDS",
                      help=f"lifetime from now (default {DEFAULT_POLICY_LIFETIME})")
    sign.add_argument("--call", action="append", default=[], metavar="CALL",
                      help=f"allow this call (repeatable; none allows all but exif): "
                           f"{', '.join(sorted(CALLS))}")
    sign.add_argument("--handle", help="allow only this file handle")
    sign.add_argument("--path", metavar="REGEX", help="storage paths the policy allows")
    sign.add_argument("--container", metavar="REGEX", help="containers the policy allows")
    sign.add_argument("--url", metavar="REGEX", help="source URLs the policy allows")
    sign.add_argument("--max-size", type=int, metavar="BYTES", help="largest file allowed")
    sign.add_argument("--min-size", type=int, metavar="BYTES", help="smallest file allowed")
    sign.add_argument("--compact", action="store_true", help="print the JSON on one line")
    sign.set_defaults(run=_run_sign)

    client_commands.add_commands(commands)
    return parser


def _run_services(config: Config, services: list[Service], banner: bool = False,
                  balancer: DevBalancer | None = None) -> int:
    def ready(started: list[Service]) -> None:
        for service in started:
            print(f"cin: {service.name} at {service.public_url}", flush=True)
        if banner:
            apikeys = ", ".join(config.apps)
            print(f"cin: apikey {apikeys}", flush=True)
        print("cin: ready", flush=True)

    async def main() -> None:
        if balancer is not None:
            await balancer.start()
        try:
            await serve(services, config, on_ready=ready)
        finally:
            if balancer is not None:
                await balancer.stop()

    check_addresses(services)
    run(main(), config.loop_for(runs_pops=any(service.role == "pop" for service in services)))
    return EXIT_OK


def _run_coordinator(config: Config, args: argparse.Namespace) -> int:
    return _run_services(config, [coordinator_service(config)])


def _run_edge(config: Config, args: argparse.Namespace) -> int:
    return _run_services(config, [pop_service(config, config.pop(args.pop))])


def _run_dev(config: Config, args: argparse.Namespace) -> int:
    pops = [pop_service(config, pop) for pop in config.pops]
    if args.coordinators < 1:
        raise UsageError("--coordinators is 1 or more")
    if args.coordinators == 1:
        return _run_services(config, [coordinator_service(config), *pops], banner=True)
    if not isinstance(config.coordinator.state, PostgresStateConfig):
        raise UsageError("several coordinators share their state in PostgreSQL: set "
                         "coordinator.state to a postgresql:// URL (a SQLite database is "
                         "one coordinator's)")
    # Each on an address of its own; the config's address is the balancer's.
    listens = free_listens(config.coordinator.listen.host, args.coordinators)
    coordinators = [Service(f"coordinator {n} on {listen}", "coordinator",
                            make_coordinator_app(config), listen,
                            config.coordinator.public_url)
                    for n, listen in enumerate(listens, 1)]
    return _run_services(config, [*coordinators, *pops], banner=True,
                         balancer=DevBalancer(config.coordinator.listen, listens))


def _run_config_reference(config: Config | None, args: argparse.Namespace) -> int:
    return config_reference.main()


def _run_storage_check(config: Config, args: argparse.Namespace) -> int:
    failed = False
    for name, location in config.storage.items():
        print(f"storage {name} ({location.driver}, provider {location.provider}):")
        for result in asyncio.run(check_storage(location)):
            mark = "ok  " if result.ok else "FAIL"
            print(f"  {mark} {result.name}: {result.detail}")
            failed |= not result.ok
    return EXIT_FAILURE if failed else EXIT_OK


def _run_sign(config: Config | None, args: argparse.Namespace) -> int:
    secret = _signing_secret(config, args)
    if args.expiry <= 0:
        raise UsageError("--expiry must be a positive number of seconds")
    unknown = [c for c in args.call if c not in CALLS]
    if unknown:
        raise UsageError(f"unknown call {unknown[0]!r} (known: {', '.join(sorted(CALLS))})")
    expiry = int(time.time()) + args.expiry
    fields: dict[str, Any] = {"expiry": expiry}
    if args.call:
        fields["call"] = list(dict.fromkeys(args.call))  # once each, in the order given
    optional = {"handle": args.handle, "path": args.path, "container": args.container,
                "url": args.url, "maxSize": args.max_size, "minSize": args.min_size}
    fields.update({key: value for key, value in optional.items() if value is not None})
    policy = encode_policy(fields)
    try:
        Policy.parse(policy)  # the server's own rules: a bad regex fails here, not later
    except CinError as exc:
        raise UsageError(str(exc)) from exc
    signature = sign_policy(secret, policy)
    out = {
        "policy": policy,
        "signature": signature,
        "expiry": expiry,
        "query": urlencode({"policy": policy, "signature": signature}),
        "security": f"security=p:{policy},s:{signature}",
    }
    print(json.dumps(out, separators=(",", ":")) if args.compact else json.dumps(out, indent=2))
    return EXIT_OK


def _signing_secret(config: Config | None, args: argparse.Namespace) -> str:
    if args.secret_env is not None:
        if config is not None:
            raise UsageError("--secret-env takes the secret from the environment: drop -c")
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise UsageError(f"environment variable {args.secret_env} is not set")
        return secret
    if config is None:
        raise UsageError("--app needs -c CONFIG (or use --secret-env VAR)")
    app = config.apps.get(args.app)
    if app is None:
        raise UsageError(f"no app {args.app!r} in {config.source} "
                         f"(have: {', '.join(config.apps)})")
    return app.secret


if __name__ == "__main__":
    sys.exit(main())
