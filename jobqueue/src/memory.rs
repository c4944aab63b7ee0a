//! Memory sizes: exact parsing of what users write, and each batch system's
//! request format.
//!
//! # Units
//!
//! A size is a whole or decimal number written directly before its unit:
//!
//! - none or `B`: bytes;
//! - `kB`, `MB`, `GB`, `TB`, `PB` and the single letters `K`, `M`, `G`, `T`,
//!   `P`: powers of 1000 (decimal, as in Dask, so a config copied from
//!   dask-jobqueue keeps meaning the same number of bytes);
//! - `KiB`, `MiB`, `GiB`, `TiB`, `PiB` and `Ki`, `Mi`, `Gi`, `Ti`, `Pi`:
//!   powers of 1024.
//!
//! Units are case-insensitive. Spaces, signs, exponents (`1e9`), zero and
//! sizes above `u64::MAX` bytes are rejected. Fractions are exact: `1.5GB` is
//! 1 500 000 000 bytes; a fraction of a byte rounds up.
//!
//! # Requests
//!
//! Every conversion into a batch system's request rounds UP, so a job never
//! asks for less than the user wrote. SLURM and PBS read `G`/`GB` as GiB, so
//! `100GB` (1e11 bytes, 93.13 GiB) becomes `--mem=94G` / `mem=94GB`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The accepted forms, quoted in every error message.
pub const ACCEPTED_MEMORY_FORMS: &str = "a number directly followed by a unit: \
B or none (bytes); kB, MB, GB, TB, PB or K, M, G, T, P (powers of 1000); \
KiB, MiB, GiB, TiB, PiB or Ki, Mi, Gi, Ti, Pi (powers of 1024); e.g. 100GB, 1.5GiB, 512MiB";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Why a memory string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    /// The string does not have the shape `NUMBER[UNIT]`.
    #[error(
        "invalid memory size {value:?}: {reason}; expected {}",
        ACCEPTED_MEMORY_FORMS
    )]
    Invalid {
        /// The string as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The number is fine but the unit is not one of the accepted ones.
    #[error(
        "invalid memory size {value:?}: unknown unit {unit:?}; expected {}",
        ACCEPTED_MEMORY_FORMS
    )]
    UnknownUnit {
        /// The string as given.
        value: String,
        /// The unit part.
        unit: String,
    },
    /// A size of zero bytes cannot be requested.
    #[error(
        "invalid memory size {value:?}: it is zero; expected a positive size, {}",
        ACCEPTED_MEMORY_FORMS
    )]
    Zero {
        /// The string as given.
        value: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("invalid memory size {value:?}: larger than 16 EiB")]
    TooLarge {
        /// The string as given.
        value: String,
    },
}

/// A positive number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Memory(u64);

/// The unit LSF uses for `-M` (`LSF_UNIT_FOR_LIMITS` in `lsf.conf`).
///
/// LSF limits are converted with powers of 1000, as dask-jobqueue does: if a
/// site's LSF reads them as powers of 1024 the job asks for slightly more
/// than written, never less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LsfUnit {
    /// Kilobytes, LSF's default.
    #[default]
    KB,
    /// Megabytes.
    MB,
    /// Gigabytes.
    GB,
    /// Terabytes.
    TB,
}

impl LsfUnit {
    /// The accepted spellings, for error messages.
    pub const ACCEPTED: &'static str = "KB, MB, GB or TB (as LSF_UNIT_FOR_LIMITS in lsf.conf)";

    fn bytes(self) -> u64 {
        match self {
            LsfUnit::KB => 1_000,
            LsfUnit::MB => 1_000_000,
            LsfUnit::GB => 1_000_000_000,
            LsfUnit::TB => 1_000_000_000_000,
        }
    }
}

impl FromStr for LsfUnit {
    type Err = ();

    /// Case-insensitive `KB`, `MB`, `GB`, `TB` (also `K`, `M`, `G`, `T`).
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "kb" | "k" => Ok(LsfUnit::KB),
            "mb" | "m" => Ok(LsfUnit::MB),
            "gb" | "g" => Ok(LsfUnit::GB),
            "tb" | "t" => Ok(LsfUnit::TB),
            _ => Err(()),
        }
    }
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "p" | "pb" => 1_000_000_000_000_000,
        "ki" | "kib" => KIB,
        "mi" | "mib" => MIB,
        "gi" | "gib" => GIB,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => return None,
    };
    Some(m)
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a / b + u64::from(a % b != 0)
}

impl Memory {
    /// Exactly `bytes` bytes.
    ///
    /// # Errors
    /// `None` for zero.
    pub fn from_bytes(bytes: u64) -> Option<Memory> {
        (bytes > 0).then_some(Memory(bytes))
    }

