//! One module per subcommand.

pub mod batch_worker;
pub mod dashboard;
pub mod info;
pub mod jobqueue;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(not(feature = "mpi"))]
#[path = "mpi_unavailable.rs"]
pub mod mpi;
pub mod nanny;
pub mod ready;
pub mod run;
pub mod scheduler;
pub mod start_failure;
pub mod status;
pub mod watch;
pub mod worker;
