//! Many nodes on one machine (`scripts/testbed`): a scheduler, workers and clients each on
//! their own "host" (network namespace with its own host name and address), so addresses,
//! interfaces, node-local communicators and lost hosts behave as on a cluster. Skipped,
//! saying why, where namespaces cannot be made (not root); as root they must run.
//! Each test has its own prefix and subnet, so they run in parallel.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::testbed::{pattern_sum, TestBed};
use serde_json::{json, Value};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// `a` on `wa`, `b` on `wb`, their checksum on `wc`: both inputs must cross the network.
fn cross_node_graph(wa: &str, wb: &str, wc: &str) -> (Value, u64) {
    let graph = json!({
        "tasks": [
            {"key": "a", "kind": "bytes", "args": {"size": MIB, "pattern": true, "fill": 1}, "workers": [wa]},
            {"key": "b", "kind": "bytes", "args": {"size": MIB, "pattern": true, "fill": 2}, "workers": [wb]},
            {"key": "c", "kind": "checksum", "deps": ["a", "b"], "workers": [wc]},
        ],
        "outputs": ["c"],
    });
    (graph, pattern_sum(MIB, 1) + pattern_sum(MIB, 2))
}

/// Data made on the first two workers named, combined on the third: the checksum is exact
/// (`logs` says what the cluster printed when it is not).
fn check_cross_node(
    bed: &TestBed,
    file: &str,
    (a, b, c): (&str, &str, &str),
    logs: impl FnOnce() -> String,
) {
    let (graph, expected) = cross_node_graph(a, b, c);
    let (ok, out) = bed.run_graph(1, file, &graph, Duration::from_secs(60));
    assert!(ok, "{out}\n{}", logs());
    assert_eq!(out["results"]["c"], json!(expected), "{out}");
}

/// The scheduler file names node 1's address and every worker (on nodes 2..) its own host
/// and its node's address, on `ib0` when `ib`, else on `eth0`.
fn assert_advertised(bed: &TestBed, file: &str, status: &Value, ib: bool) {
    let contact: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let address = contact["address"].as_str().unwrap();
    assert!(
        address.starts_with(&format!("tcp://{}:", bed.addr(1, ib))),
        "the scheduler file has {address}, not node 1's address (ib0: {ib})"
    );
    for (n, (name, host, addr, _, _)) in workers(status).iter().enumerate() {
        let i = n as u32 + 2;
        assert_eq!(host, &bed.host(i), "{status}");
        assert!(
            addr.starts_with(&format!("tcp://{}:", bed.addr(i, ib))),
            "worker {name} advertises {addr}, not node {i}'s address (ib0: {ib}): {status}"
        );
    }
}

/// Workers of a status, by name: (host, address, nthreads, pid).
fn workers(status: &Value) -> Vec<(String, String, String, u64, i32)> {
    let mut v: Vec<_> = status["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers in {status}"))
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap_or_default().to_string(),
                w["host"].as_str().unwrap_or_default().to_string(),
                w["address"].as_str().unwrap_or_default().to_string(),
                w["nthreads"].as_u64().unwrap_or(0),
                w["pid"].as_i64().unwrap_or(0) as i32,
            )
        })
        .collect();
    v.sort();
    v
}

/// Scheduler on node 1, one worker on each of nodes 2-4 with the default address choice
/// (the node's host name), client on node 1.
fn start_cluster(
    bed: &TestBed,
    scheduler_extra: &[&str],
    worker_extra: &[&str],
) -> (String, common::Proc, Vec<common::Proc>) {
    let file = bed.path("scheduler.json");
    let mut args = vec!["scheduler", "--scheduler-file", &file];
    args.extend_from_slice(scheduler_extra);
    let scheduler = bed.spawn(1, "scheduler", &args);
    let mut ws = Vec::new();
    for i in 2..=4 {
        let name = format!("w{i}");
        let mut args = vec![
            "worker",
            "--scheduler-file",
            &file,
            "--nthreads",
            "1",
            "--memory-limit",
            "0",
            "--name",
            &name,
        ];
        args.extend_from_slice(worker_extra);
        ws.push(bed.spawn(i, &name, &args));
    }
    (file, scheduler, ws)
}

