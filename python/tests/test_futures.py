"""The futures API against a real cluster."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest

import shoal
from conftest import wait_for


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def slow(x, delay=0.5):
    time.sleep(delay)
    return x


class MyError(Exception):
    pass


def fail(message):
    raise MyError(message)


def stored(client) -> int:
    return sum(w["metrics"]["stored_count"] for w in client.scheduler_info()["workers"].values())


def test_submit_result_and_dependencies(client):
    a = client.submit(inc, 1)
    b = client.submit(add, a, y=10)
    c = client.submit(sum, [a, b, 5])
    assert a.result(timeout=10) == 2
    assert b.result(timeout=10) == 12
    assert c.result(timeout=10) == 19
    assert a.done() and a.exception(timeout=1) is None
    assert a.key.startswith("inc-")


def test_pure_keys_are_shared_and_impure_are_not(client):
    assert client.submit(inc, 5).key == client.submit(inc, 5).key
    assert client.submit(inc, 5, pure=False).key != client.submit(inc, 5, pure=False).key
    assert client.submit(inc, 5, key="mine").key == "mine"


def test_lambda_kwargs_and_closure(client):
    k = 7
    f = client.submit(lambda x, *, y: x * y + k, 3, y=2)
    assert f.result(timeout=10) == 13


def test_map_is_one_submission_and_gather_keeps_shape(client):
    futures = client.map(add, range(100), range(100))
    assert len(futures) == 100
    assert client.gather(futures, timeout=30) == [2 * i for i in range(100)]
    assert client.gather({"a": futures[1], "b": [futures[2], 3]}) == {"a": 2, "b": [4, 3]}


def test_map_with_duplicate_elements(client):
    futures = client.map(inc, [1, 1, 2])
    assert futures[0].key == futures[1].key
    assert client.gather(futures) == [2, 2, 3]


def test_exception_keeps_type_message_and_remote_traceback(client):
    f = client.submit(fail, "broken input")
    with pytest.raises(MyError, match="broken input") as info:
        f.result(timeout=10)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "in fail" in notes
    assert isinstance(f.exception(timeout=1), MyError)
    assert "in fail" in f.traceback()
    # A dependent fails with the same exception, naming the failed key.
    g = client.submit(inc, f)
    with pytest.raises(MyError) as info:
        g.result(timeout=10)
    assert f.key in "\n".join(info.value.__notes__)


def test_unpicklable_result_names_the_key_and_type(client):
    f = client.submit(lambda: threading.Lock())
    with pytest.raises(TypeError, match=f"{f.key}.*lock"):
        f.result(timeout=10)


def test_unpicklable_argument_is_refused_before_submission(client):
    with pytest.raises(TypeError, match="cannot pickle"):
        client.submit(inc, threading.Lock())


def test_timeout(client):
    f = client.submit(slow, 1, 2.0, pure=False)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.1)
    f.cancel()


def test_cancel(client):
    blocker = [client.submit(slow, i, 1.0, pure=False) for i in range(2)]
    f = client.submit(slow, 1, 1.0, pure=False)
    g = client.submit(inc, f)
    client.cancel([g, f])
    assert wait_for(lambda: f.cancelled() and g.cancelled(), timeout=5)
    with pytest.raises(shoal.CancelledError):
        g.result(timeout=5)
    client.gather(blocker, timeout=10)


def test_release_frees_worker_memory(client):
    def in_memory():
        return dict(client.scheduler_info()["tasks"]).get("memory", 0)

    futures = client.map(lambda i: np.ones(1000) * i, range(20), key="release-me")
    client.gather(futures)
    held = in_memory()
    assert held >= 20
    assert wait_for(lambda: stored(client) >= 20, timeout=5)  # worker figures: heartbeats
    del futures
    gc.collect()
    assert wait_for(lambda: in_memory() <= held - 20, timeout=5), client.scheduler_info()["tasks"]
    assert wait_for(lambda: stored(client) <= held - 20, timeout=5)


def test_as_completed_and_wait(client):
    futures = [client.submit(slow, i, 0.3 * (3 - i), pure=False) for i in range(3)]
    seen = [f.result() for f in shoal.as_completed(futures, timeout=20)]
    assert sorted(seen) == [0, 1, 2]
    futures = [client.submit(slow, 1, 0.1, pure=False), client.submit(slow, 2, 3.0, pure=False)]
    done, not_done = shoal.wait(futures, timeout=10, return_when=shoal.FIRST_COMPLETED)
    assert len(done) >= 1
    done, not_done = shoal.wait(futures, timeout=10)
    assert not not_done
    pairs = dict(shoal.as_completed(futures, with_results=True))
    assert sorted(pairs.values()) == [1, 2]


def test_add_done_callback(client):
    seen = []
    event = threading.Event()
    f = client.submit(inc, 41)

    def callback(fut):
        seen.append(fut.result())
        event.set()

    f.add_done_callback(callback)
    assert event.wait(10)
    assert seen == [42]


def test_fire_and_forget(client, tmp_path):
    target = tmp_path / "written"

    def write(path):
        time.sleep(0.3)
        with open(path, "w") as fh:
            fh.write("yes")

    shoal.fire_and_forget(client.submit(write, str(target), pure=False))
    gc.collect()
    assert wait_for(target.exists, timeout=10)


def test_scatter(client):
    data = np.arange(10)
    [f] = client.scatter([data])
    assert client.submit(np.sum, f).result(timeout=10) == 45
    futures = client.scatter({"x": 1, "y": 2})
    assert client.submit(add, futures["x"], futures["y"]).result(timeout=10) == 3
    single = client.scatter(5)
    assert single.result(timeout=10) == 5


def test_scatter_broadcast_puts_a_copy_on_every_worker_and_release_frees_them(client):
    payload = bytes(range(256)) * 4096
    [f] = client.scatter([payload], broadcast=True, hash=False)
    key = f.key
    # The lambda runs before the `del f` below (ruff cannot tell).
    assert wait_for(lambda: len(client.who_has(f)[key]) == 2, timeout=10), client.who_has(f)  # noqa: F821
    addresses = list(client.scheduler_info()["workers"])
    assert sorted(client.who_has(f)[key]) == sorted(addresses)
    lengths = [client.submit(len, f, workers=[a], pure=False).result(timeout=30) for a in addresses]
    assert lengths == [len(payload)] * 2
    del f
    assert wait_for(lambda: client._native.who_has([key]) == [[]], timeout=10)


def test_run_on_every_worker(client):
    pids = client.run(os.getpid)
    assert len(pids) == 2 and len(set(pids.values())) == 2


def test_scheduler_info_and_progress(client, capsys):
    info = client.scheduler_info()
    assert len(info["workers"]) == 2 and info["id"].startswith("Scheduler-")
    futures = client.map(slow, range(4), [0.05] * 4, pure=False)
    shoal.progress(futures, interval=0.05, timeout=20)
    assert "4/4 done" in capsys.readouterr().err


def test_get_with_a_plain_graph(client):
    dsk = {"a": 1, "b": (inc, "a"), "c": (add, "a", "b"), ("d", 0): (sum, ["b", "c"])}
    assert client.get(dsk, "c") == 3
    assert client.get(dsk, [["b"], ("d", 0)]) == [[2], 5]


def test_large_array_round_trip_is_zero_copy_on_receipt(client):
    n = 64 * 2**20 // 8  # 64 MiB
    f = client.submit(np.ones, n)
    g = client.submit(lambda x: x.sum(), f)
    assert g.result(timeout=30) == n
    value = f.result(timeout=30)
    assert value.nbytes == n * 8 and value.flags.writeable and value.flags.aligned
    assert value.sum() == n


def test_bad_scheduler_file_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(OSError):
        shoal.Client(scheduler_file=tmp_path / "missing.json", timeout=1)
    assert time.monotonic() - start < 5
