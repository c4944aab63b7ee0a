//! One module per subcommand.

pub mod local;
pub mod run;
pub mod scheduler;
pub mod status;
pub mod worker;
