//! Job ids: parsing what a submit command prints.
//!
//! Order of preference:
//! 1. the user's pattern (`job_id_pattern`, e.g. `Your job {id} (`), when
//!    given: it must match, there is no silent fallback;
//! 2. the system's own phrases (`Submitted batch job {id}`, `Job <{id}> is
//!    submitted`, `submitted to cluster {id}`, ...), searched anywhere in the
//!    output, so a site wrapper's banner (`Project quota 2024: 50% used`)
//!    before them does not matter;
//! 3. the first id-shaped token of the LAST non-empty line (bare `qsub`
//!    output `654321.admin01`, `sbatch --parsable` output `654321;cluster`).
//!
//! An id-shaped token starts with a digit at a word start and goes on with
//! letters, digits, `.`, `_`, `-`, `[`, `]` (trailing dots dropped); `;name`
//! after it is a SLURM cluster. PBS keeps the whole token (`654321.admin01`,
//! `654321[].admin01`) as the id for `qdel`/`qstat`; other systems keep the
//! number. [`JobId::number`] always holds the number.
//!
//! Patterns are plain text with one `{id}` placeholder rather than regular
//! expressions: enough for every wrapper we know, and no regex dependency.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::system::System;

/// Why no job id could be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobIdError {
    /// The output holds no job id.
    #[error("could not find a job id in the output of the {system} submit command:\n{output}\nif a site wrapper changes this output, set job_id_pattern to the text around the id, e.g. \"Submitted batch job {{id}}\"")]
    NotFound {
        /// The system that was submitted to.
        system: &'static str,
        /// The whole stdout.
        output: String,
    },
    /// The user's pattern did not match.
    #[error("job_id_pattern {pattern:?} does not match the output of the {system} submit command:\n{output}")]
    PatternMismatch {
        /// The pattern as given.
        pattern: String,
        /// The system that was submitted to.
        system: &'static str,
        /// The whole stdout.
        output: String,
    },
    /// The pattern does not hold exactly one `{id}`.
    #[error("invalid job_id_pattern {pattern:?}: it must contain {{id}} exactly once, e.g. \"Submitted batch job {{id}}\"")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
    },
}

/// A submitted job (or job array).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId {
    /// The id to pass to cancel and status commands (`654321`,
    /// `654321.admin01` for PBS).
    pub id: String,
    /// The numeric part.
    pub number: u64,
    /// The SLURM cluster (`654321;cluster` from `sbatch --parsable -M`).
    pub cluster: Option<String>,
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cluster {
            Some(c) => write!(f, "{};{c}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// What a system keeps of an id-shaped token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// The leading number only (`123.1-3:1` -> `123`).
    Number,
    /// The whole token, server suffix included (PBS).
    WholeToken,
}

/// Text around a job id, with one `{id}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPattern {
    source: String,
    prefix: String,
    suffix: String,
}

impl IdPattern {
    /// Parses `pattern`, which must contain `{id}` exactly once.
    ///
    /// # Errors
    /// [`JobIdError::BadPattern`].
    pub fn parse(pattern: &str) -> Result<IdPattern, JobIdError> {
        let bad = || JobIdError::BadPattern {
            pattern: pattern.to_string(),
        };
        let (prefix, suffix) = pattern.split_once("{id}").ok_or_else(bad)?;
        if suffix.contains("{id}") {
            return Err(bad());
        }
        Ok(IdPattern {
            source: pattern.to_string(),
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first id token matched by this pattern in `text`.
    fn find<'t>(&self, text: &'t str) -> Option<Token<'t>> {
        let mut from = 0;
        while from <= text.len() {
            let at = from + text.get(from..)?.find(&self.prefix)?;
            let start = at + self.prefix.len();
            let boundary_ok = !self.prefix.is_empty() || at_word_start(text, start);
            if boundary_ok {
                if let Some(tok) = token_at(text, start) {
                    if text[tok.end..].starts_with(&self.suffix) {
                        return Some(tok);
                    }
                }
            }
            from = at + text[at..].chars().next().map_or(1, char::len_utf8);
        }
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct Token<'t> {
    text: &'t str,
    cluster: Option<&'t str>,
    end: usize,
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '[' | ']')
}

fn at_word_start(text: &str, i: usize) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
}

/// The id-shaped token starting exactly at byte `start`.
fn token_at(text: &str, start: usize) -> Option<Token<'_>> {
    let rest = text.get(start..)?;
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let len = rest.find(|c: char| !is_id_char(c)).unwrap_or(rest.len());
    let tok = rest[..len].trim_end_matches('.');
    // Where the token (and its `;cluster`, if any) ends, for suffix checks.
    let mut end = start + tok.len();
    let mut cluster = None;
    if let Some(after) = text[end..].strip_prefix(';') {
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(after.len());
        if n > 0 {
            cluster = Some(&after[..n]);
            end += 1 + n;
        }
    }
    Some(Token {
        text: tok,
        cluster,
        end,
    })
}

fn first_token(line: &str) -> Option<Token<'_>> {
    line.char_indices()
        .filter(|(i, c)| c.is_ascii_digit() && at_word_start(line, *i))
        .find_map(|(i, _)| token_at(line, i))
}

fn to_job_id(tok: Token<'_>, form: IdForm) -> Option<JobId> {
    let digits: String = tok.text.chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse().ok()?;
    let id = match form {
        IdForm::Number => digits,
        IdForm::WholeToken => tok.text.to_string(),
    };
    Some(JobId {
        id,
        number,
        cluster: tok.cluster.map(str::to_string),
    })
}

