"""A Dask collection on a running shoal cluster, found through its scheduler file.

    python examples/dask_transpose_sum.py SCHEDULER_FILE [N]

Computes ``(x + x.T).sum()`` of an N x N dask.array (default 4000, int64, chunks of
1000 x 1000). The transpose makes every worker fetch chunks held by the others, so inside
``shoal mpi`` the chunks travel between ranks over MPI. The result is known exactly,
N^2 (N^2 - 1), and checked; the script exits non-zero if it is wrong.
"""

import sys
import time

import dask
import dask.array as da

import shoal


def main() -> int:
    scheduler_file = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    client = shoal.Client(scheduler_file=scheduler_file)
    x = da.arange(n * n, dtype="int64", chunks=1_000_000).reshape(n, n).rechunk((1000, 1000))
    start = time.perf_counter()
    (total,) = dask.compute((x + x.T).sum(), scheduler=client)
    seconds = time.perf_counter() - start
    expected = n * n * (n * n - 1)
    chunks = x.numblocks[0] * x.numblocks[1]
    print(f"(x + x.T).sum() of {n} x {n} int64 in {chunks} chunks = {total} in {seconds:.2f} s")
    if int(total) != expected:
        print(f"check: expected {expected}, got {total}: WRONG")
        return 1
    print(f"check: (x + x.T).sum() = {total} (expected {expected}) OK")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
