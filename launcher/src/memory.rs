//! Worker memory settings: thresholds and spill options from flags, over the user's
//! config file `$XDG_CONFIG_HOME/shoal/worker.toml` (next to `jobqueue.toml`), over the
//! defaults (target 0.6, spill 0.7, pause 0.8, terminate 0.95).
//!
//! ```toml
//! [memory]
//! target = 0.6          # a fraction of the limit, or false
//! spill = 0.7
//! pause = 0.8
//! terminate = false
//! max-spill = "100GiB"  # or false
//! compression = true
//! monitor-interval = 0.1
//! ```

use crate::cli::MemoryArgs;
use anyhow::Context;
use serde::Deserialize;
use shoal_runtime::worker::memory::{MemoryPolicy, Thresholds};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A threshold as given: a fraction of the memory limit, or off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold(pub Option<f64>);

/// `false`, `off`, `none` or `no`: the setting is switched off.
fn is_off(text: &str) -> bool {
    ["false", "off", "none", "no"].contains(&text.to_ascii_lowercase().as_str())
}

/// `0.7`, or `false`/`off`/`none` to switch it off.
pub fn threshold(text: &str) -> Result<Threshold, String> {
    let text = text.trim();
    if is_off(text) {
        return Ok(Threshold(None));
    }
    let value: f64 = text.parse().map_err(|_| {
        format!("{text:?} is neither a fraction of the memory limit (e.g. 0.7) nor false")
    })?;
    fraction(value).map(|f| Threshold(Some(f)))
}

fn fraction(value: f64) -> Result<f64, String> {
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!(
            "{value} is not a fraction of the memory limit in (0, 1]"
        ))
    }
}

/// A cap on spilled bytes as given: bytes, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxSpill(pub Option<u64>);

/// `--max-spill`: a size (`100GiB`, bytes) or `false` for no cap.
pub fn max_spill(text: &str) -> Result<MaxSpill, String> {
    let text = text.trim();
    if is_off(text) || text == "0" {
        return Ok(MaxSpill(None));
    }
    if let Ok(bytes) = text.parse::<u64>() {
        return Ok(MaxSpill(Some(bytes)));
    }
    shoal_jobqueue::memory::Memory::parse(text)
        .map(|m| MaxSpill(Some(m.bytes())))
        .map_err(|e| format!("--max-spill: {e}; or false for no cap"))
}

/// The `[memory]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileMemory {
    target: Option<FileThreshold>,
    spill: Option<FileThreshold>,
    pause: Option<FileThreshold>,
    terminate: Option<FileThreshold>,
    max_spill: Option<FileSize>,
    compression: Option<bool>,
    monitor_interval: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileThreshold {
    Switch(bool),
    Fraction(f64),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileSize {
    Switch(bool),
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    memory: FileMemory,
}

/// Where the worker config file is for this environment.
pub fn config_path() -> Option<PathBuf> {
    shoal_jobqueue::config::user_config_path().map(|p| p.with_file_name("worker.toml"))
}

fn read_file(path: &Path) -> anyhow::Result<FileMemory> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileMemory::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: FileConfig = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid worker config (a [memory] table with target, spill, pause, terminate, max-spill, compression, monitor-interval)",
            path.display()
        )
    })?;
    Ok(file.memory)
}

fn file_threshold(
    name: &str,
    t: Option<FileThreshold>,
    default: Option<f64>,
) -> anyhow::Result<Option<f64>> {
    match t {
        None => Ok(default),
        Some(FileThreshold::Switch(false)) => Ok(None),
        Some(FileThreshold::Switch(true)) => {
            anyhow::bail!("memory.{name} = true: give a fraction of the limit (e.g. 0.7) or false")
        }
        Some(FileThreshold::Fraction(f)) => fraction(f)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("memory.{name}: {e}")),
    }
}

