//! Golden job scripts for every system and several parameter sets.
//! `SHOAL_BLESS=1 cargo test -p shoal-jobqueue --test golden` rewrites them.

use std::path::PathBuf;

use shoal_jobqueue::{render, JobParams, Layer, System};

fn minimal(_system: System) -> Vec<(&'static str, &'static str)> {
    vec![
        ("cores", "4"),
        ("memory", "16GB"),
        ("scheduler_file", "/shared/scheduler-1.json"),
    ]
}

/// Queue, account, log dir, extra directives, skip, prologue, epilogue,
/// array of 3, processes 2.
fn full(system: System) -> Vec<(&'static str, &'static str)> {
    let mut p = vec![
        ("cores", "8"),
        ("memory", "100GB"),
        ("processes", "2"),
        ("name", "shoal-w"),
        ("queue", "debug"),
        ("account", "proj42"),
        ("log_directory", "/scratch/logs"),
        ("local_directory", "$TMPDIR/shoal"),
        ("interface", "ib0"),
        ("job_script_prologue", "module load python"),
        ("job_script_prologue", "source venv/bin/activate"),
        ("job_script_epilogue", "echo \"worker exited with $?\""),
        ("array", "3"),
        ("scheduler_file", "$HOME/.shoal/scheduler-1.json"),
        ("worker_extra_args", "--resources"),
        ("worker_extra_args", "GPU=1 MEM=2"),
    ];
    p.extend(match system {
        System::Slurm => vec![
            ("walltime", "02:00:00"),
            ("job_directives_skip", "--mem"),
            ("job_extra_directives", "--mem-per-cpu=13G"),
        ],
        System::Pbs | System::Torque => vec![
            ("walltime", "02:00:00"),
            ("job_directives_skip", "-o "),
            ("job_extra_directives", "-j oe"),
        ],
        System::Sge => vec![
            ("walltime", "02:00:00"),
            ("resource_spec", "h_vmem=13G"),
            ("job_directives_skip", "-cwd"),
            ("job_extra_directives", "-pe smp 8"),
        ],
        System::Lsf => vec![
            ("walltime", "02:00"),
            ("lsf_units", "MB"),
            ("job_directives_skip", "span"),
            ("job_extra_directives", "-R \"rusage[mem=12500]\""),
        ],
        System::HtCondor => vec![
            ("walltime", "02:00:00"),
            ("disk", "10GB"),
            ("job_directives_skip", "universe"),
            (
                "job_extra_directives",
                "requirements = (OpSys == \"LINUX\")",
            ),
        ],
    });
    p
}

/// `python` as a command prefix, walltime-aware lifetime switched off.
fn srun(_system: System) -> Vec<(&'static str, &'static str)> {
    vec![
        ("cores", "4"),
        ("memory", "16GiB"),
        ("python", "srun -n 1 -c 4"),
        ("lifetime", "0"),
        ("scheduler_file", "/shared/scheduler 1.json"),
    ]
}

type Set = fn(System) -> Vec<(&'static str, &'static str)>;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn check(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = golden_dir().join(name);
    if std::env::var_os("SHOAL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        mismatches.push(format!(
            "{} differs (SHOAL_BLESS=1 to regenerate)\n--- expected ---\n{expected}--- actual ---\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn golden_scripts() {
    let sets: [(&str, Set); 3] = [("minimal", minimal), ("full", full), ("srun", srun)];
    let mut mismatches = Vec::new();
    for system in System::ALL {
        for (set, pairs) in sets {
            let mut layer = Layer::new(format!("golden {set}"));
            for (k, v) in pairs(system) {
                layer.push(k, v);
            }
            if system == System::HtCondor && !layer.pairs.iter().any(|(k, _)| k == "disk") {
                layer.push("disk", "1GB");
            }
            let valid = JobParams::from_layers(&[layer])
                .and_then(|(p, _)| p.validate(system))
                .unwrap_or_else(|e| panic!("{system} {set}: {e}"));
            let job = render(&valid);
            let stem = format!("{}-{set}", system.name());
            check(&format!("{stem}.sh"), job.script(), &mut mismatches);
            if let Some(description) = job.submit_description(&format!("{stem}.sh")) {
                check(&format!("{stem}.sub"), &description, &mut mismatches);
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
