//! One module per subcommand, plus what they share.

mod bench;
mod common;
mod connect;
mod demo;
mod demo_board;
mod demo_timeline;
mod hold_events;
mod kv;
mod lease_ops;
mod run_locked;
mod serve;
mod stack;
mod svg;

// The XML check the tests of the binary use too.
#[cfg(test)]
#[path = "../../tests/common/well_formed.rs"]
mod well_formed;

use clap::CommandFactory;

use crate::args::{Cli, Command};
use crate::exit;
use common::Report;

/// Runs a parsed command line and returns the exit code; failures are reported here.
pub async fn run(cli: Cli) -> u8 {
    let report = match cli.command {
        Command::Lock(_) | Command::Elect(_) => Report::supervising(cli.global.json),
        _ => Report::new(cli.global.json),
    };
    let global = &cli.global;
    let result = match &cli.command {
        Command::Serve(args) => Ok(serve::run(global, args).await),
        Command::Acquire(args) => lease_ops::acquire(global, args, report).await,
        Command::Release(args) => lease_ops::release(global, args, report).await,
        Command::Holder(args) => lease_ops::holder(global, args, report).await,
        Command::Watch(args) => lease_ops::watch(global, args, report).await,
        Command::Get(args) => kv::get(global, args, report).await,
        Command::Set(args) => kv::set(global, args, report).await,
        Command::Del(args) => kv::del(global, args, report).await,
        Command::Lock(args) => run_locked::lock(global, args, report).await,
        Command::Elect(args) => run_locked::elect(global, args, report).await,
        Command::Demo(args) => demo::run(global, args, report).await,
        Command::Bench(args) => bench::run(global, args, report).await,
        Command::Completions(args) => Ok(completions(args.shell)),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            report.error(&failure.message);
            failure.code
        }
    }
}

/// `completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "leasedlock", &mut out);
    exit::OK
}
