//! Running a command under a lease: spawn it in its own process group, forward the signals a
//! user sends to `leasedlock`, and on lease loss stop it (SIGTERM, then SIGKILL after a grace
//! period) so that nothing it started keeps working without the lease.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit;

/// The environment variable that carries the fencing token (an HLC string) to the command.
pub const FENCING_TOKEN_ENV: &str = "LEASEDLOCK_FENCING_TOKEN";
/// The environment variable that carries the lock (lease) name to the command.
pub const LOCK_NAME_ENV: &str = "LEASEDLOCK_LOCK_NAME";
/// The environment variable that carries the holder value this process holds the lease as.
pub const HOLDER_ENV: &str = "LEASEDLOCK_HOLDER";

/// What to run: the program, its arguments and extra environment variables.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ChildSpec {
    /// A command from its argument vector (`argv[0]` is the program). `None` when empty.
    pub fn from_argv(argv: &[OsString]) -> Option<ChildSpec> {
        let (program, args) = argv.split_first()?;
        Some(ChildSpec {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
        })
    }

    /// Adds an environment variable for the command.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ChildSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The program as given.
    pub fn program(&self) -> &OsString {
        &self.program
    }
}

/// Why the command could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The program does not exist (exit code 127, as in a shell).
    NotFound(io::Error),
    /// The program exists but cannot be executed (exit code 126).
    CannotExecute(io::Error),
    /// Any other failure to start it.
    Other(io::Error),
}

impl SpawnError {
    /// The exit code a shell would give.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound(_) => exit::NOT_FOUND,
            SpawnError::CannotExecute(_) => exit::CANNOT_EXECUTE,
            SpawnError::Other(_) => exit::WRAPPER_FAILED,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound(e) => write!(f, "command not found: {e}"),
            SpawnError::CannotExecute(e) => write!(f, "command cannot be executed: {e}"),
            SpawnError::Other(e) => write!(f, "command could not be started: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// A running command, leader of its own process group.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    group: Pid,
}

impl Supervised {
    /// Starts the command in a new process group (so that lease loss reaches everything it
    /// starts), with stdin, stdout and stderr inherited. The group is killed if this value is
    /// dropped before the command was waited for.
    pub fn spawn(spec: &ChildSpec) -> Result<Supervised, SpawnError> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound(e),
            io::ErrorKind::PermissionDenied => SpawnError::CannotExecute(e),
            _ => SpawnError::Other(e),
        })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| SpawnError::Other(io::Error::other("the child has no process id")))?;
        Ok(Supervised {
            child,
            group: Pid::from_raw(pid),
        })
    }

    /// The command's process id (also its process group id).
    pub fn id(&self) -> i32 {
        self.group.as_raw()
    }

    /// Sends `signal` to the command's whole process group. A group that is already gone is not
    /// an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match killpg(self.group, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(io::Error::from(errno)),
        }
    }

    /// Waits for the command to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stops the command: SIGTERM to its group, SIGKILL after `grace` if it is still running, and
    /// SIGKILL to whatever is left of its group once it exited. Returns its exit status and
    /// whether SIGKILL was needed.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<Terminated> {
        self.signal(Signal::SIGTERM)?;
        let (status, killed) = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => (status?, false),
            Err(_elapsed) => {
                self.signal(Signal::SIGKILL)?;
                (self.child.wait().await?, true)
            }
        };
        // Background processes the command started must not outlive the lease either.
        self.signal(Signal::SIGKILL)?;
        Ok(Terminated { status, killed })
    }
}

/// How a command ended after [`Supervised::terminate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminated {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it had to be killed with SIGKILL after the grace period.
    pub killed: bool,
}

/// How a supervised run ended.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The command exited by itself.
    Exited(ExitStatus),
    /// The stop future resolved first (the lease was lost); the command was terminated.
    Stopped {
        /// What the stop future said.
        why: R,
        /// How the command ended.
        terminated: Terminated,
    },
}

