//! Walltimes and other durations: validation, per-system formats, seconds.
//!
//! Accepted walltimes, for every system: `H:MM:SS` (any number of hours,
//! minutes and seconds as two digits below 60) and `D-H:MM:SS` (days first,
//! as SLURM writes them). LSF, whose native form is `HH:MM`, also accepts
//! `H:MM` as hours and minutes. Elsewhere a two-field `30:00` is rejected: it
//! means 30 minutes to SLURM but 30 hours to LSF. Plain numbers are rejected
//! for the same reason (SLURM reads `30` as minutes).

use std::fmt;

use thiserror::Error;

/// Why a walltime or duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalltimeError {
    /// Not one of the accepted forms.
    #[error("invalid walltime {value:?}: {reason}; expected {accepted}")]
    Invalid {
        /// The string as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The forms accepted for this system.
        accepted: &'static str,
    },
    /// Not a duration (`lifetime`, `lifetime_stagger`).
    #[error("invalid duration {value:?}; expected whole seconds (3600), a number with s, m or h (90m), or H:MM:SS")]
    Duration {
        /// The string as given.
        value: String,
    },
}

/// How a system writes walltimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalltimeStyle {
    /// `HH:MM:SS` (SLURM, PBS, SGE).
    HoursMinutesSeconds,
    /// `HH:MM` (LSF `-W`).
    HoursMinutes,
}

impl WalltimeStyle {
    /// The accepted input forms, for error messages.
    pub fn accepted(self) -> &'static str {
        match self {
            WalltimeStyle::HoursMinutesSeconds => {
                "H:MM:SS or D-H:MM:SS, e.g. 00:30:00, 48:00:00, 2-00:00:00"
            }
            WalltimeStyle::HoursMinutes => {
                "H:MM, H:MM:SS or D-H:MM:SS, e.g. 00:30, 12:00, 1-00:00:00"
            }
        }
    }

    /// The default walltime as users of this system write it.
    pub fn default_walltime(self) -> &'static str {
        match self {
            WalltimeStyle::HoursMinutesSeconds => "00:30:00",
            WalltimeStyle::HoursMinutes => "00:30",
        }
    }
}

/// A positive walltime, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Walltime(u64);

fn two_digits_below_60(field: &str) -> Option<u64> {
    if field.len() != 2 || !field.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    field.parse().ok().filter(|v| *v < 60)
}

