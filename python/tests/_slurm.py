"""A real single-node SLURM for tests (the recipe of launcher/tests/common/slurm.rs):
munged, slurmctld and slurmd with every file in a temporary directory, stopped by pid
(SIGTERM, then SIGKILL) even when a test fails. Every wait is bounded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"]


def find_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def missing() -> str | None:
    """Why no SLURM can be started here, or None."""
    for name in ("munged", "slurmctld", "slurmd", "sbatch", "runuser"):
        if find_program(name) is None:
            return f"{name} not found (scripts/setup installs SLURM)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], what: str, env=None) -> None:
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stdout}{out.stderr}")


class Slurm:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="shoal-slurm-")
        self.pidfiles: list[str] = []
        self.conf = os.path.join(self.dir, "slurm", "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self) -> "Slurm":
        d = self.dir
        munge, slurm = os.path.join(d, "munge"), os.path.join(d, "slurm")
        for sub in ("run", "etc"):
            os.makedirs(os.path.join(munge, sub))
        for sub in ("state", "spool", "log", "run"):
            os.makedirs(os.path.join(slurm, sub))
        # munged runs as `munge`: it must reach its socket directory (0711, not 0700).
        for p in (d, munge, os.path.join(munge, "run")):
            os.chmod(p, 0o711)
        os.chmod(os.path.join(munge, "etc"), 0o700)
        key = os.path.join(munge, "etc", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        _run(["chown", "-R", "munge:munge", munge], "chown munge")
        socket_path = os.path.join(munge, "run", "munge.socket")
        munged_pid = os.path.join(munge, "run", "munged.pid")
        self.pidfiles.append(munged_pid)
        _run(
            ["runuser", "-u", "munge", "--", find_program("munged"), f"--key-file={key}", f"--socket={socket_path}",
             f"--pid-file={munged_pid}", f"--log-file={os.path.join(munge, 'munged.log')}", f"--seed-file={os.path.join(munge, 'seed')}"],
            "munged",
        )
        host = socket.gethostname()
        conf = f"""ClusterName=shoalpytest
SlurmctldHost={host}
AuthType=auth/munge
AuthInfo=socket={socket_path}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={slurm}/state
SlurmdSpoolDir={slurm}/spool
SlurmctldPidFile={slurm}/run/slurmctld.pid
SlurmdPidFile={slurm}/run/slurmd.pid
SlurmctldLogFile={slurm}/log/slurmctld.log
SlurmdLogFile={slurm}/log/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=sched_interval=1
MinJobAge=5
NodeName={host} CPUs={os.cpu_count() or 1} RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        self.pidfiles.append(os.path.join(slurm, "run", "slurmctld.pid"))
        _run([find_program("slurmctld")], "slurmctld", env=self.env)
        self.pidfiles.append(os.path.join(slurm, "run", "slurmd.pid"))
        _run([find_program("slurmd")], "slurmd", env=self.env)
        self.wait_until("the node to be idle", 30, lambda: self.command("sinfo", "--noheader", "--format=%t").strip() == "idle")
        return self

    def command(self, program: str, *args: str) -> str:
        out = subprocess.run(["timeout", "20", program, *args], env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return out.stdout

    def queue(self) -> list[str]:
        """`squeue` lines (`id state`), array elements separately."""
        out = self.command("squeue", "--noheader", "--array", "--format=%i %T")
        return [line.strip() for line in out.splitlines() if line.strip()]

    def wait_until(self, what: str, limit: float, ready) -> None:
        deadline = time.monotonic() + limit
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {limit} s waiting for {what}\nqueue: {self.queue()}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        parts = []
        for f in ("slurm/log/slurmctld.log", "slurm/log/slurmd.log", "munge/munged.log"):
            try:
                with open(os.path.join(self.dir, f), errors="replace") as fh:
                    tail = fh.read().splitlines()[-15:]
            except OSError:
                tail = []
            parts.append(f"--- {f} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        # Jobs first (their steps outlive slurmd otherwise), bounded.
        if os.path.exists(self.conf):
            self.command("scancel", "--partition=debug")
            deadline = time.monotonic() + 10
            while self.queue() and time.monotonic() < deadline:
                time.sleep(0.2)
        for pidfile in reversed(self.pidfiles):
            try:
                with open(pidfile) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
