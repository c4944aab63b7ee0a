"""Dask collections on shoal: graphs are normalised and ordered here, on the client, and
every node travels as an opaque Python task. Dask is imported only when used."""

from __future__ import annotations

import importlib.util
import pickle
import sys

from ._worker import CALL, DASK, Dep
from .client import _PLAIN, _pickle

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


def wire_key(key) -> str:
    """A dask key as a string for the wire (strings stay as they are)."""
    return key if type(key) is str else repr(key)


def _graph(dsk) -> dict:
    """The graph of a collection or expression, or ``dsk`` itself, as a plain dict."""
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    return dsk if type(dsk) is dict else dict(dsk)


#: Types a legacy graph's keys can have: an argument of these types may name a key.
_KEY_TYPES = frozenset({str, bytes, int, float, tuple})


def _flat_call(task: tuple, graph: dict):
    """``(args with Dep markers, input keys or None)`` of a legacy task ``(f, *args)``
    whose arguments are values, keys, or lists of keys (most of what ``client.get`` is
    given); None when dask's own conversion must decide (nested tasks, keys inside other
    containers), so the semantics stay dask's."""
    deps: list = []
    index: dict = {}

    def dep(key) -> Dep:
        j = index.get(key)
        if j is None:
            j = index[key] = len(deps)
            deps.append(key)
        return Dep(j)

    args = list(task[1:])
    for i, a in enumerate(args):
        t = type(a)
        if t in _KEY_TYPES:
            try:
                is_key = a in graph
            except TypeError:  # a tuple holding something unhashable
                return None
            if is_key:
                args[i] = dep(a)
            elif t is tuple:
                return None  # a nested task, or a tuple that may hold keys
        elif t is list:
            if not a:
                continue
            try:
                all_keys = all(type(x) in _KEY_TYPES and x in graph for x in a)
            except TypeError:
                return None
            if not all_keys:
                return None
            args[i] = [dep(x) for x in a]
        elif t is dict or t is set or t is frozenset:
            return None
        # any other object is a value
    return args, deps or None


def submit_graph(client, dsk, keys: list):
    """Submit a dask graph in one message; returns futures for the flat list ``keys``
    (see :func:`_submit_graph`)."""
    from .client import gc_paused

    _apply_pending()
    with gc_paused():
        return _submit_graph(client, dsk, keys)


def _submit_graph(client, dsk, keys: list):
    """Legacy tuple tasks with plain arguments become calls (as ``client.submit`` makes);
    every other node travels as a dask task node. Priorities come from the depth-first
    order of the graph from ``keys``, computed in Rust (``dask.order`` costs 25-40 µs per
    task in Python)."""
    from dask._task_spec import DataNode, GraphNode, convert_legacy_task

    from ._futures import Future
    from .client import pickle_with_futures

    graph = _graph(dsk)
    held = {}  # keys the cluster holds already (persisted collections): not submitted again
    tasks = []
    function_bytes, function_head, dumps = client._function_bytes, client._function_head, pickle.dumps
    for k, node in graph.items():
        if type(node) is tuple and node and callable(node[0]):
            call = _flat_call(node, graph)
            if call is not None:
                args, deps = call
                fn = node[0]
                if deps is None and all(type(a) in _PLAIN for a in args):
                    # As map() sends calls: the function once per worker, the arguments alone.
                    payload = function_head(fn)[0] + dumps(tuple(args), 5)
                    tasks.append((wire_key(k), [], payload, 0, 0, [], []))
                    continue
                fn_bytes = function_bytes(fn)
                payload = _pickle((CALL, fn_bytes, tuple(args), {}, deps is not None), fn_bytes)
                tasks.append((wire_key(k), [wire_key(d) for d in deps or ()], payload, 0, 0, [], []))
                continue
        if not isinstance(node, GraphNode):
            node = convert_legacy_task(k, node, graph)
            if not isinstance(node, GraphNode):  # a plain value
                node = DataNode(k, node)
        if isinstance(node, DataNode) and isinstance(node.value, Future):
            held[k] = node.value
            continue
        deps = list(node.dependencies)
        payload, refs = pickle_with_futures((DASK, node, deps), len(deps))
        tasks.append((wire_key(k), [wire_key(d) for d in deps] + refs, payload, 0, 0, [], []))
    if held:
        alias = {wire_key(k): f.key for k, f in held.items()}
        for t in tasks:
            t[1][:] = [alias.get(d, d) for d in t[1]]
        wants = [alias.get(wire_key(k)) or wire_key(k) for k in keys]
    else:
        wants = [wire_key(k) for k in keys]
    return client._submit(tasks, wants, order=True), list(held.values())


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
