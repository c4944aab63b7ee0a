"""Batch scripts under a real mpirun: `shoal.mpi.initialize()` turns the job into a
cluster; rank 1 runs the script as the client; mpirun's exit status is the script's."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (scripts/setup installs Open MPI)")

ENV = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
if os.geteuid() == 0:
    ENV.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run_script(tmp_path, body: str, np: int = 4, timeout: float = 120):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    proc = subprocess.Popen(["mpirun", "-np", str(np), sys.executable, str(script)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun hung:\n{out}")
    return proc.returncode, out


def test_script_computes_through_the_jobs_cluster(tmp_path):
    code, out = run_script(tmp_path, """
        import shoal.mpi
        shoal.mpi.initialize(nthreads=1)
        import shoal
        client = shoal.Client()
        assert len(client.scheduler_info()["workers"]) == 2
        print("result", sum(client.gather(client.map(lambda x: x * x, range(100)))))
    """)
    assert code == 0, out
    assert "result 328350" in out
    assert out.count("result") == 1, "only the client rank runs the script"


def test_script_that_raises_ends_every_rank_with_its_status(tmp_path):
    code, out = run_script(tmp_path, """
        import shoal.mpi
        shoal.mpi.initialize(nthreads=1)
        raise ValueError("the user's script failed")
    """)
    assert code != 0
    assert "ValueError: the user's script failed" in out


def test_execute_runs_a_function_as_the_client(tmp_path):
    code, out = run_script(tmp_path, """
        import shoal, shoal.mpi
        def main():
            return shoal.Client().submit(sum, [1, 2, 3]).result()
        print("got", shoal.mpi.execute(main))
    """, np=3)
    assert code == 0, out
    assert "got 6" in out


def test_too_small_world_is_explained(tmp_path):
    code, out = run_script(tmp_path, """
        import shoal.mpi
        shoal.mpi.initialize()
    """, np=2)
    assert code != 0
    assert "needs at least 3 ranks" in out


def test_tasks_use_the_cluster_and_primitives_under_mpi(tmp_path):
    # Workers of an MPI job: get_client() inside tasks connects with the worker's own
    # secret, worker_client() does not deadlock 1-thread ranks, a Lock excludes across
    # ranks, and data moves between ranks over MPI.
    code, out = run_script(tmp_path, """
        import shoal.mpi
        shoal.mpi.initialize(nthreads=1)
        import shoal

        def fib(n):
            if n < 2:
                return n
            with shoal.worker_client() as c:
                return sum(c.gather([c.submit(fib, n - 1), c.submit(fib, n - 2)]))

        def bump(name):
            with shoal.Lock(name):
                v = shoal.Variable(name)
                v.set(v.get() + 1)
            return shoal.get_worker().name

        client = shoal.Client()
        print("fib", client.submit(fib, 7).result(timeout=90))
        shoal.Variable("n").set(0)
        names = client.gather(client.map(bump, ["n"] * 10, pure=False))
        print("count", shoal.Variable("n").get(), "ranks", len(set(names)))
    """)
    assert code == 0, out
    assert "fib 13" in out
    assert "count 10 ranks" in out
