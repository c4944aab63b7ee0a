"""``shoal.jobqueue``: shoal clusters whose workers are batch jobs.

``SLURMCluster``, ``PBSCluster``, ``TorqueCluster``, ``SGECluster``, ``LSFCluster`` and
``HTCondorCluster`` take dask-jobqueue's parameter names (``cores``, ``memory``,
``processes``, ``queue``, ``account``, ``walltime``, ``job_extra_directives``, ...). They
run the same Rust code as ``shoal jobqueue`` (called with typed arguments through
``shoal._native``): the parameters are validated there, the scripts rendered there, and
the jobs kept in the same state file, so ``shoal jobqueue status --scheduler-file F``
works on a cluster made here too.

A cluster starts a scheduler (``python -m shoal scheduler``, a subprocess stopped by pid
on ``close()`` and at exit) that writes its scheduler file into a private (0700)
directory on a shared file system (``shared_directory``, ``$SHOAL_JOBQUEUE_DIR`` or
``~/.shoal/jobqueue``). Worker jobs run ``python -m shoal worker`` with this interpreter,
so they run Python tasks. ``shoal.Client(cluster)`` connects through the scheduler file.

``adapt(minimum_jobs=, maximum_jobs=)`` runs a background thread that sizes the cluster to
the scheduler's runnable tasks, and submits a replacement for every job whose workers
are about to reach their lifetime (set from the walltime by the Rust crate), so a long
computation keeps its workers across walltimes.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from typing import IO, Any

from . import _native

__all__ = [
    "HTCondorCluster",
    "JobQueueCluster",
    "LSFCluster",
    "PBSCluster",
    "SGECluster",
    "SLURMCluster",
    "TorqueCluster",
]

# List-valued parameters: each element is its own `(key, element)` pair (`--param key=element`).
_LIST_KEYS = frozenset(
    {
        "job_extra_directives",
        "job_directives_skip",
        "job_script_prologue",
        "job_script_epilogue",
        "worker_extra_args",
        "job_extra",
        "env_extra",
        "header_skip",
        "extra",
    }
)
_INTERPRETER = re.compile(r"^python[0-9.]*$")
_STOP_TIMEOUT = 10.0

_open_clusters: "weakref.WeakSet[JobQueueCluster]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for cluster in list(_open_clusters):
        try:
            cluster.close()
        except Exception as e:  # noqa: BLE001 - at exit: report, keep closing the others
            print(f"shoal.jobqueue: closing {cluster!r} at exit failed: {e}", file=sys.stderr)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _param_pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, value)`` pairs as ``--param key=value`` takes them; lists become one pair
    per element, an empty list clears the key."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if key in _LIST_KEYS or isinstance(value, (list, tuple)):
            values = [value] if isinstance(value, str) else list(value)
            if not values:
                out.append((key, ""))
            out.extend((key, _text(v)) for v in values)
        else:
            out.append((key, _text(value)))
    return out


def _worker_command(params: dict[str, Any]) -> list[str]:
    """How job scripts start shoal. dask-jobqueue's ``python`` is an interpreter path
    (``/opt/env/bin/python``, or ``srun -n 1 python3``): when its last word is a Python
    interpreter it replaces this interpreter; any other value stays a command prefix."""
    python = params.get("python")
    if python:
        words = shlex.split(str(python))
        if words and _INTERPRETER.match(os.path.basename(words[-1])):
            del params["python"]
            return [*words, "-m", "shoal"]
    return [sys.executable, "-m", "shoal"]


class JobQueueCluster:
    """A shoal cluster whose workers are batch jobs; use a subclass per system.

    Parameters are dask-jobqueue's (``cores`` and ``memory`` per job are required;
    ``processes`` worker processes per job); unknown names and bad values raise
    ``ValueError`` naming the value and the accepted forms, before anything starts.

    shoal's own keywords:

    - ``scheduler_file``: use this scheduler file. If it exists, the scheduler that
      wrote it is used (e.g. one submitted with ``shoal jobqueue submit --scheduler``);
      otherwise a scheduler is started writing it.
    - ``shared_directory``: where the private directory for the scheduler file, the
      job state and the job scripts is made (default ``$SHOAL_JOBQUEUE_DIR`` or
      ``~/.shoal/jobqueue``); compute nodes must see it.
    - ``scheduler_options``: ``{"host": ..., "interface": ..., "port": ...}`` for the
      scheduler (``interface`` defaults to the workers' ``interface``).
    - ``config_file``: per-system defaults (default ``~/.config/shoal/jobqueue.toml``).
    - ``n_workers``: workers to start at once (``scale(n_workers)``).
    - ``start_timeout``: seconds to wait for the scheduler to write its file.
    """

    system: str = ""
    scheduler_file: str

    def __init__(
        self,
        cores: int | str | None = None,
        memory: int | str | None = None,
        processes: int | str | None = None,
        *,
        scheduler_file: str | os.PathLike[str] | None = None,
        shared_directory: str | os.PathLike[str] | None = None,
        scheduler_options: dict[str, Any] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        n_workers: int = 0,
        start_timeout: float = 30.0,
        **params: Any,
    ) -> None:
        if not self.system:
            raise TypeError("JobQueueCluster is abstract: use SLURMCluster, PBSCluster, SGECluster, LSFCluster or HTCondorCluster")
        self._closed = True
        self._lock = threading.RLock()
        self._adaptive: _Adaptive | None = None
        self._scheduler_proc: subprocess.Popen[bytes] | None = None
        self._scheduler_log: IO[bytes] | None = None
        self._status_client: Any = None
        self._private_dir: str | None = None
        params = {"cores": cores, "memory": memory, "processes": processes, **params}
        self._worker_cmd = _worker_command(params)
        self._params = {k: v for k, v in params.items() if v is not None}
        self._config = None if config_file is None else os.fspath(config_file)
        # Validate before anything is made or started.
        self._figures = self._validate()
        for w in self._figures.get("warnings", []):
            warnings.warn(w, FutureWarning if "deprecated" in w else UserWarning, stacklevel=2)

        if scheduler_file is not None and os.path.exists(scheduler_file):
            self._owns_scheduler = False
            self.scheduler_file = os.path.abspath(os.fspath(scheduler_file))
        else:
            self._owns_scheduler = True
            if scheduler_file is None:
                base = shared_directory or os.environ.get("SHOAL_JOBQUEUE_DIR") or os.path.join(os.path.expanduser("~"), ".shoal", "jobqueue")
                base = os.path.abspath(os.fspath(base))
                os.makedirs(base, mode=0o700, exist_ok=True)
                self._private_dir = tempfile.mkdtemp(prefix=f"{self.system}-", dir=base)  # 0700
                scheduler_file = os.path.join(self._private_dir, "scheduler.json")
            self.scheduler_file = os.path.abspath(os.fspath(scheduler_file))
            options = dict(scheduler_options or {})
            if "interface" not in options and "host" not in options and self._params.get("interface"):
                options["interface"] = self._params["interface"]
            try:
                self._start_scheduler(options, start_timeout)
            except BaseException:
                self._stop_scheduler()
                self._remove_private_dir()
                raise
        self._closed = False
        _open_clusters.add(self)
        if n_workers:
            self.scale(n_workers)

    # ----- the CLI's code -----

    def _job(self) -> dict[str, Any]:
        """The job's arguments of `shoal jobqueue script` and `submit`."""
        return {"system": self.system, "params": _param_pairs(self._params), "config": self._config,
                "worker_command": self._worker_cmd}

    def _validate(self) -> dict[str, Any]:
        # The scheduler file does not change what is validated; the real one is not made yet.
        # Warnings are about the parameters: shown once, by the constructor.
        try:
            return _native.jobqueue_script(**self._job(), scheduler_file="/scheduler.json", json=True)
        except RuntimeError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    # ----- the scheduler -----

    def _start_scheduler(self, options: dict[str, Any], timeout: float) -> None:
        cmd = [sys.executable, "-m", "shoal", "scheduler", "--scheduler-file", self.scheduler_file]
        for key in ("host", "interface", "port"):
            if options.get(key) is not None:
                cmd += [f"--{key}", str(options[key])]
        unknown = set(options) - {"host", "interface", "port"}
        if unknown:
            raise ValueError(f"unknown scheduler_options {sorted(unknown)}; accepted: host, interface, port")
        log_path = os.path.join(os.path.dirname(self.scheduler_file), "scheduler.log")
        self._scheduler_log = open(log_path, "ab")
        self._scheduler_proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._scheduler_log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.scheduler_file):
            code = self._scheduler_proc.poll()
            if code is not None or time.monotonic() > deadline:
                with open(log_path, "rb") as f:
                    log = f.read().decode(errors="replace")[-4000:]
                what = f"exited with status {code}" if code is not None else f"did not write {self.scheduler_file} within {timeout:g} s (start_timeout)"
                raise RuntimeError(f"the scheduler ({shlex.join(cmd)}) {what}; its log ({log_path}):\n{log}")
            time.sleep(0.05)

    def _stop_scheduler(self) -> None:
        proc, self._scheduler_proc = self._scheduler_proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        if self._scheduler_log is not None:
            self._scheduler_log.close()
            self._scheduler_log = None

    def _remove_private_dir(self) -> None:
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    # ----- jobs -----

    @property
    def _state_file(self) -> str:
        return self.scheduler_file + ".jobs.json"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")

    def job_script(self) -> str:
        """The worker job's script (HTCondor: submit description and script), as it
        would be submitted."""
        script: str = _native.jobqueue_script(**self._job(), scheduler_file=self.scheduler_file)
        return script

    @property
    def processes(self) -> int:
        """Worker processes per job."""
        return int(self._figures["processes"])

    @property
    def worker_lifetime(self) -> tuple[int, int] | None:
        """``(lifetime, stagger)`` in seconds that workers leave after, or ``None``."""
        if self._figures.get("lifetime_s") is None:
            return None
        return int(self._figures["lifetime_s"]), int(self._figures["lifetime_stagger_s"] or 0)

    def _scale_jobs(self, jobs: int) -> None:
        if jobs < 0:
            raise ValueError(f"cannot scale to {jobs} jobs; give 0 or more")
        with self._lock:
            self._check_open()
            if not os.path.exists(self._state_file):
                if jobs:
                    _native.jobqueue_submit(**self._job(), scheduler_file=self.scheduler_file, jobs=jobs)
            else:
                _native.jobqueue_scale(scheduler_file=self.scheduler_file, jobs=jobs)

    def scale(self, n: int | None = None, jobs: int | None = None, memory: int | str | None = None,
              cores: int | None = None) -> None:
        """Submit or cancel worker jobs: ``scale(n)`` for ``n`` workers (``ceil(n /
        processes)`` jobs), ``scale(jobs=j)``, or ``scale(cores=c)`` / ``scale(memory=m)``.
        Waiting jobs are cancelled first, then the newest. Stops adaptive scaling."""
        given = [x is not None for x in (n, jobs, memory, cores)]
        if sum(given) != 1:
            raise ValueError("scale() takes one of: n (workers), jobs=, cores= or memory=, e.g. scale(4) or scale(jobs=2)")
        if jobs is None:
            if n is not None:
                jobs = math.ceil(int(n) / self.processes)
            elif cores is not None:
                jobs = math.ceil(int(cores) / int(self._figures["cores"]))
            else:
                assert memory is not None  # exactly one of the four is given
                jobs = math.ceil(_bytes(memory) / int(self._figures["memory"]))
        self._stop_adapt()
        self._scale_jobs(int(jobs))

    def jobs(self) -> dict[str, str]:
        """Worker jobs this cluster submitted that are not finished: id -> state
        (``pending``, ``running`` or the system's own word)."""
        return {j["id"]: j["state"] for j in self._worker_jobs() if j["state"] != "finished"}

    def _worker_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            if not os.path.exists(self._state_file):
                return []
            data = _native.jobqueue_status(scheduler_file=self.scheduler_file)
        return [j for j in data["jobs"] if j["role"] == "worker"]

    def _scheduler_status(self) -> dict[str, Any]:
        if self._status_client is None:
            self._status_client = _native.Client(None, self.scheduler_file, 10.0)
        try:
            status: dict[str, Any] = self._status_client.status()
            return status
        except Exception:
            self._status_client = None
            raise

    def scheduler_info(self) -> dict[str, Any]:
        """The scheduler's view: workers and task counts."""
        return self._scheduler_status()

    # ----- adaptivity -----

    def adapt(
        self,
        minimum_jobs: int = 0,
        maximum_jobs: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        interval: float = 1.0,
        wait_count: int = 3,
        replace_before: float | None = None,
    ) -> None:
        """Scale between ``minimum_jobs`` and ``maximum_jobs`` (or ``minimum`` /
        ``maximum`` workers) by the scheduler's runnable tasks, every ``interval``
        seconds; scale down only after ``wait_count`` decisions in a row. A running job
        whose workers leave within ``replace_before`` seconds (default: a quarter of the
        worker lifetime, 30 s to 5 min) gets a replacement; it may exceed
        ``maximum_jobs`` until the old job ends."""
        if minimum is not None:
            minimum_jobs = math.ceil(int(minimum) / self.processes)
        if maximum is not None:
            maximum_jobs = math.ceil(int(maximum) / self.processes)
        if maximum_jobs is None:
            raise ValueError("adapt() needs an upper bound: adapt(minimum_jobs=0, maximum_jobs=10) or adapt(maximum=40) workers")
        if not 0 <= minimum_jobs <= maximum_jobs:
            raise ValueError(f"adapt(minimum_jobs={minimum_jobs}, maximum_jobs={maximum_jobs}): need 0 <= minimum_jobs <= maximum_jobs")
        if interval <= 0 or wait_count < 1:
            raise ValueError(f"adapt(interval={interval}, wait_count={wait_count}): need interval > 0 and wait_count >= 1")
        self._check_open()
        self._stop_adapt()
        self._adaptive = _Adaptive(self, int(minimum_jobs), int(maximum_jobs), float(interval), int(wait_count), replace_before)
        self._adaptive.start()

    def _stop_adapt(self) -> None:
        adaptive, self._adaptive = self._adaptive, None
        if adaptive is not None:
            adaptive.stop()

    # ----- lifetime -----

    def close(self, timeout: float | None = None) -> None:
        """Stop adaptive scaling, cancel every job this cluster submitted, stop the
        scheduler it started and remove its private directory. Idempotent. If cancelling
        fails the directory is kept, so ``shoal jobqueue cancel`` can retry."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_clusters.discard(self)
        self._stop_adapt()
        error = None
        try:
            if os.path.exists(self._state_file):
                # A scheduler found running (its file given) is not ours: only the worker
                # jobs are cancelled, a scheduler job submitted for it stays.
                _native.jobqueue_cancel(scheduler_file=self.scheduler_file, all=self._owns_scheduler)
        except RuntimeError as e:
            error = e
        self._status_client = None
        self._stop_scheduler()
        if error is None:
            self._remove_private_dir()
        if error is not None:
            raise RuntimeError(f"cancelling the jobs of {self.scheduler_file} failed (retry with `shoal jobqueue cancel --all --scheduler-file {self.scheduler_file}`): {error}")

    def __enter__(self) -> JobQueueCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"scheduler_file={self.scheduler_file!r}"
        return f"<{type(self).__name__} cores={self._figures['cores']} processes={self.processes} {state}>"


def _bytes(memory: int | str) -> int:
    """Bytes of ``memory``: an int as given, a size by the grammar of the ``memory=``
    parameter (Rust's, ``_native.parse_memory``)."""
    if isinstance(memory, int):
        return memory
    return _native.parse_memory(str(memory))


class _Adaptive:
    """The adaptive loop: a daemon thread, stopped by ``stop()`` (bounded join)."""

    def __init__(self, cluster: JobQueueCluster, minimum: int, maximum: int, interval: float, wait_count: int,
                 replace_before: float | None):
        self.cluster = weakref.proxy(cluster)
        self.minimum, self.maximum = minimum, maximum
        self.interval, self.wait_count = interval, wait_count
        self.threads_per_job = max(1, int(cluster._figures["nthreads"]) * cluster.processes)
        lifetime = cluster.worker_lifetime
        # Seconds after a job starts running at which its first worker may leave.
        self.earliest_exit = None if lifetime is None else max(0, lifetime[0] - lifetime[1])
        if replace_before is None and self.earliest_exit is not None:
            replace_before = max(2 * interval, min(300.0, max(30.0, self.earliest_exit / 4)))
        self.replace_before = replace_before
        self.running_since: dict[str, float] = {}
        self.down = 0
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shoal-jobqueue-adapt", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except ReferenceError:
                return
            except Exception as e:  # noqa: BLE001 - keep adapting; report each new error once
                if self._stop.is_set():
                    return
                if str(e) != str(self.last_error):
                    warnings.warn(f"shoal.jobqueue adapt: {e}", RuntimeWarning, stacklevel=1)
                self.last_error = e
            self._stop.wait(self.interval)

    def target(self, status: dict) -> int:
        counts = dict(status.get("tasks", []))
        demand = sum(counts.get(s, 0) for s in ("ready", "queued", "running"))
        if demand == 0 and counts.get("waiting", 0):
            demand = 1
        return int(min(self.maximum, max(self.minimum, math.ceil(demand / self.threads_per_job))))

    def expiring(self, live: list[dict], now: float) -> list[str]:
        """Running jobs whose workers leave within ``replace_before`` seconds."""
        if self.earliest_exit is None or self.replace_before is None:
            return []
        return [
            j["id"]
            for j in live
            if j["state"] == "running" and now >= self.running_since[j["id"]] + self.earliest_exit - self.replace_before
        ]

    def tick(self) -> None:
        cluster = self.cluster
        status = cluster._scheduler_status()
        jobs = cluster._worker_jobs()
        now = time.time()
        live = [j for j in jobs if j["state"] != "finished"]
        ids = {j["id"] for j in live}
        for j in live:
            if j["state"] == "running":
                self.running_since.setdefault(j["id"], now)
        self.running_since = {k: v for k, v in self.running_since.items() if k in ids}
        want = self.target(status) + len(self.expiring(live, now))
        if want > len(live):
            self.down = 0
            if not self._stop.is_set():
                cluster._scale_jobs(want)
        elif want < len(live):
            self.down += 1
            if self.down >= self.wait_count and not self._stop.is_set():
                self.down = 0
                cluster._scale_jobs(want)
        else:
            self.down = 0


class SLURMCluster(JobQueueCluster):
    """Workers as SLURM jobs (``sbatch``; ``job_cpu``, ``job_mem`` as in dask-jobqueue)."""

    system = "slurm"


class PBSCluster(JobQueueCluster):
    """Workers as PBS Pro jobs (``qsub``; ``resource_spec`` replaces the select line)."""

    system = "pbs"


class TorqueCluster(JobQueueCluster):
    """Workers as Torque jobs (``qsub``)."""

    system = "torque"


class SGECluster(JobQueueCluster):
    """Workers as Grid Engine jobs (``qsub``; pass ``resource_spec`` such as ``h_vmem=4G``)."""

    system = "sge"


class LSFCluster(JobQueueCluster):
    """Workers as LSF jobs (``bsub``; ``lsf_units`` as in ``LSF_UNIT_FOR_LIMITS``)."""

    system = "lsf"


class HTCondorCluster(JobQueueCluster):
    """Workers as HTCondor jobs (``condor_submit``; ``disk`` is required)."""

    system = "htcondor"
