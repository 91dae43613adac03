"""The `cin` command: run the services, check storage."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from cin.serve import Service, coordinator_service, pop_service, run, serve
from common.config import Config, ConfigError, load_config
from common.storage.check import check_storage

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # a bad command line or config

DEFAULT_DEV_CONFIG = "configs/dev.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        return int(args.run(config, args))
    except ConfigError as exc:
        print(f"cin: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cin", description="cin, a content ingestion network")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    coordinator = commands.add_parser("coordinator", help="run the coordinator")
    coordinator.add_argument("-c", "--config", required=True, help="config file (YAML)")
    coordinator.set_defaults(run=_run_coordinator)

    edge = commands.add_parser("edge", help="run one POP")
    edge.add_argument("-c", "--config", required=True, help="config file (YAML)")
    edge.add_argument("--pop", required=True, help="the POP's name in the config")
    edge.set_defaults(run=_run_edge)

    dev = commands.add_parser("dev", help="run the coordinator and every POP in one process")
    dev.add_argument("-c", "--config", default=DEFAULT_DEV_CONFIG,
                     help=f"config file (default {DEFAULT_DEV_CONFIG})")
    dev.set_defaults(run=_run_dev)

    check = commands.add_parser("storage-check",
                                help="verify every configured storage location works")
    check.add_argument("-c", "--config", required=True, help="config file (YAML)")
    check.set_defaults(run=_run_storage_check)
    return parser


def _run_services(config: Config, services: list[Service], banner: bool = False) -> int:
    def ready(started: list[Service]) -> None:
        for service in started:
            print(f"cin: {service.name} at {service.public_url}", flush=True)
        if banner:
            apikeys = ", ".join(config.apps)
            print(f"cin: apikey {apikeys}", flush=True)
        print("cin: ready", flush=True)

    run(serve(services, shutdown_timeout=config.shutdown_timeout, on_ready=ready),
        config.event_loop)
    return EXIT_OK


def _run_coordinator(config: Config, args: argparse.Namespace) -> int:
    return _run_services(config, [coordinator_service(config)])


def _run_edge(config: Config, args: argparse.Namespace) -> int:
    return _run_services(config, [pop_service(config, config.pop(args.pop))])


def _run_dev(config: Config, args: argparse.Namespace) -> int:
    services = [coordinator_service(config)]
    services += [pop_service(config, pop) for pop in config.pops]
    return _run_services(config, services, banner=True)


def _run_storage_check(config: Config, args: argparse.Namespace) -> int:
    failed = False
    for name, location in config.storage.items():
        print(f"storage {name} ({location.driver}, provider {location.provider}):")
        for result in asyncio.run(check_storage(location)):
            mark = "ok  " if result.ok else "FAIL"
            print(f"  {mark} {result.name}: {result.detail}")
            failed |= not result.ok
    return EXIT_FAILURE if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
