//! Walltime-aware workers: how long a worker lives before leaving gracefully.
//!
//! When every worker of a job array is killed at the walltime, the scheduler
//! loses them all in the same second (dask's `KilledWorker`). Instead each
//! worker is started with `--lifetime L --lifetime-stagger S`: it retires at a
//! random moment in `[L - S, L + S]`, handing its data over first.
//!
//! # The default ([`auto_lifetime`])
//!
//! - margin `M = max(60 s, 5% of the walltime)` (rounded up): the last
//!   worker must have started leaving `M` before the batch system kills it;
//! - stagger `S = M / 2`;
//! - lifetime `L = walltime - M - S`, so departures spread over
//!   `[walltime - M - 2S, walltime - M]`.
//!
//! A 30-minute job: M = 90 s, S = 45 s, L = 1665 s (leave between 27:00 and
//! 28:30). When `L - S` would be under 60 s the walltime is too short for a
//! graceful exit and no lifetime is set. `lifetime = 0` disables it; an
//! explicit lifetime must end (with its stagger) before the walltime.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shortest a worker is allowed to live under the automatic lifetime.
pub const MIN_AUTO_LIFETIME_S: u64 = 60;

/// A worker lifetime and stagger, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetime {
    /// Seconds after start at which the worker retires (on average).
    pub lifetime_s: u64,
    /// Maximum random deviation from `lifetime_s`, each way.
    pub stagger_s: u64,
}

/// What the user asked for through `lifetime` / `lifetime_stagger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LifetimeSetting {
    /// Derived from the walltime by [`auto_lifetime`] (the default).
    #[default]
    Auto,
    /// `lifetime = 0`: workers run until the walltime kills them.
    Disabled,
    /// An explicit lifetime and stagger (stagger defaults to 0).
    Fixed(Lifetime),
}

/// An explicit lifetime that does not fit into the walltime.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LifetimeError {
    /// `lifetime + lifetime_stagger` reaches the walltime.
    #[error("lifetime {lifetime_s}s plus lifetime_stagger {stagger_s}s reaches the walltime of {walltime_s}s: workers would be killed instead of leaving; choose a lifetime below {limit}s, or lifetime = 0 to disable it", limit = walltime_s.saturating_sub(*stagger_s))]
    TooLong {
        /// The lifetime asked for.
        lifetime_s: u64,
        /// The stagger asked for.
        stagger_s: u64,
        /// The job's walltime.
        walltime_s: u64,
    },
    /// The stagger is larger than the lifetime.
    #[error("lifetime_stagger {stagger_s}s is larger than lifetime {lifetime_s}s; use a stagger of at most the lifetime")]
    StaggerTooLarge {
        /// The lifetime asked for.
        lifetime_s: u64,
        /// The stagger asked for.
        stagger_s: u64,
    },
}

/// The default lifetime for a walltime of `walltime_s` seconds (module doc),
/// or `None` when the walltime is too short for a graceful exit.
pub fn auto_lifetime(walltime_s: u64) -> Option<Lifetime> {
    let margin = (walltime_s.div_ceil(20)).max(60);
    let stagger = margin / 2;
    let lifetime = walltime_s.checked_sub(margin + stagger)?;
    if lifetime.checked_sub(stagger)? < MIN_AUTO_LIFETIME_S {
        return None;
    }
    Some(Lifetime {
        lifetime_s: lifetime,
        stagger_s: stagger,
    })
}

/// Resolves the user's setting against the walltime.
///
/// # Errors
/// [`LifetimeError`] when an explicit lifetime does not fit.
pub fn resolve(
    setting: LifetimeSetting,
    walltime_s: u64,
) -> Result<Option<Lifetime>, LifetimeError> {
    match setting {
        LifetimeSetting::Auto => Ok(auto_lifetime(walltime_s)),
        LifetimeSetting::Disabled => Ok(None),
        LifetimeSetting::Fixed(l) => {
            if l.stagger_s > l.lifetime_s {
                return Err(LifetimeError::StaggerTooLarge {
                    lifetime_s: l.lifetime_s,
                    stagger_s: l.stagger_s,
                });
            }
            if l.lifetime_s + l.stagger_s >= walltime_s {
                return Err(LifetimeError::TooLong {
                    lifetime_s: l.lifetime_s,
                    stagger_s: l.stagger_s,
                    walltime_s,
                });
            }
            Ok(Some(l))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(lifetime_s: u64, stagger_s: u64) -> Lifetime {
        Lifetime {
            lifetime_s,
            stagger_s,
        }
    }

    #[test]
    fn thirty_minutes_leaves_between_27_and_28_30() {
        assert_eq!(auto_lifetime(1800), Some(lt(1665, 45)));
    }

    #[test]
    fn short_walltimes_use_the_60_second_floor() {
        // 5 minutes: 5% is 15 s, so the 60 s margin applies.
        assert_eq!(auto_lifetime(300), Some(lt(210, 30)));
    }

    #[test]
    fn a_day_uses_five_percent() {
        // 5% of 86400 is 4320, stagger 2160.
        assert_eq!(auto_lifetime(86_400), Some(lt(79_920, 2160)));
    }

    #[test]
    fn every_worker_leaves_before_the_walltime() {
        for w in [121, 180, 300, 1800, 3600, 7201, 86_400, 7 * 86_400] {
            if let Some(l) = auto_lifetime(w) {
                let margin = (w.div_ceil(20)).max(60);
                assert!(l.lifetime_s + l.stagger_s + margin <= w, "{w}");
                assert!(l.lifetime_s - l.stagger_s >= MIN_AUTO_LIFETIME_S, "{w}");
            }
        }
    }

    #[test]
    fn too_short_walltimes_get_no_lifetime() {
        assert_eq!(auto_lifetime(120), None);
        assert_eq!(auto_lifetime(59), None);
        assert_eq!(auto_lifetime(0), None);
    }

    #[test]
    fn explicit_settings() {
        assert_eq!(resolve(LifetimeSetting::Disabled, 3600), Ok(None));
        assert_eq!(
            resolve(LifetimeSetting::Fixed(lt(3000, 100)), 3600),
            Ok(Some(lt(3000, 100)))
        );
        let err = resolve(LifetimeSetting::Fixed(lt(3500, 100)), 3600)
            .expect_err("too long")
            .to_string();
        assert!(
            err.contains("3500s") && err.contains("below 3500s"),
            "{err}"
        );
        assert!(matches!(
            resolve(LifetimeSetting::Fixed(lt(10, 20)), 3600),
            Err(LifetimeError::StaggerTooLarge { .. })
        ));
    }
}
