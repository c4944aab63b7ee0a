"""Time from `mpirun -np N` of a runtime's MPI launcher to the first task result of a Python
client that starts together with the job, as a user's script would: it waits for the
scheduler file, connects, submits one task and waits for its result. Used by the `mpi` and
`python` sections of scripts/bench.

    python mpi_first_result.py {shoal,dask-mpi} NP WORKDIR

shoal: `mpirun -np N python -m shoal mpi --nthreads 1` and `shoal.Client`;
dask-mpi: `mpirun -np N python -m dask_mpi.cli --nthreads 1` and `distributed.Client`.
The client's own imports happen before the clock starts, for both. Prints one JSON line:
{"file_s": when the scheduler file appeared, "first_result_s": when the result arrived}.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time


def launch(runtime, np, sched):
    if runtime == "shoal":
        from shoal import Client

        cmd = [sys.executable, "-m", "shoal", "-q", "mpi", "--nthreads", "1", "--scheduler-file", sched]
    elif runtime == "dask-mpi":
        from distributed import Client

        cmd = [sys.executable, "-m", "dask_mpi.cli", "--scheduler-file", sched,
               "--worker-class", "distributed.Worker", "--no-dashboard", "--nthreads", "1"]
    else:
        raise SystemExit(f"unknown runtime {runtime!r} (use shoal or dask-mpi)")
    return Client, ["mpirun", "-np", str(np)] + cmd


def main():
    runtime, np, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sched = os.path.join(workdir, f"{runtime}-scheduler.json")
    client_class, cmd = launch(runtime, np, sched)
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    start = time.perf_counter()
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        while not os.path.exists(sched):
            if time.perf_counter() - start > 60:
                raise SystemExit(f"{runtime} wrote no scheduler file in 60 s")
            if job.poll() is not None:
                raise SystemExit(f"{runtime} under mpirun exited with status {job.returncode} before "
                                 "writing the scheduler file")
            time.sleep(0.01)
        file_s = time.perf_counter() - start
        client = client_class(scheduler_file=sched, timeout=60)
        result = client.submit(lambda x: x + 1, 41).result(timeout=60)
        elapsed = time.perf_counter() - start
        assert result == 42, result
        print(json.dumps({"file_s": round(file_s, 4), "first_result_s": round(elapsed, 4)}))
        with contextlib.suppress(Exception):  # the job is killed next anyway
            client.shutdown()
    finally:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job.wait(timeout=30)


if __name__ == "__main__":
    main()
