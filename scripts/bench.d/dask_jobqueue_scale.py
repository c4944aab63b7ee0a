"""Time from `SLURMCluster.scale(N)` to N connected workers, the baseline of the `slurm`
bench section. Runs against the SLURM named by SLURM_CONF; prints seconds.

    python dask_jobqueue_scale.py N LOGDIR
"""
import sys
import time

from dask_jobqueue import SLURMCluster
from distributed import Client


def main():
    n, logdir = int(sys.argv[1]), sys.argv[2]
    cluster = SLURMCluster(
        cores=1, processes=1, memory="512MiB", walltime="00:10:00",
        python=sys.executable, log_directory=logdir,
        scheduler_options={"dashboard_address": None},
    )
    client = Client(cluster)
    try:
        start = time.perf_counter()
        cluster.scale(n)
        client.wait_for_workers(n, timeout=120)
        print(f"{time.perf_counter() - start:.3f}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
