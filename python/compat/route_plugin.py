"""Route dask's own test suite through a cluster: a pytest plugin.

Enable it with ``-p route_plugin`` (this directory on ``PYTHONPATH``) and choose a backend:

    --route=shoal         one ``python -m shoal local --workers 2 --nthreads 1`` for the session
    --route=distributed   one ``distributed.LocalCluster`` (2 worker processes x 1 thread),
                          in a process of its own (distributed_cluster.py), as shoal's is
    --route=none          nothing routed (dask's own schedulers, as dask's CI runs them)

Which computes are routed (``--route-scope``):

    all (default)   every compute that would run on the default scheduler, and every one
                    that names a local scheduler: ``scheduler="sync"``, ``"threads"``,
                    ``"processes"`` (and their aliases), the same names set with
                    ``dask.config.set(scheduler=...)``, and the functions ``dask.get``,
                    ``dask.local.get_sync``, ``dask.threaded.get``,
                    ``dask.multiprocessing.get`` passed as ``scheduler=``.
                    This is the setting that tests anything: dask's ``assert_eq`` computes
                    with ``scheduler="sync"``, so routing only the default would leave
                    most of dask.array and dask.dataframe's tests on the local scheduler.
    default         only computes that use the default scheduler.

Never routed: other callables and executors passed as ``scheduler=`` (tests counting the
calls of their own ``get`` keep it), and calls of ``dask.local.get_sync`` etc. made
directly. A test that checks *which* scheduler ran may fail on both backends; the
comparison is per test, so that costs nothing.

Each test's result is appended as one JSON line to ``--route-results FILE`` as soon as it is
known (``{"nodeid", "outcome", "message", "routed", "duration"}``, outcome one of passed,
failed, error, skipped, xfailed, xpassed), so a run stopped part-way keeps what it had; a
``{"nodeid", "outcome": "started"}`` line goes before each test. ``--route-resume`` runs
only the tests that FILE has no result for: a test that started and never ended (the
process crashed in it, e.g. a segfault) is recorded as ``crashed`` and not run again.
Per-test time limits come from pytest-timeout (``--timeout``).

The cluster is started in ``pytest_configure`` and stopped in ``pytest_unconfigure`` (and
at exit, by the process group id). Should pytest die before that (a segfault), the
cluster's process group id is in ``FILE.pgid`` for the runner, and the cluster also stops
by itself: shoal's after a minute without clients (``--idle-timeout``), distributed's when
its parent process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

START_TIMEOUT = 60
STOP_TIMEOUT = 15

_NAMED = {"sync", "synchronous", "single-threaded", "threads", "threading", "processes",
          "multiprocessing", "distributed", "dask.distributed"}


def pytest_addoption(parser):
    group = parser.getgroup("route", "route dask computes to a cluster")
    group.addoption("--route", choices=["shoal", "distributed", "none"], default="none",
                    help="backend every dask compute is routed to (default: none)")
    group.addoption("--route-scope", choices=["all", "default"], default="all",
                    help="route explicit local-scheduler choices too (all) or only the default")
    group.addoption("--route-results", default=None,
                    help="append one JSON line per test result to this file")
    group.addoption("--route-resume", action="store_true",
                    help="skip the tests --route-results already has a result for")
    group.addoption("--route-workers", type=int, default=2, help="worker processes (default 2)")
    group.addoption("--route-threads", type=int, default=1, help="threads per worker (default 1)")


class _Backend:
    """One cluster, in a process group of its own, and one client for the session."""

    name = "none"

    def __init__(self, workers: int, threads: int = 1, pgid_file: str | None = None):
        self.workers = workers
        self.threads = threads
        self.pgid_file = pgid_file
        self.client = None
        self.proc = None
        self.log = None
        self.directory = tempfile.mkdtemp(prefix=f"{self.name}-compat-")

    def command(self, ready_file: str) -> list:
        raise NotImplementedError

    def connect(self, ready_file: str):
        raise NotImplementedError

    def start(self) -> None:
        ready_file = os.path.join(self.directory, "ready")
        self.log = open(os.path.join(self.directory, "cluster.log"), "wb")
        self.proc = subprocess.Popen(
            self.command(ready_file), stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)
        if self.pgid_file:  # for the runner, should this process die without stopping it
            with open(self.pgid_file, "a") as f:
                f.write(f"{self.proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(ready_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} cluster did not start; log:\n{self.log_text()}")
            time.sleep(0.05)
        self.client = self.connect(ready_file)
        self.client.wait_for_workers(self.workers, timeout=START_TIMEOUT)

    def get(self):
        return self.client.get

    def before_test(self) -> None:
        pass

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.directory, "cluster.log"), "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # The whole process group: the cluster and its worker processes.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
            os.killpg(proc.pid, signal.SIGKILL)
        if self.log is not None:
            self.log.close()
        # Nothing left behind in the temporary directory (a start failure already raised
        # with the log's text).
        shutil.rmtree(self.directory, ignore_errors=True)


class _Shoal(_Backend):
    """``python -m shoal local --workers N --nthreads T``."""

    name = "shoal"

    def command(self, ready_file):
        return [sys.executable, "-m", "shoal", "local", "--workers", str(self.workers), "--nthreads", str(self.threads),
                "--memory-limit", "0", "--scheduler-file", ready_file,
                # Gone by itself a minute after its client, should pytest die (a segfault).
                "--idle-timeout", "60"]

    def connect(self, ready_file):
        import shoal

        return shoal.Client(scheduler_file=ready_file, timeout=30, set_as_default=False)


class _Distributed(_Backend):
    """A ``distributed.LocalCluster`` (N worker processes x T threads) in its own process."""

    name = "distributed"

    def command(self, ready_file):
        here = os.path.dirname(os.path.abspath(__file__))
        return [sys.executable, os.path.join(here, "distributed_cluster.py"), ready_file, str(self.workers),
                str(os.getpid()), str(self.threads)]

    def connect(self, ready_file):
        import distributed

        with open(ready_file) as f:
            address = f.read().strip()
        # The default client, as a distributed user has it (dask asks the default client
        # for the shuffle method and for locks).
        return distributed.Client(address, set_as_default=True, timeout=30)

    def before_test(self) -> None:
        # Some of dask's tests start and close clients of their own, which resets
        # distributed's default client: make ours the default again for each test.
        from distributed.client import _get_global_client, _set_global_client

        if self.client is not None and _get_global_client() is not self.client:
            _set_global_client(self.client)

    def stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=STOP_TIMEOUT)
        super().stop()


class _Router:
    """Replaces ``dask.base.get_scheduler``; counts the computes it routed per test."""

    def __init__(self, backend: _Backend, scope: str):
        import dask
        import dask.base
        import dask.local
        import dask.multiprocessing
        import dask.threaded

        self.backend = backend
        self.scope = scope
        self.original = dask.base.get_scheduler
        self.local_functions = {dask.get, dask.local.get_sync, dask.threaded.get, dask.multiprocessing.get}
        self.routed = 0

    def _choice(self, scheduler):
        import dask

        return scheduler if scheduler is not None else dask.config.get("scheduler", None)

    def routes(self, scheduler) -> bool:
        choice = self._choice(scheduler)
        if choice is None:
            return True
        if self.scope != "all":
            return False
        if isinstance(choice, str):
            return choice.lower() in _NAMED
        if choice is self.backend.client:
            return True
        try:
            return choice in self.local_functions
        except TypeError:  # unhashable
            return False

    def get_scheduler(self, get=None, scheduler=None, collections=None, cls=None):
        if get is None and self.backend.client is not None and self.routes(scheduler):
            self.routed += 1
            return self.backend.get()
        return self.original(get=get, scheduler=scheduler, collections=collections, cls=cls)

    def install(self) -> None:
        import dask.base

        dask.base.get_scheduler = self.get_scheduler

    def uninstall(self) -> None:
        import dask.base

        dask.base.get_scheduler = self.original


_STATE: dict = {}


def _previous(path: str) -> tuple[set, set]:
    """(nodeids with a result, nodeids that started and never ended) in a results file."""
    done, started = set(), set()
    try:
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                (started if r["outcome"] == "started" else done).add(r["nodeid"])
    except FileNotFoundError:
        pass
    return done, started - done


def pytest_configure(config):
    route = config.getoption("--route")
    path = config.getoption("--route-results")
    _STATE["outcomes"] = {}
    _STATE["skip"] = set()
    if path and config.getoption("--route-resume"):
        done, crashed = _previous(path)
        with open(path, "a") as f:
            for nodeid in sorted(crashed):
                f.write(json.dumps({"nodeid": nodeid, "outcome": "crashed", "routed": 0, "duration": 0.0,
                                    "message": "the test process died during this test (e.g. a segfault)"}) + "\n")
        _STATE["skip"] = done | crashed
    _STATE["results"] = open(path, "a") if path else None
    if route == "none":
        return
    workers, threads = config.getoption("--route-workers"), config.getoption("--route-threads")
    pgid_file = f"{path}.pgid" if path else None
    backend = (_Shoal if route == "shoal" else _Distributed)(workers, threads, pgid_file)
    _STATE["backend"] = backend
    try:
        backend.start()
    except BaseException:
        backend.stop()
        raise
    router = _Router(backend, config.getoption("--route-scope"))
    router.install()
    _STATE["router"] = router


def pytest_unconfigure(config):
    router = _STATE.pop("router", None)
    if router is not None:
        router.uninstall()
    backend = _STATE.pop("backend", None)
    if backend is not None:
        backend.stop()
    results = _STATE.pop("results", None)
    if results is not None:
        results.close()


def pytest_collection_modifyitems(session, config, items):
    skip = _STATE.get("skip")
    if skip:
        keep = [item for item in items if item.nodeid not in skip]
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in skip])
        items[:] = keep


def pytest_report_header(config):
    backend = _STATE.get("backend")
    if backend is None:
        return "route: none (dask's own schedulers)"
    return f"route: {backend.name}, scope {config.getoption('--route-scope')}, client {backend.client!r}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    router = _STATE.get("router")
    before = router.routed if router is not None else 0
    backend = _STATE.get("backend")
    if backend is not None:
        backend.before_test()
    _STATE["outcomes"][item.nodeid] = {"nodeid": item.nodeid, "outcome": None, "message": "", "duration": 0.0}
    out = _STATE.get("results")
    if out is not None:
        out.write(json.dumps({"nodeid": item.nodeid, "outcome": "started"}) + "\n")
        out.flush()
    yield
    record = _STATE["outcomes"].pop(item.nodeid, None)
    if record is None:
        return
    record["routed"] = (router.routed - before) if router is not None else 0
    if record["outcome"] is None:
        record["outcome"] = "passed"
    out = _STATE.get("results")
    if out is not None:
        out.write(json.dumps(record) + "\n")
        out.flush()


def _one_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # skips: (path, line, reason)
        text = str(report.longrepr[-1])
    else:
        text = str(report.longrepr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "")[:300]


def pytest_runtest_logreport(report):
    record = _STATE.get("outcomes", {}).get(report.nodeid)
    if record is None:
        return
    record["duration"] += report.duration
    if record["outcome"] not in (None, "passed"):
        return  # the first bad outcome is the one that counts
    xfail = hasattr(report, "wasxfail")
    if report.skipped:
        record["outcome"] = "xfailed" if xfail else "skipped"
        record["message"] = _one_line(report) if not xfail else str(report.wasxfail)[:300]
    elif report.failed:
        record["outcome"] = "failed" if report.when == "call" else "error"
        record["message"] = _one_line(report)
    elif report.when == "call":
        record["outcome"] = "xpassed" if xfail else "passed"
