//! The `leasedlock` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    leasedlock_cli::main_entry()
}
