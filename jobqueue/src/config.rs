//! Per-system defaults from the user's config file.
//!
//! The file is `$XDG_CONFIG_HOME/shoal/jobqueue.toml`, by default
//! `~/.config/shoal/jobqueue.toml`, with one table per system named as
//! [`System::name`] (`[slurm]`, `[pbs]`, `[torque]`, `[sge]`, `[lsf]`,
//! `[htcondor]`) holding parameters by their names:
//!
//! ```toml
//! [slurm]
//! queue = "compute"
//! account = "proj42"
//! walltime = "02:00:00"
//! job_directives_skip = ["--mem"]
//! job_extra_directives = ["--mem-per-cpu=4G"]
//! job_script_prologue = ["module load python"]
//! ```
//!
//! Strings, integers and booleans become one value; an array of them
//! becomes a list (one element each). A missing file gives no defaults; a
//! malformed one is an error naming the file and line. The table becomes a
//! [`Layer`] placed under the explicitly given values.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::params::{Deprecation, JobParams, Layer, ParamError};
use crate::system::System;

/// Why the config file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A top-level entry that is not a known system's table.
    #[error("{}: unknown table [{table}]{}; expected one table per system: slurm, pbs, torque, sge, lsf, htcondor", path.display(), suggestion.map(|s| format!(" (did you mean [{s}]?)")).unwrap_or_default())]
    UnknownTable {
        /// The file.
        path: PathBuf,
        /// The entry's name.
        table: String,
        /// The closest system name.
        suggestion: Option<&'static str>,
    },
    /// A value that is not a string, number, boolean or array of them.
    #[error("{}: [{table}] {key}: {reason}; use a string, a number, a boolean, or an array of them", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The system table.
        table: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A parameter in the file (or given explicitly) is wrong.
    #[error(transparent)]
    Param(#[from] ParamError),
}

/// The config file's location given the environment's `XDG_CONFIG_HOME`
/// and `HOME`; `None` when neither is set.
pub fn config_path(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let base = match (
        xdg_config_home.filter(|x| !x.is_empty()),
        home.filter(|h| !h.is_empty()),
    ) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => Path::new(h).join(".config"),
        (None, None) => return None,
    };
    Some(base.join("shoal").join("jobqueue.toml"))
}

/// [`config_path`] for this process's environment.
pub fn user_config_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    config_path(xdg.as_deref(), home.as_deref())
}

/// The parsed config file: one layer of values per system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    layers: BTreeMap<&'static str, Layer>,
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

