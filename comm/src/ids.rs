//! Typed integer ids.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw integer.
            pub fn as_raw(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

define_id!(
    /// A task known to the scheduler; assigned by the scheduler, never reused while it runs.
    TaskId, u64, "t"
);
define_id!(
    /// A worker connected to the scheduler.
    WorkerId, u32, "w"
);
define_id!(
    /// A client connected to the scheduler.
    ClientId, u32, "c"
);
