"""Time from `mpirun -np N dask-mpi` to the first task result, the baseline of the
`mpi` bench section. The client starts together with the job, as a user's script would.

    python dask_mpi_first_result.py NP WORKDIR
"""
import os
import subprocess
import sys
import time

from distributed import Client


def main():
    np, workdir = int(sys.argv[1]), sys.argv[2]
    sched = os.path.join(workdir, "dask-scheduler.json")
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    start = time.perf_counter()
    job = subprocess.Popen(
        ["mpirun", "-np", str(np), sys.executable, "-m", "dask_mpi.cli", "--scheduler-file", sched,
         "--worker-class", "distributed.Worker", "--no-dashboard", "--nthreads", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not os.path.exists(sched):
            if time.perf_counter() - start > 60:
                raise SystemExit("dask-mpi wrote no scheduler file in 60 s")
            time.sleep(0.01)
        client = Client(scheduler_file=sched, timeout=60)
        result = client.submit(lambda x: x + 1, 41).result(timeout=60)
        elapsed = time.perf_counter() - start
        assert result == 42
        print(f"{elapsed:.3f}")
        try:
            client.shutdown()
        except Exception:
            pass
    finally:
        try:
            os.killpg(job.pid, 9)
        except ProcessLookupError:
            pass
        job.wait(timeout=30)


if __name__ == "__main__":
    main()