/// The memory policy for a worker: flags over the config file at `file` over defaults.
///
/// # Errors
/// The config file is unreadable or holds bad values.
pub fn policy(args: &MemoryArgs, file: Option<&Path>) -> anyhow::Result<MemoryPolicy> {
    let from_file = match file {
        Some(path) => read_file(path)?,
        None => FileMemory::default(),
    };
    let defaults = Thresholds::default();
    let pick = |flag: Option<Threshold>, name, value, default| -> anyhow::Result<Option<f64>> {
        match flag {
            Some(Threshold(t)) => Ok(t),
            None => file_threshold(name, value, default),
        }
    };
    let thresholds = Thresholds {
        target: pick(
            args.memory_target,
            "target",
            from_file.target,
            defaults.target,
        )?,
        spill: pick(args.memory_spill, "spill", from_file.spill, defaults.spill)?,
        pause: pick(args.memory_pause, "pause", from_file.pause, defaults.pause)?,
        terminate: pick(
            args.memory_terminate,
            "terminate",
            from_file.terminate,
            defaults.terminate,
        )?,
    };
    let max_spill = match (&args.max_spill, from_file.max_spill) {
        (Some(MaxSpill(flag)), _) => *flag,
        (None, None | Some(FileSize::Switch(false))) => None,
        (None, Some(FileSize::Bytes(b))) => Some(b),
        (None, Some(FileSize::Text(t))) => max_spill(&t).map_err(anyhow::Error::msg)?.0,
        (None, Some(FileSize::Switch(true))) => {
            anyhow::bail!("memory.max-spill = true: give a size (e.g. \"100GiB\") or false")
        }
    };
    let monitor_interval = match (args.memory_monitor_interval, from_file.monitor_interval) {
        (Some(d), _) => d,
        (None, Some(s)) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
        (None, Some(s)) => {
            anyhow::bail!("memory.monitor-interval = {s}: give a positive number of seconds")
        }
        (None, None) => MemoryPolicy::default().monitor_interval,
    };
    Ok(MemoryPolicy {
        thresholds,
        max_spill,
        compress: args.spill_compression || from_file.compression.unwrap_or(false),
        monitor_interval,
        allow_network_spill: args.allow_network_spill,
        supervised: false,
    })
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        memory: MemoryArgs,
    }

    fn args(flags: &[&str]) -> MemoryArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv).memory
    }

    #[test]
    fn thresholds_parse_fractions_and_off() {
        assert_eq!(threshold("0.7").unwrap(), Threshold(Some(0.7)));
        assert_eq!(threshold("false").unwrap(), Threshold(None));
        assert_eq!(threshold("OFF").unwrap(), Threshold(None));
        assert!(threshold("1.5").unwrap_err().contains("(0, 1]"));
        assert!(threshold("lots").unwrap_err().contains("e.g. 0.7"));
        assert_eq!(max_spill("false").unwrap(), MaxSpill(None));
        assert_eq!(max_spill("1GiB").unwrap(), MaxSpill(Some(1 << 30)));
        assert!(max_spill("huge").unwrap_err().contains("--max-spill"));
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let p = policy(&args(&[]), None).unwrap();
        assert_eq!(p.thresholds, Thresholds::default());
        assert_eq!(p.max_spill, None);
        assert!(!p.compress);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.toml");
        std::fs::write(
            &path,
            "[memory]\ntarget = false\nspill = 0.5\npause = 0.75\nmax-spill = \"2GiB\"\ncompression = true\nmonitor-interval = 0.25\n",
        )
        .unwrap();
        let p = policy(&args(&["--memory-pause", "0.9"]), Some(&path)).unwrap();
        assert_eq!(p.thresholds.target, None);
        assert_eq!(p.thresholds.spill, Some(0.5));
        assert_eq!(p.thresholds.pause, Some(0.9));
        assert_eq!(p.thresholds.terminate, Some(0.95));
        assert_eq!(p.max_spill, Some(2 << 30));
        assert!(p.compress);
        assert_eq!(p.monitor_interval, Duration::from_millis(250));
    }

    #[test]
    fn bad_config_files_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.toml");
        std::fs::write(&path, "[memory]\ntarget = 2.0\n").unwrap();
        let e = format!("{:#}", policy(&args(&[]), Some(&path)).unwrap_err());
        assert!(e.contains("memory.target"), "{e}");
        std::fs::write(&path, "[memory]\ntargett = 0.5\n").unwrap();
        let e = format!("{:#}", policy(&args(&[]), Some(&path)).unwrap_err());
        assert!(e.contains("worker.toml") && e.contains("targett"), "{e}");
        // A missing file is no file.
        assert!(policy(&args(&[]), Some(&dir.path().join("none.toml"))).is_ok());
    }
}
