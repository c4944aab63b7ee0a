//! What a worker fetched from its peers, by transport, for its heartbeats (the dashboard's
//! transfers view and `/metrics`).

use super::memory::policy::Thresholds;
use bytes::Bytes;
use shoal_comm::ids::TaskId;
use shoal_comm::message::TransferMetrics;

/// Running totals of fetched results.
#[derive(Debug, Default)]
pub struct Fetched(TransferMetrics);

impl Fetched {
    /// Results that arrived over `transport` ("TCP" or "MPI", as the connection names it).
    pub fn add(&mut self, transport: &str, found: &[(TaskId, Bytes)]) {
        let bytes: u64 = found.iter().map(|(_, b)| b.len() as u64).sum();
        let count = found.len() as u64;
        let m = &mut self.0;
        if transport.eq_ignore_ascii_case("mpi") {
            m.mpi_count += count;
            m.mpi_bytes += bytes;
        } else {
            m.tcp_count += count;
            m.tcp_bytes += bytes;
        }
    }

    /// The totals so far.
    pub fn metrics(&self) -> TransferMetrics {
        self.0
    }
}

/// The thresholds as heartbeats carry them: fractions, 0 for one that is off.
pub fn threshold_fractions(t: &Thresholds) -> [f64; 4] {
    [t.target, t.spill, t.pause, t.terminate].map(|f| f.unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_transport() {
        let mut f = Fetched::default();
        f.add("TCP", &[(TaskId(1), Bytes::from_static(b"abc"))]);
        f.add(
            "MPI",
            &[
                (TaskId(2), Bytes::from_static(b"ab")),
                (TaskId(3), Bytes::from_static(b"a")),
            ],
        );
        let m = f.metrics();
        assert_eq!(
            (m.tcp_count, m.tcp_bytes, m.mpi_count, m.mpi_bytes),
            (1, 3, 2, 3)
        );
        let fr = threshold_fractions(&Thresholds {
            target: Some(0.6),
            spill: None,
            pause: Some(0.8),
            terminate: Some(0.95),
        });
        assert_eq!(fr, [0.6, 0.0, 0.8, 0.95]);
    }
}
