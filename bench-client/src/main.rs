//! The `ferromq-bench` binary: parses the command line and runs a command.

use clap::Parser;
use ferromq_bench::cli::{Cli, Command};
use ferromq_bench::commands;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::List(args) => commands::list(args),
        Command::Report(args) => commands::report(args),
        Command::Run(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all();
            if let Some(n) = args.threads {
                builder.worker_threads(n.max(1));
            }
            match builder.build() {
                Ok(rt) => rt.block_on(commands::run(args)),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
