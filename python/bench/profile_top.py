"""The hottest functions of a `py-spy record --format raw` profile.

    python python/bench/profile_top.py PROFILE.txt [N]

The raw format is one collapsed stack a line, `outer (file:line);...;inner (file:line) COUNT`.
Frames are merged per function (file and function name, line numbers dropped); prints the
top N by own samples (the innermost frame) and by total samples (anywhere on the stack,
counted once per stack), each with its share of all samples.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file").split("/")
    short = "/".join(path[-2:]) if "site-packages" not in path else "/".join(path[path.index("site-packages") + 1:])
    return f"{m.group('fn')} ({short})"


def read(path: str) -> tuple[Counter, Counter, int]:
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_function(fr) for fr in stack.split(";") if fr]
            if not frames:
                continue
            samples += n
            own[frames[-1]] += n
            for fn in set(frames):
                total[fn] += n
    return own, total, samples


def print_top(path: str, n: int = 10) -> None:
    own, total, samples = read(path)
    if not samples:
        print(f"no samples in {path}")
        return
    for title, counter in (("own time", own), ("total time (inclusive)", total)):
        print(f"\ntop {n} by {title}, {samples:,} samples")
        print("| # | samples | share | function (file) |")
        print("|---:|---:|---:|---|")
        for i, (fn, c) in enumerate(counter.most_common(n), 1):
            print(f"| {i} | {c:,} | {c / samples:.1%} | `{fn}` |")


if __name__ == "__main__":
    print_top(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
