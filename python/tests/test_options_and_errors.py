"""Task options (retries, resources, workers) and connection errors, against real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import shoal
from conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fail_once(marker):
    """Fails the first time (leaving a marker file), succeeds afterwards."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return 42


def pid(_=None):
    return os.getpid()


def test_retries(client, tmp_path):
    assert client.submit(fail_once, str(tmp_path / "a"), retries=1).result(timeout=30) == 42
    with pytest.raises(RuntimeError, match="first attempt fails"):
        client.submit(fail_once, str(tmp_path / "b"), retries=0).result(timeout=30)


def test_workers_restriction(client):
    workers = list(client.scheduler_info()["workers"].values())
    target = next(w for w in workers if w["name"] == "local-1")
    by_name = client.map(pid, range(20), workers="local-1")
    assert set(client.gather(by_name, timeout=30)) == {target["pid"]}
    by_address = client.map(pid, range(20, 40), workers=[target["address"]])
    assert set(client.gather(by_address, timeout=30)) == {target["pid"]}


def test_resources_wait_for_a_worker_that_has_them(client, cluster):
    f = client.submit(pid, 1, resources={"GPU": 1}, pure=False)
    time.sleep(0.5)
    assert not f.done(), "no worker of the cluster has a GPU"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "-q", "worker", "--scheduler-file", str(cluster), "--name", "gpu-worker",
         "--nthreads", "1", "--resources", "GPU=1", "--memory-limit", "0"],
        start_new_session=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")]))),
    )
    try:
        assert f.result(timeout=30) == proc.pid
        del f
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_scheduler_fails_within_the_timeout(cluster, tmp_path):
    info = json.loads(open(cluster).read())
    info["address"] = f"tcp://127.0.0.1:{_free_port()}"
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps(info))
    start = time.monotonic()
    with pytest.raises(Exception) as err:
        shoal.Client(scheduler_file=dead, timeout=2)
    assert time.monotonic() - start < 8
    assert "127.0.0.1" in str(err.value) or "connect" in str(err.value).lower(), err.value


def test_scheduler_file_of_another_protocol_version(cluster, tmp_path):
    info = json.loads(open(cluster).read())
    info["protocol_version"] = info["protocol_version"] + 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps(info))
    start = time.monotonic()
    with pytest.raises(Exception, match="protocol version"):
        shoal.Client(scheduler_file=other, timeout=2)
    assert time.monotonic() - start < 8


def _rust_shoal():
    # SHOAL_RUST_BIN names a build of the Rust binary (e.g. one under $CARGO_TARGET_DIR);
    # otherwise the most recently built of the release and debug binaries.
    if os.access(os.environ.get("SHOAL_RUST_BIN", ""), os.X_OK):
        return os.environ["SHOAL_RUST_BIN"]
    builds = [os.path.join(ROOT, "target", kind, "shoal") for kind in ("release", "debug")]
    builds = [b for b in builds if os.access(b, os.X_OK)]
    return max(builds, key=os.path.getmtime, default=None)


@pytest.mark.skipif(_rust_shoal() is None, reason="the Rust `shoal` binary is not built (cargo build -p shoal-launcher)")
def test_python_task_on_rust_workers_says_how_to_start_python_workers(tmp_path):
    sf = tmp_path / "rust.json"
    proc = subprocess.Popen(
        [_rust_shoal(), "-q", "local", "--workers", "1", "--nthreads", "1", "--memory-limit", "0", "--scheduler-file", str(sf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert wait_for(sf.exists, timeout=30)
        with shoal.Client(scheduler_file=sf, timeout=10) as c:
            c.wait_for_workers(1, timeout=30)
            f = c.submit(pid, 1)
            with pytest.raises(Exception, match="python -m shoal") as err:
                f.result(timeout=20)
            assert "Python" in str(err.value)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
