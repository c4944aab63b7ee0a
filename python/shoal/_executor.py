"""``client.get_executor()``: the cluster as a ``concurrent.futures.Executor``."""

from __future__ import annotations

import concurrent.futures as cf
import threading

__all__ = ["ClientExecutor"]


class ClientExecutor(cf.Executor):
    """Runs calls as cluster tasks; returns ``concurrent.futures.Future`` objects, so
    code written for thread or process pools runs unchanged."""

    def __init__(self, client, **submit_kwargs):
        self._client = client
        self._kwargs = dict(submit_kwargs)
        self._kwargs.setdefault("pure", False)
        self._lock = threading.Lock()
        self._pending: set = set()
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor that was shut down")
        remote = self._client.submit(fn, *args, **self._kwargs, **kwargs)
        local: cf.Future = cf.Future()
        local.set_running_or_notify_cancel()
        with self._lock:
            self._pending.add(remote)

        def done(f):
            with self._lock:
                self._pending.discard(remote)
            try:
                if f.status == "finished":
                    local.set_result(f.result())
                else:
                    local.set_exception(f.exception())
            except BaseException as e:  # noqa: BLE001 - the fetch itself failed
                local.set_exception(e)

        # Results are fetched outside the client's update thread.
        remote.add_done_callback(lambda f: threading.Thread(target=done, args=(f,), daemon=True).start())
        return local

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures and pending:
            self._client.cancel(pending)
        elif wait and pending:
            from ._futures import wait as wait_all

            wait_all(pending)
