"""A worker's threads decoding tasks at once (its Python side, ``shoal._worker``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
