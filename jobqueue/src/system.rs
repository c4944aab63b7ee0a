//! The batch systems and the one trait each of them implements.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::jobid::{IdForm, JobId};
use crate::status::JobState;
use crate::submit::Invocation;
use crate::validate::ValidParams;
use crate::walltime::WalltimeStyle;
use crate::{htcondor, lsf, pbs, sge, slurm};

/// A batch system shoal can generate jobs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// SLURM (`sbatch`).
    Slurm,
    /// PBS Pro / OpenPBS (`qsub`, arrays with `-J`).
    Pbs,
    /// Torque (`qsub`, arrays with `-t`).
    Torque,
    /// Sun/Son of/Univa Grid Engine (`qsub`, `#$`).
    Sge,
    /// IBM Spectrum LSF (`bsub`).
    Lsf,
    /// HTCondor (`condor_submit` with a submit description).
    HtCondor,
}

/// An unknown batch-system name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown batch system {value:?}{}; accepted: slurm, pbs (also pbspro, openpbs), torque, sge, lsf, htcondor (also condor)", suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
pub struct UnknownSystem {
    /// The name as given.
    pub value: String,
    /// The closest accepted name, if any is close.
    pub suggestion: Option<&'static str>,
}

impl System {
    /// Every system, in documentation order.
    pub const ALL: [System; 6] = [
        System::Slurm,
        System::Pbs,
        System::Torque,
        System::Sge,
        System::Lsf,
        System::HtCondor,
    ];

    /// The lower-case name used on the command line and as config table.
    pub fn name(self) -> &'static str {
        match self {
            System::Slurm => "slurm",
            System::Pbs => "pbs",
            System::Torque => "torque",
            System::Sge => "sge",
            System::Lsf => "lsf",
            System::HtCondor => "htcondor",
        }
    }

    /// The implementation of [`BatchSystem`] for this system.
    pub fn backend(self) -> &'static dyn BatchSystem {
        match self {
            System::Slurm => &slurm::Slurm,
            System::Pbs => &pbs::PBS_PRO,
            System::Torque => &pbs::TORQUE,
            System::Sge => &sge::Sge,
            System::Lsf => &lsf::Lsf,
            System::HtCondor => &htcondor::HtCondor,
        }
    }
}

impl FromStr for System {
    type Err = UnknownSystem;

    /// Case-insensitive name, with the aliases listed in the error message.
    fn from_str(s: &str) -> Result<System, UnknownSystem> {
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "slurm" => System::Slurm,
            "pbs" | "pbspro" | "openpbs" => System::Pbs,
            "torque" => System::Torque,
            "sge" | "gridengine" => System::Sge,
            "lsf" => System::Lsf,
            "htcondor" | "condor" => System::HtCondor,
            _ => {
                let names = [
                    "slurm", "pbs", "pbspro", "openpbs", "torque", "sge", "lsf", "htcondor",
                    "condor",
                ];
                return Err(UnknownSystem {
                    value: s.to_string(),
                    suggestion: crate::keys::closest(&lower, &names),
                });
            }
        })
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One generated header line (a directive, or a submit-description line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    /// The full line, e.g. `#SBATCH --mem=94G`.
    pub text: String,
    /// Why `job_directives_skip` must not remove it, if it is required.
    pub required: Option<&'static str>,
}

impl HeaderLine {
    /// A line users may skip (site policies reject some requests).
    pub fn optional(text: impl Into<String>) -> HeaderLine {
        HeaderLine {
            text: text.into(),
            required: None,
        }
    }

    /// A line shoal relies on; skipping it is a validation error.
    pub fn required(text: impl Into<String>, why: &'static str) -> HeaderLine {
        HeaderLine {
            text: text.into(),
            required: Some(why),
        }
    }
}

/// Reason used for every job-name line.
pub const NAME_REQUIRED: &str = "shoal finds its jobs in the queue by this name";
/// Reason used for every array line.
pub const ARRAY_REQUIRED: &str = "without it one job starts instead of the array";

/// What shoal knows about one batch system. Pure: commands are returned as
/// argv vectors and run by [`crate::submit`].
pub trait BatchSystem: Sync {
    /// Which system this is.
    fn system(&self) -> System;

    /// How walltimes are written for this system.
    fn walltime_style(&self) -> WalltimeStyle {
        WalltimeStyle::HoursMinutesSeconds
    }

    /// The prefix of directive lines (`#SBATCH`), put before each
    /// `job_extra_directives` entry that lacks it; `None` when extra lines
    /// are used as written (HTCondor's `key = value`).
    fn directive_prefix(&self) -> Option<&'static str>;

    /// Generated header lines, in order, before `job_extra_directives`
    /// (for HTCondor, the submit description without `executable`).
    fn header(&self, p: &ValidParams) -> Vec<HeaderLine>;

    /// Lines after `job_extra_directives` (HTCondor's final `queue N`).
    fn trailer(&self, _p: &ValidParams) -> Vec<HeaderLine> {
        Vec::new()
    }

