"""Regression tests for programs written against dask.distributed: each body runs against
shoal and against distributed (the ``any_client`` fixture) and must give the same answer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def make(i):
    return np.full(10, float(i))


def test_map_over_futures_keys_follow_inputs(any_client):
    # A pure key must depend on the keys of the futures passed in: five different inputs,
    # five different tasks (once all five got the key of the first and summed to 0.0).
    c = any_client
    parts = c.map(make, range(5))
    sums = c.map(np.sum, parts)
    assert len({f.key for f in sums}) == 5
    assert c.gather(sums) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert c.submit(sum, sums).result(timeout=30) == 100.0


def test_pure_submit_of_futures(any_client):
    c = any_client
    a, b = c.submit(make, 1), c.submit(make, 2)
    assert c.submit(np.sum, a).key == c.submit(np.sum, a).key  # same input: same task
    assert c.submit(np.sum, a).key != c.submit(np.sum, b).key
    assert c.submit(np.sum, [a]).key != c.submit(np.sum, [b]).key
    assert c.gather([c.submit(np.sum, a), c.submit(np.sum, b)]) == [10.0, 20.0]


MAIN_SCRIPT = """
import sys
from {module} import Client
import dask
import dask.bag as db

def noop(x):
    return x

def inc(x):
    return x + 1

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

def norm2(p):
    return p.x * p.x + p.y * p.y

def make_point(i):
    return Point(i, i + 1)

if __name__ == "__main__":
    c = Client({connect})
    c.wait_for_workers(2)
    # a raw graph of module-level functions of this script, through client.get
    assert c.get({{"a": (noop, 1), "b": (inc, "a")}}, "b") == 2
    # submit and map of such functions, with arguments of a class of this script
    assert c.submit(norm2, Point(3, 4)).result() == 25
    assert c.gather(c.map(norm2, [Point(i, 0) for i in range(4)])) == [0, 1, 4, 9]
    # scattered data of this script's class
    p = c.scatter(Point(1, 2))
    assert c.submit(norm2, p).result() == 5
    # a result of this script's class made on one worker, read by a task on the other
    workers = sorted(c.scheduler_info()["workers"])
    made = c.submit(make_point, 2, workers=[workers[0]], pure=False)
    assert c.submit(norm2, made, workers=[workers[1]], pure=False).result() == 13
    # the result itself back in this process
    assert c.submit(make_point, 5).result().y == 6
    # dask collections built from this script's functions
    assert dask.delayed(inc)(dask.delayed(noop)(41)).compute(scheduler=c) == 42
    assert db.from_sequence(range(10), npartitions=3).map(inc).sum().compute(scheduler=c) == 55
    c.close()
    print("MAIN OK")
"""


@pytest.mark.parametrize("module", ["shoal", "distributed"])
def test_functions_and_classes_of_the_main_script(module, cluster, request, tmp_path):
    # Functions and classes defined in the user's script live in its __main__; workers have
    # another __main__, so they must travel by value (once: AttributeError on the worker).
    if module == "shoal":
        connect = f"scheduler_file={str(cluster)!r}"
    else:
        lc = request.getfixturevalue("distributed_cluster")
        connect = repr(lc.scheduler_address)
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT.format(module=module, connect=connect)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "MAIN OK" in out.stdout, out.stdout + out.stderr
