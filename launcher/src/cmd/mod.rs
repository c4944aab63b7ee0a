//! One module per subcommand.

pub mod batch_worker;
pub mod dashboard;
pub mod info;
pub mod jobqueue;
pub mod local;
pub mod mpi;
pub mod nanny;
pub mod ready;
pub mod run;
pub mod scheduler;
pub mod start_failure;
pub mod status;
pub mod worker;
