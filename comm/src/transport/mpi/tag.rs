//! MPI tags of shoal's virtual connections.
//!
//! Many connections share one communicator between two ranks; the tag tells them apart:
//!
//! ```text
//! bit 0      1 = sent by the side that opened the connection, 0 = sent by the side that accepted it
//! bits 1-2   the service the connection was opened to (see [`Service`])
//! bits 3..   the connection number, chosen by the opening side
//! ```
//!
//! Two ranks that open connections to each other with the same number never collide: the
//! direction bit differs. The receiving rank routes by (source rank, tag).

pub use crate::transport::Service;

const OPENER_BIT: i32 = 1;
const SERVICE_SHIFT: u32 = 1;
const SERVICE_MASK: i32 = 0b11;
const NUMBER_SHIFT: u32 = 3;

/// Connection numbers usable under `tag_ub`, the communicator's largest tag (at least
/// 32767 by the MPI standard, 2^31 - 1 in Open MPI and MPICH).
pub fn numbers_below(tag_ub: i32) -> u32 {
    ((tag_ub.max(0) >> NUMBER_SHIFT) as u32).max(1)
}

/// The tag of messages the opening side sends on connection `number`.
pub fn opener_tag(number: u32, service: Service) -> i32 {
    ((number as i32) << NUMBER_SHIFT) | ((service as i32) << SERVICE_SHIFT) | OPENER_BIT
}

/// The tag the other side answers with, given the tag it received.
pub fn reply_tag(received: i32) -> i32 {
    received & !OPENER_BIT
}

/// The service a message was sent to, when it was sent by an opening side.
pub fn opened_service(tag: i32) -> Option<Service> {
    if tag & OPENER_BIT == 0 {
        return None;
    }
    u8::try_from((tag >> SERVICE_SHIFT) & SERVICE_MASK)
        .ok()
        .and_then(Service::from_u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_service_and_direction() {
        let tag = opener_tag(41, Service::Data);
        assert_eq!(opened_service(tag), Some(Service::Data));
        assert_eq!(opened_service(reply_tag(tag)), None);
        assert_ne!(tag, reply_tag(tag));
        let other = opener_tag(41, Service::Scheduler);
        assert_ne!(tag, other);
        assert_eq!(opened_service(other), Some(Service::Scheduler));
    }

    #[test]
    fn connection_numbers_fit_under_the_tag_bound() {
        let ub = 32767;
        let last = numbers_below(ub) - 1;
        assert!(opener_tag(last, Service::Scheduler) <= ub);
        assert!(opener_tag(numbers_below(i32::MAX) - 1, Service::Scheduler) > 0);
        assert_eq!(numbers_below(0), 1);
    }
}
