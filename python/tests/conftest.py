"""A real `shoal local` cluster (2 workers x 1 thread) for the whole test session,
started with this interpreter's `python -m shoal` and stopped by pid even on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

import shoal

START_TIMEOUT = 30


@contextlib.contextmanager
def local_cluster(directory, *flags):
    """`python -m shoal local FLAGS` writing its scheduler file and log into `directory`;
    yields the scheduler file. The whole process group is stopped on exit."""
    scheduler_file = directory / "scheduler.json"
    log = open(directory / "cluster.log", "wb")
    # Tests pickle their own functions by module name: workers must import them too,
    # whatever directory pytest was started from.
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "local", "--scheduler-file", str(scheduler_file), *flags],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not scheduler_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shoal local did not start: {(directory / 'cluster.log').read_text()}")
            time.sleep(0.05)
        yield scheduler_file
    finally:
        # The whole process group: the scheduler and its worker processes.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("cluster"), "--workers", "2", "--nthreads", "1",
                       "--memory-limit", "0") as scheduler_file:
        yield scheduler_file


@pytest.fixture
def client(cluster):
    with shoal.Client(scheduler_file=cluster, timeout=10) as c:
        c.wait_for_workers(2, timeout=START_TIMEOUT)
        yield c


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture(scope="session")
def distributed_cluster():
    """A dask.distributed LocalCluster (2 worker processes x 1 thread) to run the same test
    bodies against: what distributed does is the specification shoal follows."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as lc:
        yield lc


@pytest.fixture(params=["shoal", "distributed"])
def any_client(request):
    """A client of shoal or of dask.distributed, for tests whose body must give the same
    answer on both (``request.param`` names which)."""
    if request.param == "shoal":
        yield request.getfixturevalue("client")
        return
    import distributed

    lc = request.getfixturevalue("distributed_cluster")
    with distributed.Client(lc, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=START_TIMEOUT)
        yield c

