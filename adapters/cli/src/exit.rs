//! The exit codes of `leasedlock`, one place for the numbers and the text `--help` shows.

use std::process::ExitStatus;

/// Success; for `lock` and `elect`, the command exited 0.
pub const OK: u8 = 0;
/// The operation ran and the answer is "no": `acquire` found the lease held by another,
/// `holder` found no holder, `get` found no key, `release` found another holder (or none),
/// `set --nx/--nex` did not apply; `demo` saw a violation; `serve` could not start.
pub const NO: u8 = 1;
/// Bad arguments or usage (clap uses the same number).
pub const USAGE: u8 = 2;
/// The broker or the state store could not be reached, or a request timed out.
pub const UNREACHABLE: u8 = 3;
/// The state store refused the request (a service error or a protocol error).
pub const REFUSED: u8 = 4;
/// `lock`/`elect`: the lease was lost, or not renewed in time, while the command ran; the
/// command was stopped (SIGTERM, then SIGKILL by the lease's safe end).
pub const LEASE_LOST: u8 = 123;
/// `lock`: the lock was not acquired within `--wait`.
pub const NOT_ACQUIRED: u8 = 124;
/// `lock`/`elect`: leasedlock itself failed around the command (broker unreachable, store error).
pub const WRAPPER_FAILED: u8 = 125;
/// `lock`/`elect`: the command was found but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// `lock`/`elect`: the command was not found.
pub const NOT_FOUND: u8 = 127;

/// The `EXIT CODES` section of `--help`.
pub const HELP: &str = "\
EXIT CODES:
  0      success (lock/elect: the command exited 0)
  1      the answer is \"no\": acquire found the lease held by another, holder found no holder,
         get found no key, release found another holder or none, set --nx/--nex did not
         apply; demo saw an overlap, a token that did not strictly increase or a fencing
         failure; serve could not start
  2      bad arguments or usage
  3      the broker or the state store could not be reached, or a request timed out
  4      the state store refused the request (service or protocol error)
  lock and elect pass the command's exit status through, except:
  123    the lease was lost, or not renewed by --grace before its safe end, while the command
         ran; it was sent SIGTERM, then SIGKILL at the lease's safe end if still running
  124    lock: the lock was not acquired within --wait
  125    leasedlock itself failed around the command (broker unreachable, store error)
  126    the command could not be executed
  127    the command was not found
  128+N  the command was killed by signal N";

/// The shell's convention for a finished child: its exit code, or 128 + the signal that killed it.
pub fn from_status(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        // Exit codes are 0..=255 on Unix; `code()` already holds the low 8 bits.
        return u8::try_from(code & 0xff).unwrap_or(WRAPPER_FAILED);
    }
    match status.signal() {
        Some(signal) => u8::try_from((128 + signal) & 0xff).unwrap_or(WRAPPER_FAILED),
        None => WRAPPER_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn status_mapping() {
        assert_eq!(from_status(ExitStatus::from_raw(0)), 0);
        assert_eq!(from_status(ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGTERM (15): the raw wait status is the signal number.
        assert_eq!(from_status(ExitStatus::from_raw(15)), 143);
        assert_eq!(from_status(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn help_names_every_code() {
        for code in [
            OK,
            NO,
            USAGE,
            UNREACHABLE,
            REFUSED,
            LEASE_LOST,
            NOT_ACQUIRED,
            WRAPPER_FAILED,
            CANNOT_EXECUTE,
            NOT_FOUND,
        ] {
            assert!(
                HELP.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "exit code {code} missing from the help text"
            );
        }
    }
}