impl Config {
    /// Reads `path`; a missing file is an empty config.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is unreadable or malformed.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses `text`, read from `path` (used in messages).
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] with line and column, or an unknown table or
    /// unusable value.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let mut layers = BTreeMap::new();
        for (name, entry) in &table {
            let system = System::ALL.into_iter().find(|s| s.name() == name);
            let (Some(system), toml::Value::Table(values)) = (system, entry) else {
                let names: Vec<&'static str> = System::ALL.iter().map(|s| s.name()).collect();
                return Err(ConfigError::UnknownTable {
                    path: path.to_path_buf(),
                    table: name.clone(),
                    suggestion: crate::keys::closest(name, &names),
                });
            };
            let mut layer = Layer::new(format!("{} [{}]", path.display(), name));
            for (key, value) in values {
                let bad = |reason| ConfigError::BadValue {
                    path: path.to_path_buf(),
                    table: name.clone(),
                    key: key.clone(),
                    reason,
                };
                match value {
                    toml::Value::Array(items) => {
                        if items.is_empty() {
                            layer.push(key.clone(), "");
                        }
                        for item in items {
                            layer.push(
                                key.clone(),
                                scalar(item)
                                    .ok_or_else(|| bad("an array element is not a plain value"))?,
                            );
                        }
                    }
                    other => layer.push(
                        key.clone(),
                        scalar(other)
                            .ok_or_else(|| bad("tables and dates are not parameter values"))?,
                    ),
                }
            }
            layers.insert(system.name(), layer);
        }
        Ok(Config { layers })
    }

    /// The defaults for `system` (empty when the file has no table for it).
    pub fn layer(&self, system: System) -> Layer {
        self.layers
            .get(system.name())
            .cloned()
            .unwrap_or_else(|| Layer::new(format!("config [{}]", system.name())))
    }

    /// Parameters for `system`: built-in defaults, then this file's table,
    /// then `explicit` (flags), with the deprecation warnings to print.
    ///
    /// # Errors
    /// [`ConfigError::Param`] for unknown keys or bad values in either.
    pub fn params_for(
        &self,
        system: System,
        explicit: &Layer,
    ) -> Result<(JobParams, Vec<Deprecation>), ConfigError> {
        Ok(JobParams::from_layers(&[
            self.layer(system),
            explicit.clone(),
        ])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/home/u/.config/shoal/jobqueue.toml")
    }

    #[test]
    fn location_follows_xdg_then_home() {
        let p = config_path(Some(OsStr::new("/x")), Some(OsStr::new("/home/u")));
        assert_eq!(p, Some(PathBuf::from("/x/shoal/jobqueue.toml")));
        let p = config_path(None, Some(OsStr::new("/home/u")));
        assert_eq!(p, Some(path()));
        assert_eq!(config_path(Some(OsStr::new("")), None), None);
    }

    #[test]
    fn tables_become_layers_under_explicit_values() {
        let text = r#"
[slurm]
queue = "compute"
cores = 8
memory = "32GB"
job_extra = ["--exclusive"]
job_script_prologue = ["module load python", "source venv/bin/activate"]

[pbs]
queue = "workq"
"#;
        let config = Config::parse(text, &path()).unwrap_or_else(|e| panic!("{e}"));
        let explicit = Layer::new("command line").with("queue", "debug");
        let (p, warnings) = config
            .params_for(System::Slurm, &explicit)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.queue.as_deref(), Some("debug"));
        assert_eq!(p.cores, Some(8));
        assert_eq!(p.job_extra_directives, ["--exclusive"]);
        assert_eq!(p.job_script_prologue.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].origin.contains("jobqueue.toml [slurm]"));
        let (p, _) = config
            .params_for(System::Lsf, &Layer::new("cli"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.queue, None);
    }

    #[test]
    fn malformed_file_names_file_and_line() {
        let text = "[slurm]\nqueue = \"a\"\ncores = = 4\n";
        let err = Config::parse(text, &path()).expect_err("syntax");
        match &err {
            ConfigError::Syntax { line, .. } => assert_eq!(*line, 3),
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("/home/u/.config/shoal/jobqueue.toml:3:"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_tables_keys_and_values() {
        let err = Config::parse("[slrum]\nqueue = \"a\"\n", &path())
            .expect_err("table")
            .to_string();
        assert!(
            err.contains("[slrum]") && err.contains("did you mean [slurm]"),
            "{err}"
        );
        let err = Config::parse("queue = \"a\"\n", &path())
            .expect_err("top-level")
            .to_string();
        assert!(err.contains("unknown table [queue]"), "{err}");
        let err = Config::parse("[slurm]\nqueue = { a = 1 }\n", &path())
            .expect_err("value")
            .to_string();
        assert!(err.contains("[slurm] queue"), "{err}");
        let config =
            Config::parse("[slurm]\nqueu = \"a\"\n", &path()).unwrap_or_else(|e| panic!("{e}"));
        let err = config
            .params_for(System::Slurm, &Layer::new("cli"))
            .expect_err("key")
            .to_string();
        assert!(
            err.contains("`queu`")
                && err.contains("jobqueue.toml [slurm]")
                && err.contains("`queue`"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let config = Config::load(Path::new("/nonexistent/shoal/jobqueue.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, Config::default());
    }
}