/// Reads the job id from a submit command's stdout (module doc).
///
/// # Errors
/// [`JobIdError::PatternMismatch`] when `user` is given and does not match,
/// else [`JobIdError::NotFound`].
pub fn parse_job_id(
    system: System,
    output: &str,
    user: Option<&IdPattern>,
) -> Result<JobId, JobIdError> {
    let backend = system.backend();
    let form = backend.id_form();
    if let Some(pattern) = user {
        return pattern
            .find(output)
            .and_then(|t| to_job_id(t, form))
            .ok_or_else(|| JobIdError::PatternMismatch {
                pattern: pattern.as_str().to_string(),
                system: system.name(),
                output: output.to_string(),
            });
    }
    for phrase in backend.submit_phrases() {
        if let Ok(p) = IdPattern::parse(phrase) {
            if let Some(id) = p.find(output).and_then(|t| to_job_id(t, form)) {
                return Ok(id);
            }
        }
    }
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(first_token)
        .and_then(|t| to_job_id(t, form))
        .ok_or_else(|| JobIdError::NotFound {
            system: system.name(),
            output: output.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(system: System, out: &str) -> (String, u64, Option<String>) {
        match parse_job_id(system, out, None) {
            Ok(j) => (j.id, j.number, j.cluster),
            Err(e) => (format!("error: {e}"), 0, None),
        }
    }

    fn plain(s: &str, n: u64) -> (String, u64, Option<String>) {
        (s.to_string(), n, None)
    }

    #[test]
    fn documented_outputs() {
        assert_eq!(
            id(System::Slurm, "Submitted batch job 654321\n"),
            plain("654321", 654_321)
        );
        assert_eq!(
            id(System::Pbs, "654321.admin01\n"),
            plain("654321.admin01", 654_321)
        );
        assert_eq!(
            id(System::Torque, "654321.admin01\n"),
            plain("654321.admin01", 654_321)
        );
        assert_eq!(
            id(System::Pbs, "654321[].admin01\n"),
            plain("654321[].admin01", 654_321)
        );
        assert_eq!(
            id(System::Slurm, "654321;cluster\n"),
            ("654321".to_string(), 654_321, Some("cluster".to_string()))
        );
        assert_eq!(
            id(
                System::Lsf,
                "Job <654321> is submitted to default queue <normal>.\n"
            ),
            plain("654321", 654_321)
        );
        assert_eq!(
            id(
                System::Pbs,
                "Request 654321.asdf was submitted to queue: batch.\n"
            ),
            plain("654321.asdf", 654_321)
        );
        assert_eq!(
            id(
                System::Slurm,
                "Request 654321.asdf was submitted to queue: batch.\n"
            ),
            plain("654321", 654_321)
        );
        assert_eq!(
            id(
                System::HtCondor,
                "Submitting job(s)...\n3 job(s) submitted to cluster 123.\n"
            ),
            plain("123", 123)
        );
        assert_eq!(
            id(
                System::Sge,
                "Your job 4242 (\"shoal-worker\") has been submitted\n"
            ),
            plain("4242", 4242)
        );
        assert_eq!(
            id(
                System::Sge,
                "Your job-array 4243.1-3:1 (\"shoal-worker\") has been submitted\n"
            ),
            plain("4243", 4243)
        );
    }

    #[test]
    fn site_wrapper_printing_digits_first() {
        let out = "Project quota 2024: 50% used\nSubmitted batch job 77\n";
        assert_eq!(id(System::Slurm, out), plain("77", 77));
        // Unknown wording: the last line wins, not the banner.
        let out = "Project quota 2024: 50% used\n77.pbs01\n";
        assert_eq!(id(System::Pbs, out), plain("77.pbs01", 77));
        // A trailer after the known phrase does not matter either.
        let out = "Submitted batch job 78\nRemaining 2024 core-hours\n";
        assert_eq!(id(System::Slurm, out), plain("78", 78));
    }

    #[test]
    fn user_pattern_overrides_and_must_match() {
        let p = IdPattern::parse("ticket={id} ").unwrap_or_else(|e| panic!("{e}"));
        let out = "Submitted batch job 1\nticket=99 queued\n";
        assert_eq!(
            parse_job_id(System::Slurm, out, Some(&p)).map(|j| j.number),
            Ok(99)
        );
        let err = parse_job_id(System::Slurm, "Submitted batch job 1\n", Some(&p))
            .expect_err("no ticket")
            .to_string();
        assert!(
            err.contains("ticket={id} ") && err.contains("Submitted batch job 1"),
            "{err}"
        );
        assert!(matches!(
            IdPattern::parse("no placeholder"),
            Err(JobIdError::BadPattern { .. })
        ));
        assert!(matches!(
            IdPattern::parse("{id} {id}"),
            Err(JobIdError::BadPattern { .. })
        ));
    }

    #[test]
    fn no_id_shows_the_output_and_the_fix() {
        let err = parse_job_id(System::Slurm, "sbatch: error: quota exceeded\n", None)
            .expect_err("no id")
            .to_string();
        assert!(
            err.contains("quota exceeded") && err.contains("job_id_pattern"),
            "{err}"
        );
        assert!(parse_job_id(System::Lsf, "", None).is_err());
        // Digits inside a word are not ids.
        assert!(parse_job_id(System::Slurm, "node42 busy\n", None).is_err());
    }

    #[test]
    fn display_keeps_the_cluster() {
        let j = JobId {
            id: "5".into(),
            number: 5,
            cluster: Some("c1".into()),
        };
        assert_eq!(j.to_string(), "5;c1");
    }
}
