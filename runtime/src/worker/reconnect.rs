//! Reconnecting to a lost scheduler: how long is left, and when to give up.

use std::time::{Duration, Instant};

/// When a worker that lost its scheduler gives up reconnecting: after the death timeout
/// counted from the last contact.
#[derive(Debug, Clone)]
pub struct Reconnect {
    death_timeout: Duration,
    last_contact: Instant,
    last_error: String,
}

impl Reconnect {
    /// Counting from `now`.
    pub fn new(death_timeout: Duration, now: Instant) -> Self {
        Reconnect {
            death_timeout,
            last_contact: now,
            last_error: String::new(),
        }
    }

    /// The scheduler was last heard from at `at`.
    pub fn contact(&mut self, at: Instant) {
        self.last_contact = at;
    }

    /// An attempt to reach the scheduler failed, or a session was lost, for `reason`.
    pub fn failed(&mut self, reason: String) {
        self.last_error = reason;
    }

    /// Time left before giving up.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.death_timeout
            .saturating_sub(now.saturating_duration_since(self.last_contact))
    }

    /// `Some(reason)` once the scheduler has been gone past the death timeout.
    pub fn give_up(&self, now: Instant) -> Option<String> {
        (now.saturating_duration_since(self.last_contact) > self.death_timeout).then(|| {
            format!(
                "no scheduler for {:?} (--death-timeout): {}",
                self.death_timeout, self.last_error
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_gives_up_after_the_death_timeout_since_the_last_contact() {
        let timeout = Duration::from_secs(60);
        let start = Instant::now();
        let mut reconnect = Reconnect::new(timeout, start);
        reconnect.failed("connection refused".into());
        assert_eq!(
            reconnect.remaining(start + Duration::from_secs(20)),
            Duration::from_secs(40)
        );
        assert_eq!(reconnect.give_up(start + timeout), None);
        reconnect.contact(start + timeout);
        assert_eq!(reconnect.give_up(start + 2 * timeout), None);
        let reason = reconnect.give_up(start + 2 * timeout + Duration::from_millis(1));
        assert_eq!(
            reason.as_deref(),
            Some("no scheduler for 60s (--death-timeout): connection refused")
        );
    }
}
