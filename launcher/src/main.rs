//! The `shoal` command.

mod cli;
mod cmd;
mod graph;
mod iface;
mod logging;
mod parse;
mod signals;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = parse::split_resources(std::env::args().collect());
    let cli = Cli::parse_from(args);
    logging::init(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Scheduler(args) => cmd::scheduler::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Worker(args) => cmd::worker::run(args).await,
            Command::Local(args) => cmd::local::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Status(args) => cmd::status::status(args).await.map(|()| ExitCode::SUCCESS),
            Command::Shutdown(args) => cmd::status::shutdown(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Run(args) => cmd::run::run(args).await.map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
        }
    });
    // Background tasks (writers, data servers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
