//! Entry point: parse the command line, set up logging and the runtime, dispatch.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::args::Cli;
use crate::exit;

/// Runs `leasedlock` with the process's arguments and returns its exit code. Bad arguments
/// print clap's message and exit with status 2 from inside the parser. With the hidden first
/// argument [`crate::guard::GUARD_ARG`] it runs as the guard of a supervised command instead.
pub fn main_entry() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `lock` and `elect` start this executable again as the guard of their command.
    if crate::guard::is_guard_invocation(&args) {
        return crate::guard::main(&args);
    }
    if crate::args::uses_removed_timeout(&args) {
        Cli::command()
            .error(ErrorKind::ArgumentConflict, crate::args::REMOVED_TIMEOUT)
            .exit();
    }
    let cli = Cli::parse_from(args);
    crate::logging::init(cli.global.verbose, cli.global.quiet);
    if std::env::var_os(crate::args::REMOVED_TIMEOUT_ENV).is_some() {
        // A variable exported in some profile should not break every command: the warning
        // names the replacements.
        tracing::warn!(
            "{} is ignored: {}",
            crate::args::REMOVED_TIMEOUT_ENV,
            crate::args::REMOVED_TIMEOUT
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasedlock: cannot start the async runtime: {e}");
            return ExitCode::from(exit::WRAPPER_FAILED);
        }
    };
    let code = runtime.block_on(crate::commands::run(cli));
    ExitCode::from(code)
}