    /// Shell expression for the job id inside a running job (the array's
    /// id when `array` is true).
    fn job_id_var(&self, array: bool) -> &'static str;

    /// Shell expression for the array element index inside a running job.
    fn array_index_var(&self) -> &'static str;

    /// The command that submits `script` (for HTCondor: the submit file).
    fn submit_command(&self, script: &Path) -> Invocation;

    /// The command that cancels `ids` (all of one SLURM cluster).
    fn cancel_command(&self, ids: &[JobId]) -> Invocation;

    /// The command that lists the state of `ids` (all of one SLURM cluster).
    fn status_command(&self, ids: &[JobId]) -> Invocation;

    /// The states of `id`'s elements found in the status command's stdout
    /// (empty when the job is no longer listed).
    fn parse_status(&self, stdout: &str, id: &JobId) -> Vec<JobState>;

    /// Fragments of the status command's stderr meaning "no such job": the
    /// command then fails but its stdout still counts.
    fn unknown_job_markers(&self) -> &'static [&'static str];

    /// This system's own submit messages, each with one `{id}`.
    fn submit_phrases(&self) -> &'static [&'static str];

    /// What is kept of a parsed id.
    fn id_form(&self) -> IdForm {
        IdForm::Number
    }

    /// Which client tools must be on PATH, and how sites usually load them.
    fn client_tools(&self) -> &'static str;

    /// The id of element `index` (1-based, as in the array request) of the
    /// array submitted as `id`, in the form the cancel and status commands
    /// take (`654321_2`, `1234[2].admin01`, `9.2`, `5[2]`, `123.1`), so
    /// that one element can be cancelled when scaling down.
    fn array_element(&self, id: &JobId, index: u32) -> JobId;

    /// Remarks about parameters this system ignores or needs help with.
    fn warnings(&self, _p: &ValidParams) -> Vec<String> {
        Vec::new()
    }
}

/// `PREFIX ARGS`, the one way directive lines are spelled.
pub fn directive(prefix: &str, args: impl fmt::Display) -> String {
    format!("{prefix} {args}")
}

/// Add `PREFIX FLAG VALUE` (the value quoted for a directive line) as an optional header
/// line when the parameter is set.
pub fn push_optional(header: &mut Vec<HeaderLine>, prefix: &str, flag: &str, value: Option<&str>) {
    if let Some(v) = value {
        header.push(HeaderLine::optional(directive(
            prefix,
            format!("{flag} {}", crate::shell::quote_directive(v)),
        )));
    }
}

/// Splits whitespace-separated status output into rows of words.
pub fn rows(stdout: &str) -> impl Iterator<Item = Vec<&str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
}

/// The leading number of an id column such as `654321.admin01`,
/// `654321[2].admin01`, `654321_[2-3]` or `123.0`.
pub fn leading_number(word: &str) -> Option<u64> {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for s in System::ALL {
            assert_eq!(s.name().parse::<System>(), Ok(s));
            assert_eq!(s.backend().system(), s);
        }
        assert_eq!("Condor".parse::<System>(), Ok(System::HtCondor));
        assert_eq!("openpbs".parse::<System>(), Ok(System::Pbs));
    }

    #[test]
    fn unknown_system_names_value_and_accepted() {
        let err = "slrum".parse::<System>().expect_err("typo");
        assert_eq!(err.suggestion, Some("slurm"));
        let msg = err.to_string();
        assert!(
            msg.contains("\"slrum\"")
                && msg.contains("did you mean slurm")
                && msg.contains("htcondor"),
            "{msg}"
        );
        let msg = "kubernetes"
            .parse::<System>()
            .expect_err("unknown")
            .to_string();
        assert!(!msg.contains("did you mean"), "{msg}");
    }

    #[test]
    fn array_elements_in_each_systems_form() {
        let id = |text: &str, number: u64| JobId {
            id: text.to_string(),
            number,
            cluster: None,
        };
        let cases = [
            (System::Slurm, id("654321", 654_321), "654321_2"),
            (System::Pbs, id("1234[].admin01", 1234), "1234[2].admin01"),
            (System::Torque, id("1234.srv", 1234), "1234[2].srv"),
            (System::Sge, id("9", 9), "9.2"),
            (System::Lsf, id("5", 5), "5[2]"),
            (System::HtCondor, id("123", 123), "123.1"),
        ];
        for (system, array, element) in cases {
            let e = system.backend().array_element(&array, 2);
            assert_eq!(e.id, element, "{system}");
            assert_eq!(e.number, array.number, "{system}");
        }
        let mut clustered = id("7", 7);
        clustered.cluster = Some("c2".into());
        let e = System::Slurm.backend().array_element(&clustered, 1);
        assert_eq!(e.cluster.as_deref(), Some("c2"));
    }

    #[test]
    fn leading_numbers() {
        assert_eq!(leading_number("654321.admin01"), Some(654_321));
        assert_eq!(leading_number("654321[2].admin01"), Some(654_321));
        assert_eq!(leading_number("12_[2-3]"), Some(12));
        assert_eq!(leading_number("JOBID"), None);
    }
}