    /// Parses a size such as `100GB`, `1.5GiB` or `4096` (see the module doc).
    ///
    /// # Errors
    /// [`MemoryError`] naming the value and the accepted forms.
    pub fn parse(value: &str) -> Result<Memory, MemoryError> {
        let invalid = |reason| MemoryError::Invalid {
            value: value.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if value.chars().any(char::is_whitespace) {
            return Err(invalid(
                "it contains a space; write the unit right after the number, as in 10GB",
            ));
        }
        if value.starts_with(['-', '+']) {
            return Err(invalid("signs are not accepted"));
        }
        let int_len = value.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return Err(invalid("it does not start with a digit"));
        }
        let (int_part, rest) = value.split_at(int_len);
        let (frac_part, unit) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return Err(invalid("a digit must follow the decimal point"));
                }
                after.split_at(n)
            }
            None => ("", rest),
        };
        let mut unit_chars = unit.chars();
        if matches!(unit_chars.next(), Some('e' | 'E'))
            && matches!(unit_chars.next(), Some('0'..='9' | '+' | '-'))
        {
            return Err(invalid(
                "exponent notation is not accepted; write 1GB instead of 1e9",
            ));
        }
        let Some(multiplier) = unit_multiplier(unit) else {
            return Err(MemoryError::UnknownUnit {
                value: value.to_string(),
                unit: unit.to_string(),
            });
        };
        let too_large = || MemoryError::TooLarge {
            value: value.to_string(),
        };
        if frac_part.len() > 18 {
            return Err(invalid("more than 18 digits after the decimal point"));
        }
        let digits = format!("{int_part}{frac_part}");
        let mantissa: u128 = digits.parse().map_err(|_| too_large())?;
        let scale = 10u128.pow(frac_part.len() as u32);
        let product = mantissa
            .checked_mul(u128::from(multiplier))
            .ok_or_else(too_large)?;
        let bytes = product / scale + u128::from(product % scale != 0);
        let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
        if bytes == 0 {
            return Err(MemoryError::Zero {
                value: value.to_string(),
            });
        }
        Ok(Memory(bytes))
    }

    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The limit of one of `processes` worker processes sharing this memory,
    /// rounded down so that the workers together never exceed the job.
    /// `processes` of 0 is treated as 1.
    pub fn per_process(self, processes: u32) -> Memory {
        Memory((self.0 / u64::from(processes.max(1))).max(1))
    }

    /// SLURM `--mem` value: binary units with suffix `G` from 10 GiB, `M`
    /// from 10 MiB, else `K`, rounded up (`100GB` -> `94G`).
    pub fn slurm(self) -> String {
        let b = self.0;
        if b >= 10 * GIB {
            format!("{}G", ceil_div(b, GIB))
        } else if b >= 10 * MIB {
            format!("{}M", ceil_div(b, MIB))
        } else {
            format!("{}K", ceil_div(b, KIB))
        }
    }

    /// PBS/Torque `mem=` value: binary units with suffix `GB` from 10 GiB,
    /// `MB` from 10 MiB, `kB` from 10 KiB, else `B`, rounded up
    /// (`100GB` -> `94GB`).
    pub fn pbs(self) -> String {
        let b = self.0;
        if b >= 10 * GIB {
            format!("{}GB", ceil_div(b, GIB))
        } else if b >= 10 * MIB {
            format!("{}MB", ceil_div(b, MIB))
        } else if b >= 10 * KIB {
            format!("{}kB", ceil_div(b, KIB))
        } else {
            format!("{b}B")
        }
    }

    /// LSF `-M` value: a plain number in the site's unit, rounded up
    /// (`100GB` with MB units -> `100000`).
    pub fn lsf(self, unit: LsfUnit) -> String {
        ceil_div(self.0, unit.bytes()).to_string()
    }

    /// Whole MiB rounded up, HTCondor's `request_memory` unit.
    pub fn mib_ceil(self) -> u64 {
        ceil_div(self.0, MIB)
    }

    /// Whole KiB rounded up, HTCondor's `request_disk` unit.
    pub fn kib_ceil(self) -> u64 {
        ceil_div(self.0, KIB)
    }

    /// A short binary rendering for people, two decimals (`93.13GiB`).
    pub fn human(self) -> String {
        let units = [
            (1u64 << 40, "TiB"),
            (GIB, "GiB"),
            (MIB, "MiB"),
            (KIB, "KiB"),
        ];
        for (size, name) in units {
            if self.0 >= size {
                return format!("{:.2}{name}", self.0 as f64 / size as f64);
            }
        }
        format!("{}B", self.0)
    }
}

impl FromStr for Memory {
    type Err = MemoryError;
    fn from_str(s: &str) -> Result<Self, MemoryError> {
        Memory::parse(s)
    }
}

