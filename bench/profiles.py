"""`python -m bench.profiles FILE...`: where a process spent its samples, from py-spy's
raw (collapsed) output as `python -m bench --profile` writes it.

Self: samples whose innermost frame is the function (the work it does itself).
Total: samples with the function anywhere on the stack (its work and its callees').
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def summarize(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{path.name}: {samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"  by {title}:")
        lines += [f"    {100 * n / max(samples, 1):5.1f}%  {frame}"
                  for frame, n in counter.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarize(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
