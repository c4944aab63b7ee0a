"""Compare two routed runs of dask's test suite (JSON lines written by route_plugin.py).

    python compare.py --baseline distributed.jsonl --candidate shoal.jsonl \
        [--exceptions exceptions.txt] [--modules MOD ...]

Prints per module: tests, passed on the baseline, passed on the candidate, failed on both,
and passed on the baseline only; then every test that passes on the baseline but not on the
candidate, with its one-line error. A test counts as passed when its outcome is passed
(xpassed counts too; skipped and xfailed count as neither). Exit status 1 when such a test
is not listed in the exceptions file, 0 otherwise.

Exceptions file: one entry a line, ``NODEID_PATTERN  # reason`` (fnmatch pattern, so
``dask/x.py::test_y[*]`` covers every parameter); a line without a reason is an error.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys

PASS = {"passed", "xpassed"}
FAIL = {"failed", "error", "crashed", "stopped"}


def load(path: str) -> dict:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if r["outcome"] != "started" or r["nodeid"] not in out:
                        out[r["nodeid"]] = r
    except FileNotFoundError:
        pass
    for r in out.values():
        if r["outcome"] == "started":  # and no result: the run was stopped during it
            r.update(outcome="stopped", message="no result: the run was stopped during this test")
    return out


def load_exceptions(path: str | None) -> list[tuple[str, str]]:
    if not path:
        return []
    rules = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                pattern, _, reason = line.partition("#")
                if not reason.strip():
                    sys.exit(f"{path}:{n}: an exception needs a reason after '#': {line}")
                rules.append((pattern.strip(), reason.strip()))
    except FileNotFoundError:
        pass
    return rules


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--candidate", required=True)
    ap.add_argument("--baseline-name", default="distributed")
    ap.add_argument("--candidate-name", default="shoal")
    ap.add_argument("--exceptions")
    ap.add_argument("--modules", nargs="*", default=None, help="order of the table (default: as run)")
    args = ap.parse_args(argv)

    base, cand = load(args.baseline), load(args.candidate)
    rules = load_exceptions(args.exceptions)
    modules = list(dict.fromkeys(module_of(k) for k in list(base) + list(cand)))
    if args.modules:
        modules = [m for m in args.modules if m in modules] + [m for m in modules if m not in args.modules]

    b, c = args.baseline_name, args.candidate_name
    rows, regressions, gains = [], [], []
    totals = [0, 0, 0, 0, 0]
    for mod in modules:
        ids = [k for k in dict.fromkeys(list(base) + list(cand)) if module_of(k) == mod]
        n = len(ids)
        bp = sum(1 for k in ids if base.get(k, {}).get("outcome") in PASS)
        cp = sum(1 for k in ids if cand.get(k, {}).get("outcome") in PASS)
        both = sum(1 for k in ids if base.get(k, {}).get("outcome") in FAIL and cand.get(k, {}).get("outcome") in FAIL)
        only = [k for k in ids if base.get(k, {}).get("outcome") in PASS and cand.get(k, {}).get("outcome") not in PASS]
        gains += [k for k in ids if cand.get(k, {}).get("outcome") in PASS and base.get(k, {}).get("outcome") not in PASS]
        regressions += only
        rows.append((mod, n, bp, cp, both, len(only)))
        for i, v in enumerate((n, bp, cp, both, len(only))):
            totals[i] += v
    rows.append(("total", *totals))

    width = max([len(r[0]) for r in rows] + [6])
    head = ("module", "tests", f"{b} passed", f"{c} passed", "both failed", f"{b} only")
    print(f"{head[0]:<{width}}  {head[1]:>6}  {head[2]:>18}  {head[3]:>12}  {head[4]:>11}  {head[5]:>16}")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>6}  {r[2]:>18}  {r[3]:>12}  {r[4]:>11}  {r[5]:>16}")

    unexcused = 0
    if regressions:
        print(f"\nPassed on {b}, not on {c}:")
    for k in regressions:
        rec = cand.get(k)
        what = "not run (the run stopped before it)" if rec is None else f"{rec['outcome']}: {rec['message']}"
        reason = next((r for p, r in rules if fnmatch.fnmatchcase(k, p)), None)
        if reason is None:
            unexcused += 1
            print(f"  {k}\n      {what}")
        else:
            print(f"  {k}  [exception: {reason}]\n      {what}")
    if gains:
        print(f"\nPassed on {c}, not on {b}: {len(gains)}")
        for k in gains:
            rec = base.get(k)
            what = "not run" if rec is None else f"{rec['outcome']}: {rec['message']}"
            print(f"  {k}\n      {b}: {what}")
    if unexcused:
        print(f"\n{unexcused} test(s) pass on {b} and not on {c}, without an exception")
    return 1 if unexcused else 0


if __name__ == "__main__":
    sys.exit(main())