impl fmt::Display for Memory {
    /// `N bytes (H)`, e.g. `100000000000 bytes (93.13GiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes ({})", self.0, self.human())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> u64 {
        Memory::parse(s).map(Memory::bytes).unwrap_or(0)
    }

    #[test]
    fn decimal_binary_and_plain_units() {
        assert_eq!(b("100GB"), 100_000_000_000);
        assert_eq!(b("100G"), 100_000_000_000);
        assert_eq!(b("100gb"), 100_000_000_000);
        assert_eq!(b("2kB"), 2_000);
        assert_eq!(b("3MB"), 3_000_000);
        assert_eq!(b("1TB"), 1_000_000_000_000);
        assert_eq!(b("1KiB"), 1024);
        assert_eq!(b("1MiB"), 1 << 20);
        assert_eq!(b("2GiB"), 2 << 30);
        assert_eq!(b("2Gi"), 2 << 30);
        assert_eq!(b("1TiB"), 1 << 40);
        assert_eq!(b("4096"), 4096);
        assert_eq!(b("4096B"), 4096);
    }

    #[test]
    fn fractions_are_exact_and_round_up_to_a_byte() {
        assert_eq!(b("1.5GB"), 1_500_000_000);
        assert_eq!(b("1.5GiB"), 3 << 29);
        assert_eq!(b("0.001kB"), 1);
        assert_eq!(b("1.5"), 2);
        assert_eq!(b("0.1KiB"), 103); // 102.4 -> 103
    }

    #[test]
    fn bad_inputs_name_value_and_forms() {
        for bad in [
            "10 GB", "1e9", "-5GB", "abc", "", "+5GB", "1.GB", " 5GB", "1E3",
        ] {
            let err = Memory::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("GiB"), "{err}");
        }
        let err = Memory::parse("1e9").expect_err("exp").to_string();
        assert!(err.contains("exponent"), "{err}");
        let err = Memory::parse("10 GB").expect_err("space").to_string();
        assert!(err.contains("space"), "{err}");
        assert!(matches!(
            Memory::parse("5XB"),
            Err(MemoryError::UnknownUnit { ref unit, .. }) if unit == "XB"
        ));
        assert!(matches!(
            Memory::parse("0GB"),
            Err(MemoryError::Zero { .. })
        ));
        assert!(matches!(
            Memory::parse("20000PB"),
            Err(MemoryError::TooLarge { .. })
        ));
    }

    #[test]
    fn slurm_rounds_up_in_binary_units() {
        let m = |s| Memory::parse(s).map(Memory::slurm).unwrap_or_default();
        assert_eq!(m("100GB"), "94G");
        assert_eq!(m("10GiB"), "10G");
        assert_eq!(m("10737418241"), "11G"); // one byte over 10 GiB
        assert_eq!(m("4GB"), "3815M"); // 3814.7 MiB
        assert_eq!(m("1MB"), "977K"); // 976.56 KiB
        assert_eq!(m("1"), "1K");
    }

    #[test]
    fn pbs_rounds_up_in_binary_units() {
        let m = |s| Memory::parse(s).map(Memory::pbs).unwrap_or_default();
        assert_eq!(m("100GB"), "94GB");
        assert_eq!(m("4GB"), "3815MB");
        assert_eq!(m("1MB"), "977kB");
        assert_eq!(m("5000"), "5000B");
    }

    #[test]
    fn lsf_uses_site_units_rounding_up() {
        let m = Memory::parse("100GB").unwrap_or(Memory(1));
        assert_eq!(m.lsf(LsfUnit::MB), "100000");
        assert_eq!(m.lsf(LsfUnit::KB), "100000000");
        assert_eq!(m.lsf(LsfUnit::GB), "100");
        let odd = Memory::parse("1500MB").unwrap_or(Memory(1));
        assert_eq!(odd.lsf(LsfUnit::GB), "2");
        assert_eq!("mb".parse::<LsfUnit>(), Ok(LsfUnit::MB));
        assert!("MiB".parse::<LsfUnit>().is_err());
    }

    #[test]
    fn condor_units_round_up() {
        let m = Memory::parse("4GB").unwrap_or(Memory(1));
        assert_eq!(m.mib_ceil(), 3815);
        assert_eq!(m.kib_ceil(), 3_906_250);
        assert_eq!(Memory(1025).kib_ceil(), 2);
    }

    #[test]
    fn per_process_limit_divides_and_renders_binary() {
        let m = Memory::parse("100GB").unwrap_or(Memory(1));
        let each = m.per_process(4);
        assert_eq!(each.bytes(), 25_000_000_000);
        assert_eq!(each.human(), "23.28GiB");
        assert_eq!(Memory(10).per_process(3).bytes(), 3);
        assert_eq!(m.per_process(0), m);
    }
}
