"""A dask.distributed LocalCluster in a process of its own, for route_plugin.py.

    python distributed_cluster.py ADDRESS_FILE [N_WORKERS [PARENT_PID [THREADS]]]

Starts ``LocalCluster(n_workers=N, threads_per_worker=T, processes=True)``, writes the
scheduler's address into ADDRESS_FILE (atomically) and runs until SIGTERM or SIGINT, then
closes the cluster; also when PARENT_PID is gone (pytest died). It runs outside the pytest process, as shoal's cluster does, so that
dask tests which look for leaked child processes or reset distributed's global state do not
see (or stop) the cluster the whole session routes to.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    import distributed

    path = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    parent = int(sys.argv[3]) if len(sys.argv) > 3 else None
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(cluster.scheduler_address)
        os.replace(tmp, path)
        while not stop.wait(1.0):
            if parent is not None and not _alive(parent):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