#[test]
fn scheduler_file_cluster_on_four_hosts_moves_data_between_them() {
    let Some(bed) = TestBed::up("stbsf", 1, 4, &[]) else {
        return;
    };
    let (file, _scheduler, _workers) = start_cluster(&bed, &[], &[]);
    let status = bed.wait_for_workers(1, &file, 3, Duration::from_secs(30));
    // The scheduler file names node 1; every worker advertises its own host and address.
    let text = std::fs::read_to_string(&file).unwrap();
    let contact: Value = serde_json::from_str(&text).unwrap();
    let address = contact["address"].as_str().unwrap();
    assert!(
        address.starts_with(&format!("tcp://{}:", bed.host(1)))
            || address.starts_with(&format!("tcp://{}:", bed.addr(1, false))),
        "scheduler advertises {address}, not node 1"
    );
    let ws = workers(&status);
    for (n, (name, host, addr, _, _)) in ws.iter().enumerate() {
        let i = n as u32 + 2;
        assert_eq!(name, &format!("w{i}"));
        assert_eq!(host, &bed.host(i), "{status}");
        assert!(
            addr.starts_with(&format!("tcp://{}:", bed.addr(i, false))),
            "worker {name} advertises {addr}, not node {i}'s address: {status}"
        );
    }
    // The table names them too.
    let (ok, table) = bed.run(
        1,
        &["status", "--scheduler-file", &file],
        Duration::from_secs(20),
    );
    assert!(ok, "{table}");
    for i in 2..=4 {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("w{i} ")))
            .unwrap_or_else(|| panic!("no row for w{i}: {table}"));
        assert!(
            row.contains(&bed.host(i)) && row.contains(&bed.addr(i, false)),
            "{table}"
        );
    }
    // Data made on nodes 2 and 3, combined on node 4, checked to the byte.
    check_cross_node(&bed, &file, ("w2", "w3", "w4"), || bed.logs());
    // A tree whose leaves spread over all three hosts.
    let (ok, out) = bed.run(
        1,
        &[
            "run",
            "--json",
            "--scheduler-file",
            &file,
            "--generate",
            "tree:1024",
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("\"tree-10-0\":{}", 1024u64 * 1023 / 2)),
        "{out}"
    );
    let status = bed.status(1, &file);
    for (name, _, _, _, _) in workers(&status) {
        let w = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == json!(name))
            .unwrap();
        assert!(
            w["finished"].as_u64().unwrap_or(0) > 0,
            "{name} ran nothing: {status}"
        );
    }
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
}

#[test]
fn interface_ib0_carries_the_cluster_when_eth0_is_cut() {
    let Some(bed) = TestBed::up("stbib", 2, 4, &["--ib"]) else {
        return;
    };
    let ib = ["--interface", "ib0"];
    let (file, _scheduler, _workers) = start_cluster(&bed, &ib, &ib);
    let status = bed.wait_for_workers(1, &file, 3, Duration::from_secs(30));
    assert_advertised(&bed, &file, &status, true);
    check_cross_node(&bed, &file, ("w2", "w3", "w4"), || bed.logs());
    // The first network goes away: everything keeps working on ib0.
    bed.testbed(&["cut-net", "eth0"]);
    check_cross_node(&bed, &file, ("w4", "w2", "w3"), || bed.logs());
    let status = bed.status(1, &file);
    assert_eq!(workers(&status).len(), 3, "{status}");
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
}