/// Runs `child` until it exits or `stop` resolves. SIGINT, SIGTERM and SIGHUP sent to this
/// process are forwarded to the command's group (it runs in a group of its own, so a terminal's
/// Ctrl-C reaches only us); the command decides how to react, and we keep waiting for it.
/// When `stop` resolves first, the command is terminated with `grace` (see
/// [`Supervised::terminate`]).
pub async fn supervise<F, R>(
    child: &mut Supervised,
    stop: F,
    grace: Duration,
) -> io::Result<Outcome<R>>
where
    F: Future<Output = R>,
{
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            status = child.wait() => return Ok(Outcome::Exited(status?)),
            why = &mut stop => {
                let terminated = child.terminate(grace).await?;
                return Ok(Outcome::Stopped { why, terminated });
            }
            Some(()) = interrupt.recv() => child.signal(Signal::SIGINT)?,
            Some(()) = terminate.recv() => child.signal(Signal::SIGTERM)?,
            Some(()) = hangup.recv() => child.signal(Signal::SIGHUP)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sh(script: &str) -> ChildSpec {
        let argv: Vec<OsString> = vec!["sh".into(), "-c".into(), script.into()];
        ChildSpec::from_argv(&argv).expect("non-empty argv")
    }

    fn pending_forever() -> std::future::Pending<()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn exit_status_passes_through() {
        let mut child = Supervised::spawn(&sh("exit 7")).expect("spawn");
        match supervise(&mut child, pending_forever(), Duration::from_secs(1)).await {
            Ok(Outcome::Exited(status)) => assert_eq!(exit::from_status(status), 7),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn environment_reaches_the_command() {
        let spec = sh(r#"test "$LEASEDLOCK_FENCING_TOKEN" = "001:00000:n" && test "$LEASEDLOCK_LOCK_NAME" = job"#)
            .env(FENCING_TOKEN_ENV, "001:00000:n")
            .env(LOCK_NAME_ENV, "job");
        let mut child = Supervised::spawn(&spec).expect("spawn");
        let status = child.wait().await.expect("wait");
        assert!(status.success(), "{status:?}");
    }

    #[tokio::test]
    async fn stop_sends_sigterm_first() {
        let mut child = Supervised::spawn(&sh("exec sleep 30")).expect("spawn");
        let stop = tokio::time::sleep(Duration::from_millis(100));
        match supervise(&mut child, stop, Duration::from_secs(5)).await {
            Ok(Outcome::Stopped { terminated, .. }) => {
                assert_eq!(terminated.status.signal(), Some(15));
                assert!(!terminated.killed);
                assert_eq!(exit::from_status(terminated.status), 143);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn stubborn_command_gets_sigkill_after_grace() {
        // An ignored signal stays ignored across exec, so neither sh nor sleep reacts to SIGTERM.
        let mut child = Supervised::spawn(&sh("trap '' TERM; sleep 30; exit 0")).expect("spawn");
        // Give the shell time to install the trap before the stop fires.
        let stop = tokio::time::sleep(Duration::from_millis(300));
        match supervise(&mut child, stop, Duration::from_millis(300)).await {
            Ok(Outcome::Stopped { terminated, .. }) => {
                assert!(terminated.killed);
                assert_eq!(terminated.status.signal(), Some(9));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn background_processes_of_the_command_are_stopped_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
        let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
        let stop = async {
            while !pid_file.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let outcome = supervise(&mut child, stop, Duration::from_secs(5)).await;
        assert!(
            matches!(outcome, Ok(Outcome::Stopped { .. })),
            "{outcome:?}"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // Once orphaned and killed it is reaped by init; a zombie also counts as stopped.
        let mut stopped = false;
        for _ in 0..50 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => stopped = true,
                Ok(stat) => stopped = stat.contains(") Z"),
            }
            if stopped {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "background sleep {pid} survived the stop");
    }

    #[test]
    fn spawn_errors_map_to_shell_exit_codes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let missing =
                ChildSpec::from_argv(&["/nonexistent/leasedlock-test".into()]).expect("argv");
            let err = Supervised::spawn(&missing).expect_err("must fail");
            assert_eq!(err.exit_code(), exit::NOT_FOUND, "{err}");

            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("not-executable");
            std::fs::write(&file, "#!/bin/sh\n").expect("write");
            let not_exec = ChildSpec::from_argv(&[file.into_os_string()]).expect("argv");
            let err = Supervised::spawn(&not_exec).expect_err("must fail");
            assert_eq!(err.exit_code(), exit::CANNOT_EXECUTE, "{err}");
        });
        assert!(ChildSpec::from_argv(&[]).is_none());
    }
}
