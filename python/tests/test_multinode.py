"""Many nodes on one machine (`scripts/testbed`: network + UTS namespaces): a Dask
computation whose chunks move between workers on different hosts, and a batch script
(`shoal.mpi.initialize()`) under an mpirun spanning 4 hosts. Skipped, saying why, where
namespaces cannot be made (not root); as root the test bed must come up."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

TESTBED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "testbed")
SKIP = 77


class Bed:
    def __init__(self, prefix: str, net: int, directory):
        self.prefix, self.net, self.dir = prefix, net, directory
        self.env = dict(os.environ, SHOAL_TESTBED_PREFIX=prefix, SHOAL_TESTBED_NET=str(net),
                        OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        self.procs: list[subprocess.Popen] = []

    def host(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    def addr(self, i: int) -> str:
        return f"198.18.{2 * self.net}.{i}"

    def spawn(self, node: int, name: str, *cmd: str) -> subprocess.Popen:
        """Start CMD on node `node`, output to NAME.log; the pid is CMD's."""
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen([TESTBED, "run", str(node), *cmd], env=self.env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def run(self, node: int, name: str, *cmd: str, timeout: float = 120) -> tuple[int, str]:
        proc = self.spawn(node, name, *cmd)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"{cmd} on node {node} did not finish in {timeout}s:\n{self.logs()}")
        return code, (self.dir / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.dir.glob("*.log")))

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


@contextlib.contextmanager
def nodes_up(prefix: str, net: int, nodes: int = 4):
    """A bed of `nodes` nodes and a directory they all share (each node has its own /tmp)."""
    env = dict(os.environ, SHOAL_TESTBED_PREFIX=prefix, SHOAL_TESTBED_NET=str(net))
    up = subprocess.run([TESTBED, "up", str(nodes)], env=env, capture_output=True, text=True, timeout=120)
    if up.returncode == SKIP:
        if os.geteuid() == 0 or os.environ.get("SHOAL_REQUIRE_TESTBED"):
            pytest.fail(f"root (or SHOAL_REQUIRE_TESTBED) but the test bed cannot be made: {up.stderr}")
        pytest.skip(f"many-node test bed: {up.stderr.strip()}")
    directory = pathlib.Path(tempfile.mkdtemp(prefix="shoal-testbed-", dir="/var/tmp"))
    bed = Bed(prefix, net, directory)
    try:
        assert up.returncode == 0, up.stderr
        yield bed
    finally:
        bed.stop()
        subprocess.run([TESTBED, "down"], env=env, timeout=120, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def wait_for_file(bed: Bed, path, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no scheduler file:\n{bed.logs()}"
        time.sleep(0.1)


CLIENT = """
import json, sys, time
import numpy as np, dask.array as da, shoal
client = shoal.Client(scheduler_file=sys.argv[1])
client.wait_for_workers(3, timeout=30)
n = 600
def block(block_info=None):
    # Block (i, j) of arange(n * n).reshape(n, n), slowly: the 36 blocks spread over workers.
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    time.sleep(0.05)
    return np.arange(r0, r1)[:, None] * n + np.arange(c0, c1)[None, :]
x = client.persist(da.map_blocks(block, chunks=((100,) * 6, (100,) * 6), dtype=np.int64))
chunks = shoal.futures_of(x)
shoal.wait(chunks)
where = client.who_has(chunks)
info = client.scheduler_info()["workers"]
host_of = {a: w["host"] for a, w in info.items()}
holders = sorted({host_of[a] for addrs in where.values() for a in addrs if a in host_of})
total = int((x + x.T).sum().compute(scheduler=client))
m = np.arange(n * n).reshape(n, n)
print("RESULT " + json.dumps({"total": total, "expected": int((m + m.T).sum()), "holders": holders,
                              "hosts": sorted(w["host"] for w in info.values()),
                              "addresses": sorted(info)}), flush=True)
"""


def test_dask_transpose_sum_moves_chunks_between_hosts():
    pytest.importorskip("dask.array")
    with nodes_up("stbpyd", 11) as bed:
        file = bed.dir / "scheduler.json"
        py = sys.executable
        bed.spawn(1, "scheduler", py, "-m", "shoal", "scheduler", "--scheduler-file", str(file))
        wait_for_file(bed, file)
        for i in (2, 3, 4):
            bed.spawn(i, f"w{i}", py, "-m", "shoal", "worker", "--scheduler-file", str(file), "--nthreads", "1",
                      "--memory-limit", "0", "--name", f"w{i}", "--death-timeout", "20")
        script = bed.dir / "client.py"
        script.write_text(CLIENT)
        code, out = bed.run(1, "client", py, str(script), str(file))
        assert code == 0, f"{out}\n{bed.logs()}"
        line = next(s for s in out.splitlines() if s.startswith("RESULT "))
        result = json.loads(line[len("RESULT "):])
        assert result["total"] == result["expected"], result
        assert result["hosts"] == [bed.host(i) for i in (2, 3, 4)], result
        ips = sorted(a.split("://")[1].rsplit(":", 1)[0] for a in result["addresses"])
        assert ips == [bed.addr(i) for i in (2, 3, 4)], result
        # The persisted chunks sit on more than one host, so x.T's must travel.
        assert len(result["holders"]) >= 2, result


BATCH = """
import json, socket
import shoal, shoal.mpi
shoal.mpi.initialize(nthreads=1, memory_limit=0)
client = shoal.Client()
client.wait_for_workers(6, timeout=30)
info = client.scheduler_info()["workers"]
names = sorted(w["name"] for w in info.values())
def make(i):
    return list(range(i * 1000, (i + 1) * 1000))
def total(*parts):
    return sum(sum(p) for p in parts), socket.gethostname()
parts = [client.submit(make, i, workers=[n], pure=False) for i, n in enumerate(names)]
value, where = client.submit(total, *parts, workers=[names[-1]]).result()
print("RESULT " + json.dumps({"client": socket.gethostname(), "value": value, "where": where,
                              "hosts": {w["name"]: w["host"] for w in info.values()}}), flush=True)
"""


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (scripts/setup installs Open MPI)")
def test_batch_script_initialize_under_mpirun_on_four_hosts():
    with nodes_up("stbpym", 12) as bed:
        hostfile = bed.dir / "hostfile"
        hostfile.write_text("".join(f"{bed.host(i)} slots=2\n" for i in range(1, 5)))
        script = bed.dir / "batch.py"
        script.write_text(textwrap.dedent(BATCH))
        subnet = f"198.18.{2 * bed.net}.0/24"
        code, out = bed.run(
            1, "mpirun", "mpirun", "--hostfile", str(hostfile), "--mca", "plm_rsh_agent", f"{TESTBED} rsh",
            "--mca", "plm_rsh_no_tree_spawn", "1", "--mca", "oob_tcp_if_include", subnet,
            "--mca", "btl", "tcp,self,vader", "--mca", "btl_tcp_if_include", subnet,
            "--map-by", "ppr:2:node", "--bind-to", "none", "-np", "8", sys.executable, str(script), timeout=120)
        assert code == 0, f"{out}\n{bed.logs()}"
        line = next(s for s in out.splitlines() if s.startswith("RESULT "))
        result = json.loads(line[len("RESULT "):])
        assert result["value"] == sum(range(6000)), result
        assert result["client"] == bed.host(1), result  # rank 1
        # Ranks 2..7 are workers, two per host on hosts 2-4.
        assert result["hosts"] == {f"shoal-mpi-{r}": bed.host(r // 2 + 1) for r in range(2, 8)}, result
        assert result["where"] == bed.host(4), result
