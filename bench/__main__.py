"""`python -m bench [CASE ...] [--quick]`: run benchmark cases, print a table, write JSON.

    python -m bench                      every case, full size (what `make bench` runs)
    python -m bench large small --quick  two cases, small sizes, one run each

Every case starts the processes it needs on loopback and stops them when it is done.
Scratch files go under --scratch (default: a new folder in the system's temp dir, on
the disk under test) and are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bench import processes
from bench.cases import Context
from bench.report import Figure, table, write

CASES = ("large", "concurrent", "s3", "small", "coordinator", "wan", "tus")
RESULTS = Path(__file__).resolve().parent / "results"
FULL_RUNS = 5
QUICK_RUNS = 1
BUSY_LOAD = 1.0  # 1-minute load average above which the figures are flagged as noisy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help=f"cases to run (default: all): {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one run: for development, not for figures")
    parser.add_argument("--runs", type=int, help=f"runs per figure (default {FULL_RUNS}, "
                                                 f"quick {QUICK_RUNS})")
    parser.add_argument("--loop", choices=("uvloop", "asyncio", "both"), default="both",
                        help="the servers' event loop (default: both, one after the other)")
    parser.add_argument("--scratch", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"where the JSON goes (default {RESULTS})")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample every cin and ceiling process with py-spy into DIR "
                             "(see python -m bench.profiles)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: only samples that hold the GIL (Python's CPU)")
    parser.add_argument("--wan-rtt", type=float, default=80, metavar="MS",
                        help="wan: the round trip its proxy adds between a POP and the "
                             "coordinator, in ms (default 80)")
    parser.add_argument("--time-limit", type=float, default=3600, metavar="SECONDS",
                        help="stop starting new runs after this long (default 3600)")
    return parser


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        print(f"bench: unknown case {unknown[0]!r} (known: {', '.join(CASES)})",
              file=sys.stderr)
        return 2
    if args.profile is not None:
        processes.PROFILE_DIR = args.profile.resolve()
        processes.PROFILE_GIL = args.profile_gil
    load_before = _load()
    if float(load_before[0]) > BUSY_LOAD:
        print(f"bench: the machine is busy (load average {' '.join(load_before)}): "
              "figures will be noisy", file=sys.stderr)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cin-bench-"))
    ctx = Context(root=scratch, quick=args.quick,
                  runs=args.runs or (QUICK_RUNS if args.quick else FULL_RUNS),
                  loops=("uvloop", "asyncio") if args.loop == "both" else (args.loop,),
                  deadline=time.monotonic() + args.time_limit,
                  wan_rtt=args.wan_rtt / 1000)
    figures: list[Figure] = []
    try:
        for name in args.cases or CASES:
            case: Callable[[Context], Coroutine[Any, Any, list[Figure]]] = importlib.import_module(
                f"bench.cases.{name}").run
            started = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            figures += asyncio.run(case(ctx))
            print(f"bench: {name} took {time.monotonic() - started:.0f} s", file=sys.stderr,
                  flush=True)
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(table(figures))
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None
                                                      else sys.argv[1:])])
    # Only a run of everything replaces the figures the docs quote (`latest.json`).
    whole = not args.cases or set(args.cases) == set(CASES)
    path = write(figures, args.results, quick=args.quick, command=command,
                 load_before=load_before, latest=whole)
    print(f"\nbench: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
