"""Worker memory management from Python: dask.array data three times the workers' memory
completes by spilling, and a worker killed by its nanny above the terminate threshold is
restarted while the graph still completes. Each test starts its own `shoal local`."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

import shoal

from conftest import local_cluster, wait_for

MIB = 1 << 20


@contextlib.contextmanager
def memory_cluster(tmp_path, *flags):
    with local_cluster(tmp_path, "--nthreads", "1", "--local-directory", str(tmp_path), *flags) as scheduler_file:
        with shoal.Client(scheduler_file=scheduler_file, timeout=10) as client:
            yield client, tmp_path / "cluster.log"


def test_dask_array_three_times_the_memory_limit_completes_by_spilling(tmp_path):
    da = pytest.importorskip("dask.array")
    np = pytest.importorskip("numpy")
    with memory_cluster(tmp_path, "--workers", "2", "--memory-limit", "300MiB") as (client, log):
        client.wait_for_workers(2, timeout=30)
        # 1.8 GB held at once: three times the 2 x 300 MiB of the workers.
        chunk = 1024  # 8 MiB chunks
        side = chunk * 15
        x = da.random.RandomState(7).random((side, side), chunks=(chunk, chunk))
        (x,) = client.persist([x])
        total = client.compute((x * 2).sum()).result(timeout=300)
        column = client.compute(x[:, 5]).result(timeout=120)
        expected = da.random.RandomState(7).random((side, side), chunks=(chunk, chunk))[:, 5].compute(
            scheduler="synchronous")
        assert np.array_equal(column, expected)
        assert abs(total / (side * side) - 1.0) < 0.01
        workers = list(client.scheduler_info()["workers"].values())
        spilled = sum(w["metrics"]["memory"]["spill_bytes"] for w in workers)
        assert spilled > 1000 * MIB, workers
        assert all(w["metrics"]["rss"] < 0.95 * 300 * MIB for w in workers), workers
        del x


def spike_once(marker, i):
    """Uses far more memory than the worker may, the first time only."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        hog = bytearray(b"\x01") * (500 * MIB)
        time.sleep(60)
        del hog
    return i


def double(i):
    return 2 * i


def test_the_nanny_restarts_a_worker_above_terminate_and_the_graph_completes(tmp_path):
    flags = ("--workers", "1", "--memory-limit", "400MiB", "--memory-target", "false", "--memory-spill", "false",
             "--memory-pause", "false")
    with memory_cluster(tmp_path, *flags) as (client, log):
        client.wait_for_workers(1, timeout=30)
        before = list(client.scheduler_info()["workers"].values())[0]["pid"]
        marker = str(tmp_path / "spiked")
        parts = client.map(double, range(10))
        spiky = client.submit(spike_once, marker, 100)
        total = client.submit(sum, [*parts, spiky])
        assert total.result(timeout=120) == 2 * sum(range(10)) + 100
        assert os.path.exists(marker)
        after = list(client.scheduler_info()["workers"].values())[0]["pid"]
        assert after != before
        assert "terminate threshold" in log.read_text()


def unpicklable_big():
    import threading

    return threading.Lock(), bytearray(b"\x01") * (260 * MIB)


def second_length(pair):
    return len(pair[1])


def test_a_result_that_cannot_be_serialised_stays_in_memory_and_is_used(tmp_path):
    flags = ("--workers", "1", "--memory-limit", "400MiB", "--memory-pause", "false", "--memory-terminate", "false")
    with memory_cluster(tmp_path, *flags) as (client, log):
        client.wait_for_workers(1, timeout=30)
        big = client.submit(unpicklable_big)
        # Above the target, the worker tries to spill it, cannot pickle the lock, and
        # keeps it: the dependent task still reads it.
        assert wait_for(lambda: "stays in memory" in log.read_text(), timeout=30), log.read_text()
        assert client.submit(second_length, big).result(timeout=60) == 260 * MIB
