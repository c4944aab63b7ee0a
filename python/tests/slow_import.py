"""A module whose import takes a while and lets other threads run meanwhile, as importing
a large package does (``test_worker_threads`` has a worker import it on two threads)."""

import time

time.sleep(1.0)


def double(x):
    return 2 * x
