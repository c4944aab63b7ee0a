"""distributed's Client API on shoal: every test body runs against shoal and against
dask.distributed (``backend``: the module and a client of it) and asserts what
distributed gives, so that a difference in behaviour shows as a failure on one side."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import time

import pytest

# --- tasks (module level: both backends' workers import this module by name) ----------


def inc(x):
    return x + 1


def slow_inc(x, delay=0.3):
    time.sleep(delay)
    return x + 1


def fail_once(modname, name):
    """Raises the first time it runs for ``name`` (remembered in a Variable)."""
    mod = importlib.import_module(modname)
    v = mod.Variable(name)
    try:
        seen = v.get(timeout=0.5)
    except Exception:  # noqa: BLE001 - not set yet (both backends time out their own way)
        seen = False
    if not seen:
        v.set(True)
        raise ValueError("first run fails")
    return "second run"


def locked_increment(modname, lock_name, var_name):
    """Read-modify-write of a Variable under a Lock: correct only with mutual exclusion."""
    mod = importlib.import_module(modname)
    with mod.Lock(lock_name):
        v = mod.Variable(var_name)
        n = v.get()
        time.sleep(0.01)
        v.set(n + 1)
    return True


def wait_for_event(modname, name):
    mod = importlib.import_module(modname)
    return mod.Event(name).wait(timeout=20)


def put_items(modname, name, n):
    mod = importlib.import_module(modname)
    q = mod.Queue(name)
    for i in range(n):
        q.put(i)
    return n


def fib(modname, n):
    """Recursive tasks waiting on their children: deadlocks a worker of 1 thread unless the
    waiting task leaves its thread (worker_client secedes)."""
    if n < 2:
        return n
    mod = importlib.import_module(modname)
    with mod.worker_client() as c:
        a, b = c.submit(fib, modname, n - 1), c.submit(fib, modname, n - 2)
        return a.result() + b.result()


def manual_secede(modname):
    mod = importlib.import_module(modname)
    c = mod.get_client()
    mod.secede()
    value = c.submit(inc, 41).result()
    mod.rejoin()
    return value


def where_am_i(modname):
    w = importlib.import_module(modname).get_worker()
    return w.address, w.name


class Counter:
    n = 0  # distributed's proxies read only attributes the class declares

    def __init__(self, start=0):
        self.n = start

    def increment(self, by=1):
        self.n += by
        return self.n


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["shoal", "distributed"])
def backend(request):
    """(module, client) of shoal or of distributed."""
    if request.param == "shoal":
        import shoal

        yield shoal, request.getfixturevalue("client")
        return
    distributed = pytest.importorskip("distributed")
    lc = request.getfixturevalue("distributed_cluster")
    # As users have it: the client is the default one.
    with distributed.Client(lc) as c:
        c.wait_for_workers(2, timeout=30)
        yield distributed, c


def unique(prefix):
    return f"{prefix}-{time.monotonic_ns()}"


# --- shapes ---------------------------------------------------------------------------------


def test_scheduler_info_shape(backend):
    mod, c = backend
    info = c.scheduler_info()
    assert isinstance(info["workers"], dict) and len(info["workers"]) == 2
    assert info["type"] == "Scheduler" and info["id"]
    for address, w in info["workers"].items():
        assert address.startswith("tcp://")
        assert w["nthreads"] == 1
        assert w["memory_limit"] >= 0
        assert "name" in w and "host" in w
    assert c.nthreads() == {a: 1 for a in info["workers"]}


def test_as_completed_add_while_iterating_and_with_results(backend):
    mod, c = backend
    ac = mod.as_completed([c.submit(inc, 1)])
    seen = []
    for f in ac:
        seen.append(f.result())
        if len(seen) < 3:
            ac.add(c.submit(inc, seen[-1]))
    assert seen == [2, 3, 4]
    pairs = sorted(r for _, r in mod.as_completed(c.map(inc, range(5)), with_results=True))
    assert pairs == [1, 2, 3, 4, 5]
    batches = list(mod.as_completed(c.map(inc, range(4))).batches())
    assert sum(len(b) for b in batches) == 4


def test_wait_return_when_and_timeout(backend):
    mod, c = backend
    fast, slow = c.submit(inc, 1), c.submit(slow_inc, 1, 2.0, pure=False)
    done, not_done = mod.wait([fast, slow], return_when="FIRST_COMPLETED")
    assert fast in done and slow in not_done
    with pytest.raises(TimeoutError):
        mod.wait([slow], timeout=0.1)
    done, _ = mod.wait([fast, slow])
    assert len(done) == 2


def test_futures_of_nested_and_persisted(backend):
    mod, c = backend
    import dask.bag as db

    a, b = c.submit(inc, 1), c.submit(inc, 2)
    assert {f.key for f in mod.futures_of([a, {"x": (b,)}])} == {a.key, b.key}
    bag = c.persist(db.from_sequence(range(6), npartitions=3))
    assert len(mod.futures_of(bag)) == 3


def test_get_executor_runs_concurrent_futures_code(backend):
    mod, c = backend
    with c.get_executor() as ex:
        assert list(ex.map(inc, range(5))) == [1, 2, 3, 4, 5]
        f = ex.submit(inc, 10)
        assert isinstance(f, concurrent.futures.Future) and f.result(timeout=20) == 11


def test_as_current_and_default_client(backend):
    mod, c = backend
    with c.as_current():
        assert mod.Client.current() is c
        assert mod.default_client() is c


def test_exceptions_are_importable_and_raised(backend):
    mod, c = backend
    assert issubclass(mod.KilledWorker, Exception)
    assert mod.TimeoutError is TimeoutError or issubclass(mod.TimeoutError, TimeoutError)
    f = c.submit(slow_inc, 1, 5.0, pure=False)
    f.cancel()
    with pytest.raises(mod.CancelledError):
        f.result(timeout=10)


def test_retry_computes_a_failed_future_again(backend):
    mod, c = backend
    f = c.submit(fail_once, mod.__name__, unique("retry"), pure=False)
    with pytest.raises(ValueError, match="first run fails"):
        f.result(timeout=20)
    f.retry()
    assert f.result(timeout=20) == "second run"


# --- coordination ---------------------------------------------------------------------------


def test_variable_shared_between_client_and_tasks(backend):
    mod, c = backend
    name = unique("var")
    v = mod.Variable(name)
    with pytest.raises(TimeoutError):
        v.get(timeout=0.2)
    x = c.submit(inc, 1)
    v.set(x)
    del x
    got = v.get(timeout=5)
    assert got.result(timeout=10) == 2, "a future held by a Variable keeps its result"
    v.set(7)
    assert v.get() == 7
    v.delete()


def test_lock_gives_mutual_exclusion_across_tasks(backend):
    mod, c = backend
    lock, var = unique("lock"), unique("count")
    mod.Variable(var).set(0)
    assert all(c.gather(c.map(locked_increment, [mod.__name__] * 12, [lock] * 12, [var] * 12, pure=False)))
    assert mod.Variable(var).get() == 12
    lk = mod.Lock(unique("lock"))
    assert lk.acquire(timeout=5) and lk.locked()
    assert not mod.Lock(lk.name).acquire(blocking=False)
    lk.release()
    assert not lk.locked()


def test_semaphore_limits_holders(backend):
    mod, c = backend
    name = unique("sem")
    s1, s2, s3 = (mod.Semaphore(max_leases=2, name=name) for _ in range(3))
    assert s1.acquire(timeout=5) and s2.acquire(timeout=5)
    assert not s3.acquire(timeout=0.2)
    s1.release()
    assert s3.acquire(timeout=5)
    s2.release()
    s3.release()


def test_multilock_takes_all_names(backend):
    mod, c = backend
    a, b = unique("a"), unique("b")
    ml = mod.MultiLock([a, b])
    assert ml.acquire(timeout=5)
    other = mod.MultiLock([b])
    assert not other.acquire(blocking=False)
    ml.release()
    assert other.acquire(timeout=5)
    other.release()


def test_event_set_from_client_wakes_tasks(backend):
    mod, c = backend
    name = unique("event")
    waiters = c.map(wait_for_event, [mod.__name__] * 2, [name] * 2, pure=False)
    time.sleep(0.3)
    ev = mod.Event(name)
    assert not ev.is_set()
    ev.set()
    assert c.gather(waiters) == [True, True]
    assert ev.wait(timeout=1)
    ev.clear()
    assert not ev.wait(timeout=0.1)


def test_queue_between_tasks_and_client(backend):
    mod, c = backend
    name = unique("queue")
    assert c.submit(put_items, mod.__name__, name, 5, pure=False).result(timeout=20) == 5
    q = mod.Queue(name)
    assert q.qsize() == 5
    assert q.get(timeout=5) == 0
    assert q.get(batch=2) == [1, 2]
    assert q.get(batch=True) == [3, 4]
    with pytest.raises(TimeoutError):
        q.get(timeout=0.2)
    q.put(c.submit(inc, 9))
    assert q.get().result(timeout=10) == 10


# --- datasets -------------------------------------------------------------------------------


def test_datasets_publish_get_list_unpublish(backend):
    mod, c = backend
    name = unique("ds")
    f = c.submit(inc, 100)
    c.publish_dataset(f, name=name)
    del f
    assert name in c.list_datasets()
    assert c.get_dataset(name).result(timeout=10) == 101
    with pytest.raises(KeyError):
        c.publish_dataset(1, name=name)
    c.datasets[name + "-2"] = [1, 2]
    assert c.datasets[name + "-2"] == [1, 2]
    c.unpublish_dataset(name)
    del c.datasets[name + "-2"]
    with pytest.raises(KeyError):
        c.get_dataset(name)
    assert c.get_dataset(name, default="none") == "none"


# --- tasks that use the cluster -------------------------------------------------------------


def test_tasks_submit_tasks_without_deadlock(backend):
    # 2 workers of 1 thread: fib(6) has many more waiting tasks than threads.
    mod, c = backend
    assert c.submit(fib, mod.__name__, 6, pure=False).result(timeout=60) == 8


def test_secede_and_rejoin_by_hand(backend):
    mod, c = backend
    assert c.gather(c.map(manual_secede, [mod.__name__] * 3, pure=False)) == [42, 42, 42]


def test_get_worker_in_a_task(backend):
    mod, c = backend
    address, name = c.submit(where_am_i, mod.__name__, pure=False).result(timeout=20)
    assert address in c.scheduler_info()["workers"]
    assert name in {w["name"] for w in c.scheduler_info()["workers"].values()}


def test_actor_keeps_state_on_its_worker(backend):
    mod, c = backend
    counter = c.submit(Counter, 10, actor=True).result(timeout=20)
    assert counter.increment().result(timeout=20) == 11
    futures = [counter.increment(2) for _ in range(5)]
    assert sorted(f.result(timeout=20) for f in futures) == [13, 15, 17, 19, 21]
    assert counter.n == 21


# --- the rest of the surface ----------------------------------------------------------------


def test_who_has_has_what_and_replicate(backend):
    mod, c = backend
    f = c.submit(inc, 5)
    f.result(timeout=10)
    assert len(c.who_has([f])[f.key]) == 1
    held = c.has_what()
    assert set(held) == set(c.scheduler_info()["workers"]) and any(f.key in keys for keys in held.values())
    c.replicate([f])
    deadline = time.monotonic() + 10
    while len(c.who_has([f])[f.key]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(c.who_has([f])[f.key]) == 2


def test_asynchronous_client(backend, request):
    mod, c = backend
    address = c.scheduler.address if mod.__name__ == "distributed" else None
    scheduler_file = None if address else str(request.getfixturevalue("cluster"))

    async def main():
        kwargs = {"address": address} if address else {"scheduler_file": scheduler_file}
        async with mod.Client(asynchronous=True, **kwargs) as ac:
            f = ac.submit(inc, 1)
            assert await f == 2
            assert await ac.gather(ac.map(inc, range(3))) == [1, 2, 3]
            assert await ac.submit(inc, 41).result() == 42
            return True

    assert asyncio.run(main())


def test_shoal_says_what_it_cannot_do():
    # Features that cannot fit shoal's design fail with an explanation, not silently.
    import shoal

    assert shoal.Client.dashboard_link.fget is not None
    with pytest.raises(NotImplementedError, match="runs no Python"):
        shoal.Client.run_on_scheduler(object.__new__(shoal.Client), print)


def test_shoal_dashboard_link_and_rebalance(client):
    # The link carries the dashboard's token (tests/test_dashboard_link.py opens it).
    assert client.dashboard_link.startswith("http://") and "/status?token=" in client.dashboard_link
    with pytest.warns(UserWarning, match="rebalance"):
        client.rebalance()


# --- cluster control and diagnostics (each on a cluster of its own: they restart or
# retire workers) -------------------------------------------------------------------------


@pytest.fixture
def own_backend(request, tmp_path):
    """(module, client) of a fresh 2-worker cluster of shoal or distributed."""
    if request.param == "shoal":
        import shoal
        from conftest import local_cluster

        with local_cluster(tmp_path, "--workers", "2", "--nthreads", "1", "--memory-limit", "0") as sf:
            with shoal.Client(scheduler_file=sf) as c:
                c.wait_for_workers(2, timeout=30)
                yield shoal, c
        return
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as lc, distributed.Client(lc) as c:
        c.wait_for_workers(2, timeout=30)
        yield distributed, c


both = pytest.mark.parametrize("own_backend", ["shoal", "distributed"], indirect=True)


@both
def test_restart_cancels_futures_and_workers_come_back(own_backend):
    mod, c = own_backend
    f = c.submit(inc, 1)
    assert f.result(timeout=20) == 2
    c.restart()
    assert len(c.scheduler_info()["workers"]) == 2
    with pytest.raises(mod.CancelledError):
        f.result(timeout=10)
    assert c.submit(inc, 2).result(timeout=20) == 3, "the cluster works after a restart"


@both
def test_restart_workers_recomputes_their_results(own_backend):
    mod, c = own_backend
    f = c.submit(inc, 10, pure=False)
    assert f.result(timeout=20) == 11
    holder = c.who_has([f])[f.key][0]
    c.restart_workers([holder])
    g = c.submit(inc, f, pure=False)
    assert g.result(timeout=30) == 12


@both
def test_retire_workers_keeps_every_result(own_backend):
    mod, c = own_backend
    workers = sorted(c.scheduler_info()["workers"])
    futures = c.map(inc, range(20), workers=[workers[0]], pure=False)
    mod.wait(futures)
    c.retire_workers([workers[0]])
    left = c.scheduler_info()["workers"]
    assert list(left) == [workers[1]]
    assert c.gather(futures) == list(range(1, 21))
    assert all(set(v) == {workers[1]} for v in c.who_has(futures).values()), "moved, not recomputed elsewhere"


UPLOADED = "def answer():\n    return {value}\n"


def call_uploaded(module_name):
    return importlib.import_module(module_name).answer()


@both
def test_upload_file_reaches_current_and_later_workers(own_backend, tmp_path):
    mod, c = own_backend
    name = f"shoal_uploaded_{time.monotonic_ns()}"
    path = tmp_path / f"{name}.py"
    path.write_text(UPLOADED.format(value=41))
    c.upload_file(str(path))
    assert c.gather(c.map(call_uploaded, [name] * 4, pure=False)) == [41] * 4
    # Workers restarted (or joining later) get it too.
    c.restart()
    assert c.submit(call_uploaded, name, pure=False).result(timeout=30) == 41


class _MarkerMixin:
    """A worker plugin recording that setup ran (distributed's plugin interface)."""

    name = "marker"

    def setup(self, worker):
        import os

        os.environ["SHOAL_TEST_MARKER"] = "set"

    def teardown(self, worker):
        pass


class ShoalMarker(_MarkerMixin, importlib.import_module("shoal").WorkerPlugin):
    pass


class DistributedMarker(_MarkerMixin, importlib.import_module("distributed").WorkerPlugin):
    pass


def marker(mod):
    return ShoalMarker() if mod.__name__ == "shoal" else DistributedMarker()


def read_marker(_=None):
    import os

    return os.environ.get("SHOAL_TEST_MARKER")


@both
def test_register_plugin_runs_setup_on_every_worker(own_backend):
    mod, c = own_backend
    c.register_plugin(marker(mod))
    assert c.gather(c.map(read_marker, range(4), pure=False)) == ["set"] * 4


@both
def test_get_task_stream_and_performance_report(own_backend, tmp_path):
    mod, c = own_backend
    with mod.get_task_stream() as ts:
        c.gather(c.map(slow_inc, range(4), [0.05] * 4, pure=False))
    runs = [r for r in ts.data if "slow_inc" in str(r["key"])]
    assert len(runs) == 4
    for r in runs:
        s = r["startstops"][0]
        assert s["stop"] >= s["start"] and r["worker"] in c.scheduler_info()["workers"]
    report = tmp_path / "report.html"
    with mod.performance_report(filename=str(report)):
        c.gather(c.map(inc, range(10), pure=False))
    text = report.read_text()
    assert "<html" in text.lower() and "inc" in text
    assert len(c.get_task_stream()) >= 4


@contextlib.contextmanager
def late_worker(client, scheduler_file, nthreads):
    """A `shoal worker` process named "late" joining the cluster now (no plugin marker in
    its environment), stopped by its process group on exit."""
    import os
    import signal
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    env.pop("SHOAL_TEST_MARKER", None)
    late = subprocess.Popen([sys.executable, "-m", "shoal", "worker", "--scheduler-file", str(scheduler_file),
                             "--nthreads", str(nthreads), "--memory-limit", "0", "--name", "late"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        client.wait_for_workers(len(client.scheduler_info()["workers"]) + 1, timeout=30)
        yield
    finally:
        os.killpg(late.pid, signal.SIGTERM)
        late.wait(timeout=20)


def test_upload_file_and_plugins_reach_a_worker_that_joins_later(tmp_path):
    # shoal only: a third worker process started after the upload.
    import shoal
    from conftest import local_cluster

    with local_cluster(tmp_path, "--workers", "1", "--nthreads", "1", "--memory-limit", "0") as sf:
        with shoal.Client(scheduler_file=sf) as c:
            c.wait_for_workers(1, timeout=30)
            name = f"shoal_uploaded_{time.monotonic_ns()}"
            path = tmp_path / f"{name}.py"
            path.write_text(UPLOADED.format(value=7))
            c.upload_file(str(path))
            c.register_plugin(ShoalMarker())
            with late_worker(c, sf, nthreads=1):
                assert c.submit(call_uploaded, name, workers=["late"], pure=False).result(timeout=30) == 7
                assert c.submit(read_marker, workers=["late"], pure=False).result(timeout=30) == "set"


class SlowMarker(_MarkerMixin, importlib.import_module("shoal").WorkerPlugin):
    """The marker plugin, whose setup takes a second (as one that installs or downloads)."""

    name = "slow-marker"

    def setup(self, worker):
        time.sleep(1.0)
        super().setup(worker)


def test_every_thread_of_a_worker_that_joins_later_runs_its_first_task_after_plugin_setup(tmp_path):
    # shoal only: a worker of 2 threads started after the plugin was registered. Its
    # second thread starts its first task while the first thread is still setting the
    # plugin up: it must wait for that setup, not run without the plugin (it did).
    import shoal
    from conftest import local_cluster

    with local_cluster(tmp_path, "--workers", "1", "--nthreads", "1", "--memory-limit", "0") as sf:
        with shoal.Client(scheduler_file=sf) as c:
            c.wait_for_workers(1, timeout=30)
            c.register_plugin(SlowMarker())
            with late_worker(c, sf, nthreads=2):
                first = c.submit(read_marker, 1, workers=["late"], pure=False)
                time.sleep(0.3)  # the first thread is setting the plugin up now
                second = c.submit(read_marker, 2, workers=["late"], pure=False)
                assert [f.result(timeout=30) for f in (first, second)] == ["set", "set"]


def hold_semaphore(name, seconds):
    import shoal

    sem = shoal.Semaphore(max_leases=1, name=name)
    assert sem.acquire(timeout=10)
    time.sleep(seconds)
    return "held"


def worker_pid(_=None):
    import os

    return os.getpid()


def test_leases_and_actors_die_with_their_worker(tmp_path):
    # shoal only: a worker process killed for real. Its task's semaphore lease returns
    # (the lease belonged to its connection), and its actor's calls fail instead of waiting.
    import os
    import signal

    import shoal
    from conftest import local_cluster

    with local_cluster(tmp_path, "--workers", "2", "--nthreads", "2", "--memory-limit", "0") as sf:
        with shoal.Client(scheduler_file=sf) as c:
            c.wait_for_workers(2, timeout=30)
            workers = sorted(c.scheduler_info()["workers"])
            victim = workers[0]
            pid = c.submit(worker_pid, workers=[victim], pure=False).result(timeout=20)
            name = unique("sem")
            holder = c.submit(hold_semaphore, name, 600, workers=[victim], pure=False)
            sem = shoal.Semaphore(max_leases=1, name=name)
            deadline = time.monotonic() + 20
            while sem.get_value() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sem.get_value() == 1 and not sem.acquire(timeout=0.2)
            counter = c.submit(Counter, 1, actor=True, workers=[victim]).result(timeout=20)
            assert counter.increment().result(timeout=20) == 2
            os.kill(pid, signal.SIGKILL)
            assert sem.acquire(timeout=20), "the dead worker's lease was not given back"
            sem.release()
            with pytest.raises(shoal.ActorLostError):
                counter.increment().result(timeout=60)
            del holder
