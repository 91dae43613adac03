"""`python -m bench.table [RESULTS.json]`: a results file as a Markdown table, the one
docs/benchmarks.md shows (default: bench/results/latest.json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "results" / "latest.json"
_DIGITS = {"cpu_s_per_gb": 2}


def _summary(summary: dict[str, Any], digits: int) -> str:
    def f(value: float) -> str:
        return f"{value:,.{digits}f}"

    if len(summary["runs"]) == 1:
        return f(summary["median"])
    return f"{f(summary['median'])} ({f(summary['min'])}-{f(summary['max'])})"


def markdown(data: dict[str, Any]) -> str:
    lines = ["| case | figure | loop | median (min-max) | ratio to ceiling | target | also |",
             "|---|---|---|---|---|---|---|"]
    for figure in data["figures"]:
        value = figure["value"]
        digits = 1 if value["median"] < 100 else 0
        ratio = _summary(figure["ratio"], 2) if figure.get("ratio") else ""
        extras = "; ".join(f"{name} {_summary(summary, _DIGITS.get(name, 1))}"
                           for name, summary in figure["extra"].items())
        lines.append(f"| {figure['case']} | {figure['name']} | {figure['loop']} | "
                     f"{_summary(value, digits)} {figure['unit']} | {ratio} | "
                     f"{figure.get('target') or ''} | {extras} |")
    machine = data["machine"]
    lines += ["", f"`{data['command']}`, {data['when']}: {machine['cpus']} cores "
              f"({machine['cpu_model']}), {machine['memory_gib']} GiB, Python "
              f"{machine['python']}, Linux {machine['kernel']}; load average before "
              f"{' '.join(data['loadavg_before'])}, at the end {' '.join(machine['loadavg'])}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table")
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT)
    args = parser.parse_args()
    print(markdown(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
