"""The hottest functions of a `py-spy record --format raw` profile.

    python python/bench/profile_top.py PROFILE.txt [N]

The raw format is one collapsed stack a line, `outer (file:line);...;inner (file:line) COUNT`
(with `--subprocesses`, the outermost frames are `process PID:"command line"`, from the
profiled process down to the sampled one). Frames are merged per function (file and
function name, line numbers dropped); samples of the untimed work between runs (under a
frame of workloads.py: building collections, checking values) are dropped. Prints, per role
(the bench client, shoal's workers, the `shoal local` process holding the scheduler), the
top N by own samples (the innermost frame) and by total samples (anywhere on the stack,
counted once per stack; the bench driver's own frames left out), each with its share of
the role's samples, and its average number of busy threads when the sampling rate and the
sampled seconds are given.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

# The bench's own driver frames enclose every sample: left out of the inclusive ranking.
HARNESS = ("(bench_python.py)", "(bench_map.py)")
# Untimed work between runs (building the collections, checking the values).
UNTIMED = "(workloads.py)"
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<cmd>.*)"$')


def _function(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file").split("/")
    short = "/".join(path[-2:]) if "site-packages" not in path else "/".join(path[path.index("site-packages") + 1:])
    return f"{m.group('fn')} ({short})"


def _role(cmd: str) -> str:
    if "--child" in cmd:
        return "client"
    if "shoal" in cmd and " worker" in cmd:
        return "workers"
    if "shoal" in cmd and " local" in cmd:
        return "shoal local (scheduler)"
    return cmd[:60]


def read(path: str) -> dict[str, tuple[Counter, Counter, int, set]]:
    """{role: (own samples, total samples, all samples, pids)}; a profile without process
    frames is all "client"."""
    roles: dict = defaultdict(lambda: (Counter(), Counter(), [0], set()))
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            raw = [fr for fr in stack.split(";") if fr]
            role, pid = "client", None
            # With --subprocesses a stack starts with the chain of processes down to its own.
            while raw and (m := _PROCESS.match(raw[0])):
                role, pid = _role(m.group("cmd")), m.group("pid")
                raw = raw[1:]
            frames = [_function(fr) for fr in raw]
            if not frames or any(fn.endswith(UNTIMED) for fn in frames):
                continue
            own, total, samples, pids = roles[role]
            samples[0] += n
            if pid:
                pids.add(pid)
            own[frames[-1]] += n
            for fn in set(frames):
                if not fn.endswith(HARNESS):
                    total[fn] += n
    return {role: (own, total, samples[0], pids) for role, (own, total, samples, pids) in roles.items()}


def print_top(path: str, n: int = 10, rate: float | None = None, seconds: float | None = None) -> None:
    roles = read(path)
    if not roles:
        print(f"no samples in {path}")
        return
    order = sorted(roles, key=lambda r: (r != "client", r))
    for role in order:
        own, total, samples, pids = roles[role]
        busy = ""
        if rate and seconds:
            per = max(1, len(pids))
            busy = f", {samples / rate / seconds / per:.2f} busy threads on average per process"
        procs = f" ({len(pids)} processes)" if len(pids) > 1 else ""
        for title, counter in (("own time", own), ("total time (inclusive)", total)):
            print(f"\n{role}{procs}: top {n} by {title}, {samples:,} samples{busy}")
            print("| # | samples | share | function (file) |")
            print("|---:|---:|---:|---|")
            for i, (fn, c) in enumerate(counter.most_common(n), 1):
                print(f"| {i} | {c:,} | {c / samples:.1%} | `{fn}` |")


if __name__ == "__main__":
    print_top(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