#[test]
fn host_cut_from_the_network_mid_graph_is_dropped_and_its_work_recomputed() {
    let Some(bed) = TestBed::up("stbcut", 3, 4, &[]) else {
        return;
    };
    let (file, _scheduler, mut ws) = start_cluster(
        &bed,
        &["--worker-timeout", "3", "--heartbeat", "0.5"],
        &["--death-timeout", "4"],
    );
    bed.wait_for_workers(1, &file, 3, Duration::from_secs(30));
    // 60 leaves of 100 ms over 3 one-thread workers (about 2 s), then a sum of all: node
    // 4's finished leaves are lost with it and must be recomputed on nodes 2 and 3.
    let keys: Vec<String> = (0..60).map(|i| format!("leaf{i}")).collect();
    let mut tasks: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| common::sum(k, &[], i as u64, 100))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    tasks.push(common::sum("total", &refs, 0, 0));
    let graph = json!({"tasks": tasks, "outputs": ["total"]});
    let path = bed.path("graph.json");
    std::fs::write(&path, serde_json::to_vec(&graph).unwrap()).unwrap();
    let mut client = bed.spawn(
        1,
        "client",
        &["run", "--json", "--scheduler-file", &file, &path],
    );
    // Once node 4 holds finished leaves, cut it off.
    let finished_on = |status: &Value, name: &str| {
        status["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == json!(name)))
            .and_then(|w| w["finished"].as_u64())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while finished_on(&bed.status(1, &file), "w4") < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "w4 ran nothing:\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bed.testbed(&["cut", "4"]);
    let started = std::time::Instant::now();
    let status = client
        .wait_timeout(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("the graph did not finish:\n{}", bed.logs()));
    let out = client.log_text();
    assert!(status.success(), "{out}\n{}", bed.logs());
    assert!(out.contains(&format!("\"total\":{}", 59 * 60 / 2)), "{out}");
    let sched = std::fs::read_to_string(bed.path("scheduler.log")).unwrap();
    assert!(
        sched.contains("worker lost") && sched.contains("w4"),
        "{sched}"
    );
    let status = bed.status(1, &file);
    let names: Vec<String> = workers(&status).into_iter().map(|w| w.0).collect();
    assert_eq!(names, ["w2", "w3"], "{status}");
    // Nodes 2 and 3 ran every task between them: node 4's leaves a second time.
    let others = finished_on(&status, "w2") + finished_on(&status, "w3");
    assert!(
        others >= 61,
        "w2 and w3 finished {others} of 61 tasks: {status}"
    );
    // The cut worker gives up after its death timeout (4 s), with status 3.
    let w4 = ws.pop().unwrap();
    let mut w4 = w4;
    let exit = w4
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the cut worker did not exit:\n{}", w4.log_text()));
    assert_eq!(exit.code(), Some(3), "{}", w4.log_text());
    assert!(started.elapsed() < Duration::from_secs(60));
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
}

#[test]
fn host_names_that_do_not_resolve_still_give_addresses_other_hosts_reach() {
    // No /etc/hosts entries for the nodes (many containers and cloud images): the
    // scheduler and workers must not advertise loopback.
    let Some(bed) = TestBed::up("stbnh", 4, 4, &["--no-hosts"]) else {
        return;
    };
    let (file, _scheduler, _workers) = start_cluster(&bed, &[], &[]);
    let status = bed.wait_for_workers(1, &file, 3, Duration::from_secs(30));
    assert_advertised(&bed, &file, &status, false);
    check_cross_node(&bed, &file, ("w2", "w3", "w4"), || bed.logs());
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
}

/// `mpirun` started on node 1 of `bed` spanning its nodes through the test bed's rsh agent,
/// 2 slots per node, Open MPI's TCP restricted to the bed's eth0 subnet (no shared memory
/// between nodes: each node is its own host to Open MPI).
fn mpirun(bed: &TestBed, name: &str, np: u32, program: &[&str]) -> common::Proc {
    let hostfile = bed.path("hostfile");
    let hosts: String = (1..=bed.nodes)
        .map(|i| format!("{} slots=2\n", bed.host(i)))
        .collect();
    std::fs::write(&hostfile, hosts).unwrap();
    let agent = format!("{} rsh", common::testbed::script().display());
    let subnet = bed.subnet(false);
    let np = np.to_string();
    let mut args = vec![
        "--hostfile",
        &hostfile,
        "--mca",
        "plm_rsh_agent",
        &agent,
        "--mca",
        "plm_rsh_no_tree_spawn",
        "1",
        "--mca",
        "oob_tcp_if_include",
        &subnet,
        "--mca",
        "btl",
        "tcp,self,vader",
        "--mca",
        "btl_tcp_if_include",
        &subnet,
        "--map-by",
        "ppr:2:node",
        "--bind-to",
        "none",
        "-x",
        "SHOAL_LOG",
        "-np",
        &np,
    ];
    args.extend_from_slice(program);
    bed.spawn_program(1, name, "mpirun", &args)
}

#[test]
fn mpirun_spans_four_hosts_with_per_node_shares_binding_and_data_over_mpi() {
    let Some(bed) = TestBed::up("stbmpi", 5, 4, &[]) else {
        return;
    };
    let file = bed.path("scheduler.json");
    let mut job = mpirun(
        &bed,
        "mpirun",
        8,
        &[
            common::SHOAL,
            "mpi",
            "--scheduler-file",
            &file,
            "--bind",
            "cores",
        ],
    );
    let status = bed.wait_for_workers(1, &file, 7, Duration::from_secs(60));
    let (ok, info) = bed.run(2, &["info", "--json"], Duration::from_secs(20));
    assert!(ok, "{info}");
    let info: Value = serde_json::from_str(&info[info.find('{').unwrap()..]).unwrap();
    let (cores, memory) = (
        info["cores"].as_u64().unwrap(),
        info["memory"].as_u64().unwrap(),
    );
    // Rank r runs on node r/2 + 1 (rank 0, the scheduler, and rank 1 on node 1), each with
    // its node's share: half the cores and half the memory, whatever the world's size.
    let ws = workers(&status);
    let mut pid_of = std::collections::HashMap::new();
    for (name, host, addr, nthreads, pid) in &ws {
        let rank: u32 = name.trim_start_matches("shoal-mpi-").parse().unwrap();
        let node = rank / 2 + 1;
        assert_eq!(host, &bed.host(node), "{name}: {status}");
        assert!(
            addr.starts_with(&format!("tcp://{}:", bed.addr(node, false))),
            "{name} {addr}"
        );
        assert!(
            addr.contains(" mpi://"),
            "{name} advertises no MPI address: {addr}"
        );
        assert_eq!(*nthreads, (cores / 2).max(1), "{name}: {status}");
        pid_of.insert(rank, *pid);
    }
    for w in status["workers"].as_array().unwrap() {
        let limit = w["memory_limit"].as_u64().unwrap() as f64;
        let share = limit / memory as f64;
        assert!(
            (0.4..=0.55).contains(&share),
            "{}: limit {limit} of {memory}",
            w["name"]
        );
    }
    // --bind cores: the two ranks of a node take its two halves of the cores.
    if cores >= 2 {
        for (rank, pid) in &pid_of {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let cpus = text
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_string();
            let half = cores / 2;
            let first = (rank % 2) as u64 * half;
            let expected = if half == 1 {
                first.to_string()
            } else {
                format!("{first}-{}", first + half - 1)
            };
            assert_eq!(cpus, expected, "rank {rank} (pid {pid})");
        }
    }
    // Data made on nodes 2 and 3, combined on node 4 (named by its full address), over MPI.
    let target = ws.iter().find(|w| w.0 == "shoal-mpi-6").unwrap().2.clone();
    check_cross_node(&bed, &file, ("shoal-mpi-2", "shoal-mpi-4", &target), || {
        bed.logs()
    });
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    let exit = job
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("mpirun did not exit:\n{}", job.log_text()));
    let log = job.log_text();
    assert!(exit.success(), "{log}");
    assert!(log.contains("fetching from peer over MPI"), "{log}");
    assert!(!log.contains("fetching from peer over TCP"), "{log}");
}