fn number(field: &str) -> Option<u64> {
    if field.is_empty() || field.len() > 9 || !field.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

impl Walltime {
    /// A walltime of `seconds` (`None` for zero).
    pub fn from_seconds(seconds: u64) -> Option<Walltime> {
        (seconds > 0).then_some(Walltime(seconds))
    }

    /// Parses a walltime in the forms accepted for `style` (module doc).
    ///
    /// # Errors
    /// [`WalltimeError::Invalid`] naming the value and the accepted forms.
    pub fn parse(value: &str, style: WalltimeStyle) -> Result<Walltime, WalltimeError> {
        let invalid = |reason| WalltimeError::Invalid {
            value: value.to_string(),
            reason,
            accepted: style.accepted(),
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if value.chars().any(char::is_whitespace) {
            return Err(invalid("it contains a space"));
        }
        let (days, clock) = match value.split_once('-') {
            Some((d, rest)) => (
                number(d).ok_or_else(|| invalid("the days before '-' are not a number"))?,
                rest,
            ),
            None => (0, value),
        };
        let fields: Vec<&str> = clock.split(':').collect();
        let hours_field = fields[0];
        let hours = number(hours_field).ok_or_else(|| invalid("the hours are not a number"))?;
        let (minutes, seconds) = match (fields.len(), style) {
            (3, _) => {
                let m = two_digits_below_60(fields[1])
                    .ok_or_else(|| invalid("minutes must be two digits from 00 to 59"))?;
                let s = two_digits_below_60(fields[2])
                    .ok_or_else(|| invalid("seconds must be two digits from 00 to 59"))?;
                (m, s)
            }
            (2, WalltimeStyle::HoursMinutes) => {
                let m = two_digits_below_60(fields[1])
                    .ok_or_else(|| invalid("minutes must be two digits from 00 to 59"))?;
                (m, 0)
            }
            (2, WalltimeStyle::HoursMinutesSeconds) => {
                return Err(invalid(
                    "two fields are ambiguous (minutes:seconds to SLURM, hours:minutes to LSF); write all three",
                ))
            }
            (1, _) => {
                return Err(invalid(
                    "a bare number is ambiguous (SLURM reads it as minutes); write H:MM:SS",
                ))
            }
            _ => return Err(invalid("too many ':' fields")),
        };
        let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
        Walltime::from_seconds(total).ok_or_else(|| invalid("it is zero"))
    }

    /// Total seconds.
    pub fn seconds(self) -> u64 {
        self.0
    }

    /// `HH:MM:SS`, hours beyond 24 kept as hours (`48:00:00`).
    pub fn hms(self) -> String {
        let s = self.0;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }

    /// `HH:MM` for LSF, rounding leftover seconds up to a whole minute.
    pub fn hm_ceil(self) -> String {
        let minutes = self.0.div_ceil(60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl fmt::Display for Walltime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hms())
    }
}

/// Parses a duration in seconds: `3600`, `90s`, `45m`, `2h` or `H:MM:SS`.
/// Zero is allowed (it disables `lifetime`).
///
/// # Errors
/// [`WalltimeError::Duration`] naming the value and the accepted forms.
pub fn parse_duration(value: &str) -> Result<u64, WalltimeError> {
    let bad = || WalltimeError::Duration {
        value: value.to_string(),
    };
    if value.contains(':') {
        return Walltime::parse(value, WalltimeStyle::HoursMinutesSeconds)
            .map(Walltime::seconds)
            .map_err(|_| bad());
    }
    let (digits, factor) = match value.as_bytes().last() {
        Some(b's') => (&value[..value.len() - 1], 1),
        Some(b'm') => (&value[..value.len() - 1], 60),
        Some(b'h') => (&value[..value.len() - 1], 3600),
        _ => (value, 1),
    };
    number(digits)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HMS: WalltimeStyle = WalltimeStyle::HoursMinutesSeconds;
    const HM: WalltimeStyle = WalltimeStyle::HoursMinutes;

    fn secs(v: &str, style: WalltimeStyle) -> u64 {
        Walltime::parse(v, style)
            .map(Walltime::seconds)
            .unwrap_or(0)
    }

    #[test]
    fn accepted_forms_convert_to_seconds() {
        assert_eq!(secs("00:30:00", HMS), 1800);
        assert_eq!(secs("1:02:03", HMS), 3723);
        assert_eq!(secs("48:00:00", HMS), 172_800);
        assert_eq!(secs("2-01:00:00", HMS), 176_400);
        assert_eq!(secs("00:30", HM), 1800);
        assert_eq!(secs("12:00", HM), 43_200);
        assert_eq!(secs("00:30:00", HM), 1800);
        assert_eq!(secs("1-00:00:00", HM), 86_400);
    }

    #[test]
    fn bad_walltimes_name_value_and_forms() {
        for (bad, style) in [
            ("25:61:00", HMS),
            ("1 day", HMS),
            ("30:00", HMS),
            ("30", HMS),
            ("", HMS),
            ("00:00:00", HMS),
            ("1:2:3", HMS),
            ("aa:00:00", HMS),
            ("00:30:60", HMS),
            ("1:00:00:00", HMS),
            ("12:60", HM),
            ("30", HM),
            ("x-00:00:00", HM),
        ] {
            let err = Walltime::parse(bad, style).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains(style.accepted()), "{err}");
        }
        let err = Walltime::parse("25:61:00", HMS)
            .expect_err("minutes")
            .to_string();
        assert!(err.contains("minutes"), "{err}");
    }

    #[test]
    fn formats_per_system() {
        let w = Walltime::from_seconds(172_800 + 61).unwrap_or(Walltime(1));
        assert_eq!(w.hms(), "48:01:01");
        assert_eq!(w.hm_ceil(), "48:02");
        let half = Walltime::from_seconds(1800).unwrap_or(Walltime(1));
        assert_eq!(half.hm_ceil(), "00:30");
        assert_eq!(half.to_string(), "00:30:00");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("45m"), Ok(2700));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("01:00:00"), Ok(3600));
        for bad in ["", "1 h", "-5", "1d", "h", "1.5h"] {
            let err = parse_duration(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
