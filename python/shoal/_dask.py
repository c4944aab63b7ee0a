"""Dask collections on shoal: graphs are normalised and ordered here, on the client, and
every node travels as an opaque Python task. Dask is imported only when used."""

from __future__ import annotations

import importlib.util
import sys

from . import _native
from ._worker import CALL, DASK
from .client import _pickle

_TASK_BASED = {"dataframe.shuffle.method": "tasks", "array.rechunk.method": "tasks"}
_UNSET = object()


class _Settings:
    """Task-based shuffles for one client: the settings dask had before (once made)."""

    __slots__ = ("previous",)

    def __init__(self):
        self.previous = None


#: Clients' settings waiting for dask to be imported (see :class:`_WhenDaskLoads`).
_pending: list[_Settings] = []


def plan_task_based_shuffles() -> _Settings:
    """Make dask plan shuffles and rechunks as plain tasks (distributed's p2p extension
    cannot run here); returns what :func:`restore` undoes. Dask is not imported for this
    (a tenth of a second of a client's start): if it is not loaded yet, the settings are
    made the moment it is, before the importer sees the module."""
    settings = _Settings()
    if "dask" in sys.modules:
        _apply(settings)
    else:
        _pending.append(settings)
        _WhenDaskLoads.install()
    return settings


def _apply(settings: _Settings) -> None:
    import dask.config

    settings.previous = {k: dask.config.get(k, default=_UNSET) for k in _TASK_BASED}
    dask.config.set(_TASK_BASED)


def _apply_pending() -> None:
    while _pending:
        _apply(_pending.pop(0))


class _WhenDaskLoads:
    """On ``sys.meta_path`` while settings wait: finds ``dask`` through the other finders
    and makes the waiting settings right after the package's own code ran."""

    @classmethod
    def install(cls) -> None:
        if cls not in sys.meta_path:
            sys.meta_path.insert(0, cls)  # type: ignore[arg-type]

    @classmethod
    def uninstall(cls) -> None:
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)  # type: ignore[arg-type]

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "dask":
            return None
        cls.uninstall()
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec  # the settings are made at the first graph (``submit_graph``)
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _apply_pending()

        loader.exec_module = exec_module
        return spec


def restore(settings: _Settings | None) -> None:
    if settings is None:
        return
    if settings.previous is None:
        if settings in _pending:
            _pending.remove(settings)
        if not _pending:
            _WhenDaskLoads.uninstall()
        return
    import dask

    for key, value in settings.previous.items():
        if value is _UNSET:
            _delete(dask.config.config, key.split("."))
        else:
            dask.config.set({key: value})


def _delete(config: dict, path: list) -> None:
    for part in path[:-1]:
        config = config.get(part)
        if not isinstance(config, dict):
            return
    config.pop(path[-1], None)


#: A dask key as a string for the wire: strings as they are, anything else by its repr.
wire_key = _native.wire_key


def _graph(dsk) -> dict:
    """The graph of a collection or expression, or ``dsk`` itself, as a plain dict."""
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    return dsk if type(dsk) is dict else dict(dsk)


def submit_graph(client, dsk, keys: list):
    """Submit a dask graph in one message; returns futures for the flat list ``keys``
    (see :func:`_submit_graph`)."""
    from .client import gc_paused

    _apply_pending()
    with gc_paused():
        return _submit_graph(client, dsk, keys)


def _submit_graph(client, dsk, keys: list):
    """Legacy tuple tasks with plain arguments become calls (as ``client.submit`` makes),
    converted natively (``python/src/legacy.rs``); every other node travels as a dask
    task node. Priorities come from the depth-first order of the graph from ``keys``,
    computed in Rust (``dask.order`` costs 25-40 µs per task in Python)."""
    from dask._task_spec import DataNode, GraphNode, convert_legacy_task

    from ._futures import Future
    from .client import pickle_with_futures

    graph = _graph(dsk)
    held = []  # futures of results the cluster holds already (persisted collections)
    function_bytes = client._function_bytes

    def head(fn) -> bytes:
        return client._function_head(fn)[0]

    def call(fn, args: tuple, has_inputs: bool) -> bytes:
        fn_bytes = function_bytes(fn)
        return _pickle((CALL, fn_bytes, args, {}, has_inputs), fn_bytes)

    def other(k, node):
        if not isinstance(node, GraphNode):
            node = convert_legacy_task(k, node, graph)
            if not isinstance(node, GraphNode):  # a plain value
                node = DataNode(k, node)
        if isinstance(node, DataNode) and isinstance(node.value, Future):
            held.append(node.value)
            return node.value.key
        deps = list(node.dependencies)
        payload, refs = pickle_with_futures((DASK, node, deps), len(deps))
        return [wire_key(d) for d in deps] + refs, payload

    client._check_open()
    wants, states = client._native.submit_graph(graph, keys, head=head, call=call, other=other)
    return [Future(k, client, st) for k, st in zip(wants, states)], held


def _flatten(keys) -> list:
    out = []
    for k in keys:
        if isinstance(k, list):
            out.extend(_flatten(k))
        else:
            out.append(k)
    return out


def _nest(keys, values: dict):
    return [_nest(k, values) if isinstance(k, list) else values[k] for k in keys]


def get(client, dsk, keys, **kwargs):
    """Compute ``keys`` of a graph or expression; the result mirrors the nesting of ``keys``."""
    single = not isinstance(keys, list)
    flat = _flatten([keys] if single else keys)
    futures, _held = submit_graph(client, dsk, flat)
    values = client.gather(futures)
    result = _nest([keys] if single else keys, dict(zip(flat, values)))
    return result[0] if single else result


def compute_futures(client, collections, optimize_graph: bool = True, **kwargs):
    """One future per collection for its final (finalized) value, as ``dask.compute``
    would return it."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    out = []
    for c in collections:
        expr = FinalizeCompute(collections_to_expr([c], optimize_graph)).optimize()
        keys = _flatten(expr.__dask_keys__())
        if len(keys) != 1:
            raise TypeError(f"cannot compute {type(c).__name__} to one future: it has {len(keys)} outputs")
        futures, _ = submit_graph(client, expr, keys)
        out.append(futures[0])
    return out


def persist(client, collections, optimize_graph: bool = True, **kwargs):
    """Collections whose graphs point at results held by the cluster."""
    out = []
    from dask.base import collections_to_expr

    for c in collections:
        expr = collections_to_expr([c], optimize_graph).optimize()
        keys = _flatten(expr.__dask_keys__())
        futures, _ = submit_graph(client, expr, keys)
        rebuild, state = c.__dask_postpersist__()
        out.append(rebuild(dict(zip(keys, futures)), *state))
    return out
