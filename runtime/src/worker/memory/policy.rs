//! When a worker spills, pauses and terminates: the thresholds (fractions of the memory
//! limit) and the pure decision taken from one memory sample.

use std::time::Duration;

/// Fractions of the memory limit at which the worker acts; `None` switches one off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Managed bytes (results held) above this: least-recently-used results go to disk.
    pub target: Option<f64>,
    /// Process RSS above this: results go to disk until RSS is back under `target`.
    pub spill: Option<f64>,
    /// Process RSS above this: start no task and fetch no input until it falls.
    pub pause: Option<f64>,
    /// Process RSS above this: the worker is restarted.
    pub terminate: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            target: Some(0.60),
            spill: Some(0.70),
            pause: Some(0.80),
            terminate: Some(0.95),
        }
    }
}

impl Thresholds {
    /// Spilling is on when either spill threshold is.
    pub fn spills(&self) -> bool {
        self.target.is_some() || self.spill.is_some()
    }
}

/// How the worker manages its memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPolicy {
    /// The target, spill, pause and terminate thresholds.
    pub thresholds: Thresholds,
    /// Most bytes on disk; `None`: no cap.
    pub max_spill: Option<u64>,
    /// Compress spilled values (lz4) when it pays.
    pub compress: bool,
    /// How often RSS is sampled.
    pub monitor_interval: Duration,
    /// Spill even where the scratch directory is on a network or parallel file system.
    pub allow_network_spill: bool,
    /// Above `terminate`, a supervising process (the nanny) kills and restarts this
    /// process; the worker itself then leaves the decision to it.
    pub supervised: bool,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy {
            thresholds: Thresholds::default(),
            max_spill: None,
            compress: false,
            monitor_interval: Duration::from_millis(100),
            allow_network_spill: false,
            supervised: false,
        }
    }
}

/// What one memory sample calls for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Spill least-recently-used results until managed bytes are at most this.
    pub evict_to: Option<u64>,
    /// Start nothing new (RSS above `pause`).
    pub pause: bool,
    /// Restart the worker (RSS above `terminate`).
    pub terminate: bool,
}

/// Decide from the limit, the process's RSS and the managed bytes. A zero limit
/// disables everything.
pub fn assess(limit: u64, t: &Thresholds, rss: u64, managed: u64) -> Assessment {
    if limit == 0 {
        return Assessment::default();
    }
    let at = |fraction: Option<f64>| fraction.map(|f| (limit as f64 * f) as u64);
    let mut evict_to = at(t.target).filter(|target| managed > *target);
    if let Some(spill) = at(t.spill).filter(|spill| rss > *spill) {
        // Bring RSS back under the target (or the spill threshold without one) by
        // moving that much managed data out.
        let goal = at(t.target).unwrap_or(spill);
        let wanted = managed.saturating_sub(rss - goal.min(rss));
        evict_to = Some(evict_to.map_or(wanted, |e| e.min(wanted)));
    }
    Assessment {
        evict_to,
        pause: at(t.pause).is_some_and(|p| rss > p),
        terminate: at(t.terminate).is_some_and(|p| rss > p),
    }
}

/// The lowest RSS at which [`assess`] acts (spill, pause or terminate), if any.
pub fn first_rss_threshold(limit: u64, t: &Thresholds) -> Option<u64> {
    if limit == 0 {
        return None;
    }
    [t.spill, t.pause, t.terminate]
        .into_iter()
        .flatten()
        .map(|f| (limit as f64 * f) as u64)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_first_rss_threshold_is_the_lowest_one_set() {
        let t = Thresholds::default();
        assert_eq!(first_rss_threshold(1000, &t), Some(700));
        let pause_only = Thresholds {
            spill: None,
            ..Thresholds::default()
        };
        assert_eq!(first_rss_threshold(1000, &pause_only), Some(800));
        assert_eq!(first_rss_threshold(0, &t), None);
    }

    #[test]
    fn nothing_happens_below_the_thresholds_or_without_a_limit() {
        let t = Thresholds::default();
        assert_eq!(assess(GIB, &t, GIB / 2, GIB / 2), Assessment::default());
        assert_eq!(assess(0, &t, 100 * GIB, 100 * GIB), Assessment::default());
    }

    #[test]
    fn managed_above_target_spills_down_to_target() {
        let t = Thresholds::default();
        let a = assess(1000, &t, 650, 650);
        assert_eq!(a.evict_to, Some(600));
        assert!(!a.pause);
    }

    #[test]
    fn rss_above_spill_spills_the_excess_over_target() {
        let t = Thresholds::default();
        // 750 RSS of which 500 managed: 150 over the target of 600 must go.
        let a = assess(1000, &t, 750, 500);
        assert_eq!(a.evict_to, Some(350));
        // Unmanaged memory alone above spill: everything managed goes, and no more.
        assert_eq!(assess(1000, &t, 900, 100).evict_to, Some(0));
    }

    #[test]
    fn pause_and_terminate_follow_rss() {
        let t = Thresholds::default();
        let a = assess(1000, &t, 850, 0);
        assert!(a.pause && !a.terminate);
        let a = assess(1000, &t, 960, 0);
        assert!(a.pause && a.terminate);
    }

    #[test]
    fn switched_off_thresholds_never_fire() {
        let t = Thresholds {
            target: None,
            spill: None,
            pause: Some(0.8),
            terminate: None,
        };
        let a = assess(1000, &t, 990, 990);
        assert_eq!(a.evict_to, None);
        assert!(a.pause && !a.terminate);
        assert!(!t.spills());
    }
}
