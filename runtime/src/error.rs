//! Typed errors rendered for people: an error and its causes on one line.

use std::error::Error;
use std::fmt::Write;

/// `error` followed by each of its sources, joined by `: ` (the form the `shoal` command
/// prints), for places that keep a cause as text: a reconnect reason, a fetch failure.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_the_error() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "cannot open the store: disk full");
    }

    #[test]
    fn an_error_without_cause_is_its_message() {
        assert_eq!(chain(&std::io::Error::other("gone")), "gone");
    }
}
