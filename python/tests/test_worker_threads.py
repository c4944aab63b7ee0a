"""A worker's threads decoding tasks at once (its Python side, ``shoal._worker``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

# Run in a fresh interpreter: dask.dataframe must not be imported yet, as in a worker that
# just started.
_DECODE_AT_ONCE = textwrap.dedent("""
    import threading
    from shoal import _worker

    names = [
        ("dask.dataframe.dask_expr._expr", "ToBackend"),
        ("dask.dataframe.core", "_concat"),
        ("dask.dataframe.dask_expr._collection", "DataFrame"),
        ("dask.dataframe.methods", "concat"),
        ("dask.dataframe.utils", "make_meta"),
    ]
    failures = []

    def decode(module, name):
        # (DATA, module.name) pickled by hand: decoding it imports the module.
        ok, value, _ = _worker.execute(f"(I{_worker.DATA}\\nc{module}\\n{name}\\ntp0\\n.".encode(), [])
        if not ok:
            failures.append(value[1])

    threads = [threading.Thread(target=decode, args=n) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\\n".join(failures) or "all decoded")
""")


def test_threads_decoding_dataframe_tasks_at_once_in_a_fresh_worker_all_succeed():
    # A worker of several threads gets its first dataframe tasks at once. Decoding them
    # imports dask.dataframe, whose modules import one another; two threads importing
    # them together could each get the other's module half initialised and fail with
    # "cannot import name ... from partially initialized module" (seen in dask's
    # test_indexing on workers of 4 threads). Tasks are decoded one at a time.
    out = subprocess.run([sys.executable, "-c", _DECODE_AT_ONCE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "all decoded", out.stdout


def test_two_threads_loading_one_function_whose_import_is_slow_both_finish(tmp_path):
    # A worker of 2 threads gets two compact calls of a function it has not decoded yet.
    # Decoding it imports its module, which lets the other thread run meanwhile. Both
    # threads decode at once; neither may wait for the other while holding what the other
    # needs (the interpreter's lock on one side, the worker's cache of functions on the
    # other): that hung the worker for good.
    import shoal
    from conftest import local_cluster

    import slow_import

    with local_cluster(tmp_path, "--workers", "1", "--nthreads", "2", "--memory-limit", "0") as scheduler_file:
        with shoal.Client(scheduler_file=scheduler_file, timeout=10) as c:
            c.wait_for_workers(1, timeout=30)
            first = c.submit(slow_import.double, 1)
            time.sleep(0.3)  # the first thread is importing the module now
            second = c.submit(slow_import.double, 2)
            assert [f.result(timeout=20) for f in (first, second)] == [2, 4]
