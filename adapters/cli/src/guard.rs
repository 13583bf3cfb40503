//! The guard: a small process between `leasedlock` and the command that kills the command's
//! whole process group when `leasedlock` dies, however it dies.
//!
//! `leasedlock` starts itself again in this hidden mode ([`GUARD_ARG`]) as the leader of a new
//! process group; the guard starts the command in that group and waits for it. A dying process
//! cannot clean up after itself when it is killed with SIGKILL, so the cleanup has to live in a
//! process that survives it:
//!
//! - The guard asks the kernel for a parent-death signal (SIGUSR1, which it catches). The
//!   kernel sends it when the *thread* that started the guard exits; `leasedlock` starts the
//!   guard from a thread of its own that lives until the guard has been reaped (see
//!   [`crate::supervise`]), so the signal means "`leasedlock` died".
//! - On that signal, and at start if `leasedlock` is already gone (the parent changed), the
//!   guard sends SIGKILL to its process group: the command, everything it started in the group,
//!   and the guard itself. A parent-death signal on the command alone would kill only the
//!   command, not its children.
//! - SIGTERM, SIGINT and SIGHUP, which `leasedlock` sends to the whole group, reach the command
//!   directly; the guard catches and ignores them so that it stays to report the command's exit
//!   status (its exit code is the command's, or 128 + the signal that killed it). Caught
//!   handlers are reset by `exec`, so the command starts with default dispositions.
//! - When given a deadline file (the private `deadline` module), the guard kills the group at the lease's
//!   safe end by itself unless `leasedlock` has moved the deadline later by then: a `leasedlock`
//!   that is alive but cannot act (stopped with SIGSTOP, frozen, starved) cannot keep the
//!   command running past the lease.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, getpid, getppid, Pid};
use tokio::signal::unix::{signal, SignalKind};

use crate::deadline;
use crate::exit;

/// The hidden first argument that runs `leasedlock` as the guard:
/// `leasedlock __leasedlock-guard PARENT_PID text|json DEADLINE_FILE|- -- PROGRAM ARGS…`
/// (`json`: report a command that cannot start as `{"event": "error", "error": …}` on
/// stderr, as `--json` does for `lock` and `elect`;
/// `DEADLINE_FILE`: see the private `deadline` module).
pub const GUARD_ARG: &str = "__leasedlock-guard";

/// The arguments (after the program name) that make `leasedlock` the guard of `argv`, for the
/// parent `parent`, reporting errors as JSON when `json`.
pub(crate) fn guard_args(
    parent: u32,
    json: bool,
    deadline: Option<&Path>,
    argv: impl IntoIterator<Item = OsString>,
) -> Vec<OsString> {
    let mut args = vec![
        OsString::from(GUARD_ARG),
        OsString::from(parent.to_string()),
        OsString::from(if json { "json" } else { "text" }),
        deadline.map_or_else(|| OsString::from("-"), |p| p.as_os_str().to_owned()),
        OsString::from("--"),
    ];
    args.extend(argv);
    args
}

/// What the guard was asked to do.
#[derive(Debug, PartialEq, Eq)]
struct Invocation<'a> {
    parent: Pid,
    json: bool,
    deadline: Option<&'a Path>,
    command: &'a [OsString],
}

/// Whether the process arguments ask for the guard (`argv[1]` is [`GUARD_ARG`]).
pub fn is_guard_invocation(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == GUARD_ARG)
}

/// Runs the guard with the process arguments (`argv[0]` included) and returns its exit code.
pub fn main(args: &[OsString]) -> ExitCode {
    let Some(invocation) = parse(args) else {
        eprintln!(
            "leasedlock: {GUARD_ARG} is internal: \
             {GUARD_ARG} PARENT_PID text|json DEADLINE_FILE|- -- COMMAND…"
        );
        return ExitCode::from(exit::USAGE);
    };
    // SIGKILL to our group must never reach anything but the command: refuse to run unless we
    // lead a group of our own (leasedlock starts us that way).
    if getpgrp() != getpid() {
        eprintln!("leasedlock: {GUARD_ARG} must lead its own process group");
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasedlock: guard: cannot start the async runtime: {e}");
            return ExitCode::from(exit::WRAPPER_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(guard(invocation)))
}

fn parse(args: &[OsString]) -> Option<Invocation<'_>> {
    let [_, mode, parent, format, deadline, dashes, command @ ..] = args else {
        return None;
    };
    if mode != GUARD_ARG || dashes != "--" || command.is_empty() {
        return None;
    }
    let json = match format.to_str()? {
        "json" => true,
        "text" => false,
        _ => return None,
    };
    let deadline = (deadline != "-").then_some(Path::new(deadline));
    let parent: i32 = parent.to_str()?.parse().ok()?;
    (parent > 1).then_some(Invocation {
        parent: Pid::from_raw(parent),
        json,
        deadline,
        command,
    })
}

