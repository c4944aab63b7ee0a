"""The typed boundary with the Rust extension: ``shoal.mpi`` and ``shoal.jobqueue`` call
``shoal._native`` with keyword arguments and get Python objects back; values are checked
by the command line's own parsers (same rules, same messages, naming the keyword), and the
constants both sides use come from Rust."""

from __future__ import annotations

import threading

import pytest

import shoal.mpi
from shoal import _native, _serialize, jobqueue

WORKER = ["/opt/py/bin/python", "-m", "shoal"]


def test_error_frames_use_the_constant_rust_checks_for():
    assert _serialize.ERROR_MAGIC is _native.ERROR_MAGIC and _serialize.MAGIC is _native.MAGIC
    assert (_native.MAGIC, _native.ERROR_MAGIC) == (b"SHL1", b"SHLE")
    frame = _serialize.dumps(threading.Lock())  # cannot be pickled: an error frame
    assert frame.startswith(_native.ERROR_MAGIC), frame
    with pytest.raises(_serialize.SerializationError, match="cannot pickle a value of type _thread.lock"):
        _serialize.loads(frame)
    assert not _serialize.dumps([1, 2]).startswith(_native.ERROR_MAGIC)


def test_memory_sizes_follow_the_job_parameters_grammar():
    assert _native.parse_memory("100GB") == 100 * 10**9
    assert _native.parse_memory("1.5GiB") == 3 * 2**29
    assert _native.parse_memory("4096") == 4096
    assert jobqueue._bytes("96GiB") == 96 * 2**30
    assert jobqueue._bytes(12345) == 12345
    # What `memory=` refuses, scale(memory=) refuses with the same message.
    for bad, why in [("10 GB", "contains a space"), ("lots", "does not start with a digit"), ("5XB", "unknown unit")]:
        with pytest.raises(ValueError, match=why) as info:
            jobqueue._bytes(bad)
        assert repr(bad).replace("'", '"') in str(info.value) and "e.g. 100GB" in str(info.value)


def test_jobqueue_figures_and_status_are_python_objects(tmp_path):
    params = [("cores", "4"), ("memory", "8GiB"), ("processes", "2"), ("walltime", "01:00:00")]
    figures = _native.jobqueue_script("slurm", params, scheduler_file="/shared/s.json", worker_command=WORKER, json=True)
    assert isinstance(figures, dict)
    assert (figures["cores"], figures["processes"], figures["nthreads"]) == (4, 2, 2)
    assert figures["memory"] == 8 * 2**30 and figures["walltime_s"] == 3600
    assert isinstance(figures["lifetime_s"], int) and figures["warnings"] == []
    assert "/opt/py/bin/python -m shoal worker --scheduler-file /shared/s.json" in figures["script"]
    script = _native.jobqueue_script("slurm", params, scheduler_file="/shared/s.json", worker_command=WORKER)
    assert script == figures["script"]
    with pytest.raises(ValueError, match="nosuch"):
        _native.jobqueue_script("nosuch", params, scheduler_file="/s.json", worker_command=WORKER)
    with pytest.raises(RuntimeError, match='"10 GB"'):
        _native.jobqueue_script("slurm", [("cores", "1"), ("memory", "10 GB")], scheduler_file="/s.json",
                                worker_command=WORKER)
    with pytest.raises(RuntimeError, match="no jobs were submitted"):
        _native.jobqueue_status(scheduler_file=str(tmp_path / "s.json"))


def test_list_parameters_become_one_pair_per_element():
    pairs = jobqueue._param_pairs({"cores": 2, "job_extra_directives": ["--exclusive", "-C x"],
                                   "job_script_prologue": [], "walltime": None, "lifetime": "auto"})
    assert pairs == [("cores", "2"), ("job_extra_directives", "--exclusive"), ("job_extra_directives", "-C x"),
                     ("job_script_prologue", ""), ("lifetime", "auto")]


@pytest.mark.parametrize(
    ("kwargs", "expect"),
    [
        ({"nthreads": 0}, 'nthreads=0: "0" is not a whole number of 1 or more'),
        ({"death_timeout": -1}, 'death_timeout=-1: "-1" is not a non-negative number of seconds'),
        ({"memory_limit": "lots"}, "--memory-limit"),
        ({"scheduler_rank": -1}, "--scheduler-rank -1: a rank is 0 or more"),
    ],
)
def test_mpi_settings_are_refused_before_mpi_starts(kwargs, expect):
    # Checked before MPI_Init: this process does not become an MPI job.
    with pytest.raises(ValueError) as info:
        shoal.mpi.initialize(**kwargs)
    assert expect in str(info.value), str(info.value)
