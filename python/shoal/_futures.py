"""Futures, and the helpers that wait on many of them."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import NamedTuple

from ._native import KeyState

__all__ = ["Future", "as_completed", "wait", "fire_and_forget", "futures_of", "KilledWorker", "CancelledError", "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"


def _in_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop right now."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class CancelledError(Exception):
    """The key was cancelled."""


class KilledWorker(Exception):
    """A task was running on workers that died more often than the scheduler allows
    (``allowed_failures``, 3): it is probably what kills them."""


class Future:
    """A remote result. The cluster keeps the data while any Future for its key lives."""

    __slots__ = ("key", "client", "_state", "__weakref__")

    def __init__(self, key: str, client, state: KeyState | None = None):
        self.key = key
        self.client = client
        self._state = client._retain(key) if state is None else state

    def __del__(self):
        try:
            self.client._drop(self.key)
        except Exception:  # noqa: BLE001 - interpreter shutdown, closed client
            pass

    def __repr__(self):
        return f"<shoal.Future: {self.status}, key: {self.key}>"

    def __reduce__(self):
        raise TypeError("a shoal Future cannot be pickled; pass it as an argument to submit() instead")

    @property
    def status(self) -> str:
        return self._state.status

    def done(self) -> bool:
        """Whether the key finished, failed or was cancelled."""
        return self._state.done

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    def result(self, timeout: float | None = None):
        """The value (fetched from the worker holding it); re-raises a task's exception.
        In an asynchronous client's event loop: an awaitable of it."""
        if self.client.asynchronous and _in_event_loop():
            return self._async_result(timeout)
        return self._result(timeout)

    def __await__(self):
        return self._async_result(None).__await__()

    async def _async_result(self, timeout):
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake(_f):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        self.add_done_callback(wake)
        await asyncio.wait_for(done, timeout)
        return await loop.run_in_executor(None, self._result, 0)

    def retry(self) -> None:
        """Compute this failed future again."""
        self.client.retry([self])

    def _result(self, timeout: float | None = None):
        self.client._wait_done([self._state], timeout, self.key)
        self.client._raise_if_failed(self.key, self._state)
        return self.client._fetch([self.key])[0]

    def exception(self, timeout: float | None = None):
        """The exception of a failed task, else None."""
        self.client._wait_done([self._state], timeout, self.key)
        if self._state.status == ERROR:
            return self.client._exception(self.key, self._state)
        if self._state.status in (CANCELLED, LOST):
            return self.client._exception(self.key, self._state)
        return None

    def traceback(self, timeout: float | None = None):
        self.client._wait_done([self._state], timeout, self.key)
        err = self._state.error
        return err[3] if err else None

    def cancel(self) -> None:
        """Stop computing this key; waiters get ``CancelledError``."""
        self.client.cancel([self])

    def release(self) -> None:
        """Drop this future's hold on the data now (also happens when it is collected)."""
        self.client._drop(self.key)
        self._state = KeyState()
        self._state.set(CANCELLED)

    def add_done_callback(self, fn) -> None:
        """Call ``fn(future)`` once the key is done (at once if it already is); callbacks
        run in the client's update thread."""
        self.client._add_callback(self, fn)


class as_completed:
    """Iterate over futures in the order they finish, as distributed's ``as_completed``:
    ``for f in as_completed(futures)``; more can be ``add``ed while iterating;
    ``with_results=True`` yields ``(future, result)`` (with ``raise_errors=False`` the
    exception in place of the result of a failed future); ``batches()`` yields lists of
    every future finished since the last batch."""

    def __init__(self, futures=None, loop=None, with_results: bool = False, raise_errors: bool = True, *,
                 timeout: float | None = None):
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._cond = threading.Condition()
        self._done: list = []
        self._pending: dict = {}  # id(future) -> future, until it is done
        if futures is not None:
            self.update(futures)

    def _on_done(self, future) -> None:
        with self._cond:
            if self._pending.pop(id(future), None) is not None:
                self._done.append(future)
                self._cond.notify_all()

    def add(self, future) -> None:
        """Also yield this future when it is done."""
        with self._cond:
            self._pending[id(future)] = future
        future.add_done_callback(lambda _f, f=future: self._on_done(f))

    def update(self, futures) -> None:
        for f in futures:
            self.add(f)

    def count(self) -> int:
        """Futures not yet yielded."""
        with self._cond:
            return len(self._pending) + len(self._done)

    __len__ = count

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        with self._cond:
            return bool(self._done)

    def clear(self) -> None:
        with self._cond:
            self._pending.clear()
            self._done.clear()

    def _item(self, f):
        if not self.with_results:
            return f
        if f.status == FINISHED:
            return f, f.result()
        exc = f.exception()
        if self.raise_errors:
            raise exc
        return f, exc

    def _take(self, block: bool, all_ready: bool) -> list:
        with self._cond:
            while not self._done:
                if not self._pending:
                    raise StopIteration
                if not block:
                    return []
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"as_completed: {len(self._pending)} futures not done within {self._timeout} s")
                self._cond.wait(left if left is None or left < 1 else 1)
            if all_ready:
                out, self._done = self._done, []
            else:
                out = [self._done.pop(0)]
        return out

    def __iter__(self):
        return self

    def __next__(self):
        return self._item(self._take(True, False)[0])

    def next_batch(self, block: bool = True) -> list:
        """Every future done by now (waiting for at least one if ``block``)."""
        try:
            return [self._item(f) for f in self._take(block, True)]
        except StopIteration:
            return []

    def batches(self):
        """Yield lists of the futures finished since the last list."""
        while True:
            try:
                batch = self._take(True, True)
            except StopIteration:
                return
            yield [self._item(f) for f in batch]


class DoneAndNotDone(NamedTuple):
    done: set
    not_done: set


def wait(futures, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDone:
    """Wait for futures like ``concurrent.futures.wait``."""
    futures = list(futures)
    if not futures:
        return DoneAndNotDone(set(), set())
    client = futures[0].client

    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"wait(return_when={return_when!r}): use ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION")
    what = f"wait({len(futures)} futures, return_when={return_when})"
    if return_when == ALL_COMPLETED:
        if not client._native.wait_all([f._state for f in futures], timeout):
            raise TimeoutError(f"{what} not done within {timeout} s")
    else:
        pending, errored = futures, False

        def ready():
            # Checked at every change of any key: only the futures not seen done yet.
            nonlocal pending, errored
            still = []
            for f in pending:
                if not f.done():
                    still.append(f)
                elif f._state.status == ERROR:
                    errored = True
            pending = still
            if not pending:
                return True
            return errored if return_when == FIRST_EXCEPTION else len(pending) < len(futures)

        client._wait_until(ready, timeout, what)
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, set(futures) - done)


def futures_of(obj) -> list:
    """Every Future inside ``obj``: nested lists, tuples, sets and dicts, and Dask
    collections (persisted ones hold futures in their graphs)."""
    out: list = []
    seen: set = set()
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, Future):
            if x.key not in seen:
                seen.add(x.key)
                out.append(x)
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif hasattr(x, "__dask_graph__"):
            graph = x.__dask_graph__() or {}
            for v in graph.values():
                stack.append(getattr(v, "value", v))
    return out[::-1]


def fire_and_forget(futures) -> None:
    """Run these futures' tasks even after every Future object is gone."""
    if isinstance(futures, Future):
        futures = [futures]
    futures = list(futures)
    if futures:
        futures[0].client._forget_on_completion(futures)
