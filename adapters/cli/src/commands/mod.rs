//! One module per subcommand.

use crate::args::Cli;
use crate::exit;

/// Runs a parsed command line and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    eprintln!(
        "leasedlock: {:?} is wired once the tokio adapter and the emulator land",
        cli.command
    );
    exit::WRAPPER_FAILED
}