/// Kills our group (the command, what it started, and us) with SIGKILL.
/// Removes the deadline file and its directory when leasedlock is gone and cannot do it.
fn remove_deadline(file: Option<&Path>) {
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
        if let Some(dir) = file.parent() {
            // Only if empty: never more than leasedlock created.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn kill_group() -> u8 {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
    // Not reached: SIGKILL cannot be caught.
    exit::WRAPPER_FAILED
}

async fn guard(invocation: Invocation<'_>) -> u8 {
    let Invocation {
        parent,
        json,
        deadline: deadline_file,
        command,
    } = invocation;
    // Handlers first: a signal that arrives before its handler would take its default action.
    let handlers = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut parent_died), Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = handlers
    else {
        eprintln!("leasedlock: guard: cannot install signal handlers");
        return exit::WRAPPER_FAILED;
    };
    if let Err(e) = watch_parent() {
        eprintln!("leasedlock: guard: cannot ask for a parent-death signal: {e}");
        return exit::WRAPPER_FAILED;
    }
    // The parent may have died before the request above took effect: then we were re-parented.
    if getppid() != parent {
        remove_deadline(deadline_file);
        return kill_group();
    }
    // The latest moment the group may live, as leasedlock last said (`None`: no limit).
    let mut deadline = match deadline_file {
        None => None,
        Some(path) => match deadline::read(path) {
            Some(at) => Some(at),
            None => {
                eprintln!("leasedlock: guard: no deadline in {}", path.display());
                return exit::WRAPPER_FAILED;
            }
        },
    };
    let Some((program, args)) = command.split_first() else {
        return exit::USAGE;
    };
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            let (code, what) = match e.kind() {
                io::ErrorKind::NotFound => (exit::NOT_FOUND, "command not found"),
                io::ErrorKind::PermissionDenied => {
                    (exit::CANNOT_EXECUTE, "command cannot be executed")
                }
                _ => (exit::WRAPPER_FAILED, "command could not be started"),
            };
            let message = format!("{what}: {}: {e}", program.to_string_lossy());
            if json {
                // stderr: the command's stdout is the command's alone.
                eprintln!(
                    "{}",
                    serde_json::json!({ "event": "error", "error": message })
                );
            } else {
                eprintln!("leasedlock: {message}");
            }
            return code;
        }
    };
    loop {
        let due = async {
            match deadline.map(deadline::until) {
                Some(Ok(left)) => tokio::time::sleep(left).await,
                // Without a clock we cannot keep the deadline: act as if it had come.
                Some(Err(_)) => {}
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => {
                // Renewed since (a later deadline), or leasedlock could not say so in time.
                let later = deadline_file
                    .and_then(deadline::read)
                    .filter(|at| deadline.is_some_and(|d| *at > d));
                match later {
                    Some(at) => deadline = Some(at),
                    None => return kill_group(),
                }
            }
            status = child.wait() => return match status {
                Ok(status) => exit::from_status(status),
                Err(e) => {
                    eprintln!("leasedlock: guard: waiting for the command: {e}");
                    kill_group()
                }
            },
            Some(()) = parent_died.recv() => {
                // SIGUSR1 from someone else while leasedlock lives is not a parent death.
                if getppid() != parent {
                    remove_deadline(deadline_file);
                    return kill_group();
                }
            }
            // Sent to the whole group: the command got them too and decides.
            Some(()) = terminate.recv() => {}
            Some(()) = interrupt.recv() => {}
            Some(()) = hangup.recv() => {}
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn watch_parent() -> nix::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGUSR1)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn watch_parent() -> nix::Result<()> {
    // No parent-death signal on this system: the group is still killed on every exit of
    // leasedlock that runs its cleanup, but not when leasedlock itself is killed with SIGKILL.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_round_trip() {
        let args = [OsString::from("leasedlock")]
            .into_iter()
            .chain(guard_args(
                4242,
                true,
                Some(Path::new("/run/x/deadline")),
                os(&["sh", "-c", "exit 3"]),
            ))
            .collect::<Vec<_>>();
        assert!(is_guard_invocation(&args));
        let command = os(&["sh", "-c", "exit 3"]);
        assert_eq!(
            parse(&args),
            Some(Invocation {
                parent: Pid::from_raw(4242),
                json: true,
                deadline: Some(Path::new("/run/x/deadline")),
                command: &command,
            })
        );
    }

    #[test]
    fn malformed_arguments_are_refused() {
        for bad in [
            &["leasedlock"][..],
            &["leasedlock", GUARD_ARG],
            &["leasedlock", GUARD_ARG, "12", "text", "-", "--"],
            &["leasedlock", GUARD_ARG, "12", "text", "-", "sh"],
            &["leasedlock", GUARD_ARG, "12", "text", "--", "sh"],
            &["leasedlock", GUARD_ARG, "12", "yaml", "-", "--", "sh"],
            &["leasedlock", GUARD_ARG, "x", "text", "-", "--", "sh"],
            &["leasedlock", GUARD_ARG, "1", "text", "-", "--", "sh"],
            &["leasedlock", GUARD_ARG, "-5", "text", "-", "--", "sh"],
            &["leasedlock", "lock", "12", "text", "-", "--", "sh"],
        ] {
            assert!(parse(&os(bad)).is_none(), "{bad:?} accepted");
        }
        assert!(!is_guard_invocation(&os(&["leasedlock", "lock"])));
    }

    proptest! {
        #[test]
        fn parse_never_panics(args in proptest::collection::vec(".{0,12}", 0..6)) {
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            let _ = parse(&args);
        }
    }
}