#[test]
fn slurm_on_four_hosts_spreads_a_job_array_and_runs_srun_mpi_across_them() {
    let Some(bed) = TestBed::up("stbslm", 6, 4, &[]) else {
        return;
    };
    let Some(slurm) = common::testbed::SlurmBed::start(bed) else {
        return;
    };
    let bed = &slurm.bed;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get() as u64);
    // A scheduler on node 1 (a login node), three workers as a job array, each asking for
    // a whole node, so SLURM spreads them over nodes 2-4.
    let file = bed.path("scheduler.json");
    let _scheduler = bed.spawn(1, "scheduler", &["scheduler", "--scheduler-file", &file]);
    let wrap = format!(
        "exec {} worker --scheduler-file {file} --nthreads 1 --memory-limit 0 --death-timeout 20 --name aw$SLURM_ARRAY_TASK_ID",
        common::SHOAL
    );
    let out_pattern = bed.path("array-%a.out");
    let c = cores.to_string();
    let out = slurm.command(
        "sbatch",
        &[
            "--array=1-3",
            "-N1",
            "-n1",
            "-c",
            &c,
            "--mem=100",
            "-t",
            "5",
            "--exclude",
            &bed.host(1),
            "-o",
            &out_pattern,
            "--wrap",
            &wrap,
        ],
    );
    assert!(
        out.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = bed.wait_for_workers(1, &file, 3, Duration::from_secs(60));
    let ws = workers(&status);
    let hosts: Vec<&str> = {
        let mut h: Vec<&str> = ws.iter().map(|w| w.1.as_str()).collect();
        h.sort();
        h
    };
    assert_eq!(hosts, [bed.host(2), bed.host(3), bed.host(4)], "{status}");
    for (name, host, addr, _, _) in &ws {
        let i: u32 = host
            .trim_start_matches(&format!("{}n", bed.prefix))
            .parse()
            .unwrap();
        assert!(
            addr.starts_with(&format!("tcp://{}:", bed.addr(i, false))),
            "{name} {addr}"
        );
    }
    check_cross_node(bed, &file, (&ws[0].0, &ws[1].0, &ws[2].0), || slurm.logs());
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !slurm.queue().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the array's workers did not end: {:?}",
            slurm.queue()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // srun --mpi=pmix: 6 ranks, 2 per node on nodes 2-4; rank 0 (node 2) is the scheduler.
    let file = bed.path("scheduler-srun.json");
    let subnet = bed.subnet(false);
    let nodes = format!("{}n[2-4]", bed.prefix);
    let mut srun = slurm.spawn(
        "srun",
        "srun",
        &[
            "--mpi=pmix",
            "-N3",
            "-n6",
            "--ntasks-per-node=2",
            "-c1",
            "--mem-per-cpu=100",
            "-w",
            &nodes,
            common::SHOAL,
            "mpi",
            "--scheduler-file",
            &file,
            "--bind",
            "cores",
            "--memory-limit",
            "0",
        ],
        &[
            ("OMPI_MCA_btl", "tcp,self,vader"),
            ("OMPI_MCA_btl_tcp_if_include", &subnet),
            ("OMPI_MCA_oob_tcp_if_include", &subnet),
        ],
    );
    let status = bed.wait_for_workers(1, &file, 5, Duration::from_secs(60));
    let ws = workers(&status);
    for (name, host, addr, nthreads, _) in &ws {
        let rank: u32 = name.trim_start_matches("shoal-mpi-").parse().unwrap();
        assert_eq!(host, &bed.host(rank / 2 + 2), "{name}: {status}");
        assert!(addr.contains(" mpi://"), "{name}: {addr}");
        assert_eq!(*nthreads, (cores / 2).max(1), "{name}: {status}");
    }
    check_cross_node(
        bed,
        &file,
        ("shoal-mpi-1", "shoal-mpi-3", "shoal-mpi-5"),
        || slurm.logs(),
    );
    let (ok, out) = bed.run(
        1,
        &["shutdown", "--scheduler-file", &file],
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    let exit = srun
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("srun did not exit:\n{}", srun.log_text()));
    assert!(exit.success(), "{}", srun.log_text());
    assert!(
        srun.log_text().contains("fetching from peer over MPI"),
        "{}",
        srun.log_text()
    );
}
