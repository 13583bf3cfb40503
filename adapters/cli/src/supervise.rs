//! Running a command under a lease: start it in a process group of its own behind a guard
//! process (see [`crate::guard`]), forward the signals a user sends to `leasedlock`, and stop the
//! whole group before the lease can pass to another holder.
//!
//! The timeline of a hold whose safe end is `safe_until` (the last renewal's send time + the
//! lease duration − the margin):
//!
//! - at `safe_until − grace`, unless a renewal has moved `safe_until` later by then, the group
//!   gets SIGTERM;
//! - at `safe_until` it gets SIGKILL;
//! - when the hold ends earlier (the lease was taken, deleted, or a renewal refused), SIGTERM goes
//!   out at once and SIGKILL `grace` later, but never after `safe_until`;
//! - when the command exits by itself, whatever is left of its group gets SIGKILL before
//!   [`Supervised::wait`] returns, so before the caller releases the lease.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use leasedlock_core::supervise as policy;
use leasedlock_core::Instant as CoreInstant;

use crate::deadline::DeadlineFile;
use crate::exit;
use crate::guard;

/// The environment variable that carries the fencing token (an HLC string) to the command.
pub const FENCING_TOKEN_ENV: &str = "LEASEDLOCK_FENCING_TOKEN";
/// The environment variable that carries the lock (lease) name to the command.
pub const LOCK_NAME_ENV: &str = "LEASEDLOCK_LOCK_NAME";
/// The environment variable that carries the holder value this process holds the lease as.
pub const HOLDER_ENV: &str = "LEASEDLOCK_HOLDER";

/// The guard program when none is set: this very executable (`leasedlock`), which
/// [`crate::main_entry`] turns into the guard when it sees [`guard::GUARD_ARG`]. `/proc/self/exe`
/// still starts it when the file was replaced or deleted since.
pub const THIS_EXECUTABLE: &str = "/proc/self/exe";

/// What to run: the program, its arguments and extra environment variables, and the
/// `leasedlock` executable that runs the guard.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    guard: PathBuf,
    json_errors: bool,
    kill_by: Option<Instant>,
}

impl ChildSpec {
    /// A command from its argument vector (`argv[0]` is the program). `None` when empty.
    pub fn from_argv(argv: &[OsString]) -> Option<ChildSpec> {
        let (program, args) = argv.split_first()?;
        Some(ChildSpec {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            guard: PathBuf::from(THIS_EXECUTABLE),
            json_errors: false,
            kill_by: None,
        })
    }

    /// Adds an environment variable for the command.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ChildSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the guard with `leasedlock` at `path` instead of this executable (for programs that
    /// embed the supervision, and for tests, which are not `leasedlock` themselves).
    pub fn guard_program(mut self, path: impl Into<PathBuf>) -> ChildSpec {
        self.guard = path.into();
        self
    }

    /// Reports a command that cannot be started as a JSON line `{"event": "error", "error": …}`
    /// on stderr (as `--json` does) instead of a line of text.
    pub fn json_errors(mut self, json: bool) -> ChildSpec {
        self.json_errors = json;
        self
    }

    /// Has the guard itself kill the group at `at` unless [`supervise`] moves that deadline
    /// later (it does whenever a renewal moves the lease's safe end): the group then dies at the
    /// safe end even if this process is stopped or starved and cannot act. Without it the guard
    /// only acts when this process dies.
    pub fn kill_by(mut self, at: Instant) -> ChildSpec {
        self.kill_by = Some(at);
        self
    }

    /// The program as given.
    pub fn program(&self) -> &OsString {
        &self.program
    }
}

/// Why the command could not be started. The guard reports a command that could not be
/// started through its exit code (127, 126, 125, as in a shell); this error is about the guard.
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

/// A running command behind its guard, in a process group the guard leads.
///
/// The guard is started, waited for and reaped by a thread of its own: the guard's parent-death
/// signal fires when that thread exits, and it lives until the guard is gone. Once the guard has
/// exited, the thread waits without reaping it (its zombie keeps the group id from being reused),
/// sends SIGKILL to the group to end what the command left running, and only then reaps it and
/// reports the status.
#[derive(Debug)]
pub struct Supervised {
    group: Pid,
    /// Whether the guard was reaped (its id, and so the group id, may be reused from then on).
    /// Held while signalling, so a signal never reaches a reused id.
    reaped: Arc<Mutex<bool>>,
    done: oneshot::Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
    /// The guard's deadline, when it has one; removed once the guard is gone (dropped after
    /// the waiting thread, which owns a handle to it too).
    deadline: Option<Arc<DeadlineFile>>,
}

impl Supervised {
    /// Starts the guard, which starts the command in the guard's new process group with stdin,
    /// stdout and stderr inherited. The group is killed if this value is dropped before the
    /// command was waited for.
    pub fn spawn(spec: &ChildSpec) -> Result<Supervised, SpawnError> {
        let deadline = spec
            .kill_by
            .map(DeadlineFile::create)
            .transpose()
            .map_err(SpawnError::Other)?
            .map(Arc::new);
        let mut command = std::process::Command::new(&spec.guard);
        command
            .args(guard::guard_args(
                std::process::id(),
                spec.json_errors,
                deadline.as_deref().map(DeadlineFile::path),
                std::iter::once(spec.program.clone()).chain(spec.args.iter().cloned()),
            ))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0);
        let reaped = Arc::new(Mutex::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = oneshot::channel();
        let thread_reaped = reaped.clone();
        // The guard may read the file until it is reaped, even if `Supervised` is dropped first.
        let thread_deadline = deadline.clone();
        std::thread::Builder::new()
            .name("leasedlock-guard".into())
            .spawn(move || {
                let child = match command.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(child.id()));
                let status = reap_after_killing_the_group(child, &thread_reaped);
                // Before the status goes out: once it has, the process may exit before this
                // thread ends, and the `Supervised` must hold the last handle so that the
                // directory is removed when it is dropped.
                drop(thread_deadline);
                let _ = done_tx.send(status);
            })
            .map_err(SpawnError::Other)?;
        let pid = started_rx
            .recv()
            .map_err(|_| SpawnError::Other(io::Error::other("the guard thread ended early")))?
            .map_err(SpawnError::Other)?;
        let pid = i32::try_from(pid)
            .map_err(|_| SpawnError::Other(io::Error::other("process id out of range")))?;
        Ok(Supervised {
            group: Pid::from_raw(pid),
            reaped,
            done,
            status: None,
            deadline,
        })
    }

    /// The process group id (the guard's process id).
    pub fn id(&self) -> i32 {
        self.group.as_raw()
    }

    /// Sends `signal` to the whole process group. A group that is already gone is not an
    /// error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if *reaped {
            return Ok(());
        }
        match killpg(self.group, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(io::Error::from(errno)),
        }
    }

    /// Moves the guard's own kill deadline (see [`ChildSpec::kill_by`]) to `at`; nothing without
    /// one.
    pub fn move_deadline(&self, at: Instant) -> io::Result<()> {
        match &self.deadline {
            Some(file) => file.set(at),
            None => Ok(()),
        }
    }

    /// Waits for the command to exit; by then nothing of its group is left running. The status
    /// is the guard's: the command's exit code, or 128 + the signal that killed the command
    /// (or, when the whole group was killed with SIGKILL, killed by signal 9). Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = (&mut self.done)
            .await
            .map_err(|_| io::Error::other("the guard thread ended without a status"))??;
        self.status = Some(status);
        Ok(status)
    }

    /// Stops the command: SIGTERM to its group now, SIGKILL at `kill_at` if it is still running
    /// (at once when `kill_at` has passed). Returns its exit status and whether SIGKILL was
    /// needed.
    pub async fn terminate_until(&mut self, kill_at: Instant) -> io::Result<Terminated> {
        self.signal(Signal::SIGTERM)?;
        let kill_at = tokio::time::Instant::from_std(kill_at);
        let (status, killed) = match tokio::time::timeout_at(kill_at, self.wait()).await {
            // (SIGKILL from the guard, at its deadline, counts too.)
            Ok(status) => {
                let status = status?;
                (status, status.signal() == Some(9))
            }
            Err(_elapsed) => {
                self.signal(Signal::SIGKILL)?;
                (self.wait().await?, true)
            }
        };
        Ok(Terminated { status, killed })
    }
}

/// Waits (on the guard's thread) for the guard to exit, kills what is left of its group, reaps
/// it. The zombie of an exited but unreaped guard keeps its id, so the group id cannot name
/// another group while the SIGKILL goes out.
fn reap_after_killing_the_group(
    mut child: std::process::Child,
    reaped: &Mutex<bool>,
) -> io::Result<ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    let mut reaped = reaped.lock().unwrap_or_else(PoisonError::into_inner);
    match killpg(pid, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => tracing::warn!(%errno, "killing what the command left running"),
    }
    let status = child.wait();
    *reaped = true;
    status
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Nothing of a command we no longer wait for may keep running.
        if self.status.is_none() {
            let _ = self.signal(Signal::SIGKILL);
        }
    }
}

/// How a command ended after [`Supervised::terminate_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminated {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it had to be killed with SIGKILL.
    pub killed: bool,
}

/// Why a supervised command was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop<R> {
    /// The hold ended before its safe end (lost, deposed); what the lease said.
    Ended(R),
    /// No renewal had moved the hold's safe end past now + grace: the command had to stop so
    /// that it is gone by `safe_until`.
    NotRenewed {
        /// The safe end the command was killed by, at the latest.
        safe_until: Instant,
    },
}

impl<R: fmt::Display> fmt::Display for Stop<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Ended(why) => write!(f, "{why}"),
            Stop::NotRenewed { .. } => {
                f.write_str("no renewal succeeded in time to keep the command running")
            }
        }
    }
}

/// How a supervised run ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome<R> {
    /// The command exited by itself (what it left running in its group was killed).
    Exited(ExitStatus),
    /// The lease was ending; the command was terminated.
    Stopped {
        /// Why.
        why: Stop<R>,
        /// How the command ended.
        terminated: Terminated,
    },
}

/// How much earlier than `safe_until` SIGKILL is aimed (the core policy's
/// [`leasedlock_core::supervise::KILL_LEAD`]): tokio's timer fires on millisecond ticks and a
/// little late under load. The lease margin (at least 100 ms between `safe_until` and the
/// store's expiry) covers what is left.
pub const KILL_LEAD: Duration = policy::KILL_LEAD;

/// When SIGKILL is due for a hold safe until `safe_until`: [`KILL_LEAD`] before it (the core
/// policy's [`policy::kill_at`]).
pub fn kill_at(safe_until: Instant) -> Instant {
    let line = Timeline::from(safe_until);
    line.to_std(policy::kill_at(line.to_core(safe_until)))
        .unwrap_or(safe_until)
}

/// When SIGTERM is due for a hold safe until `safe_until`: `grace` before it (at `now` if that
/// would be before the clock's start; the core policy's [`policy::term_at`]).
pub fn term_at(safe_until: Instant, grace: Duration, now: Instant) -> Instant {
    let line = Timeline::from(safe_until);
    line.to_std(policy::term_at(line.to_core(safe_until), grace))
        .unwrap_or(now)
}

/// When SIGKILL is due for a hold that ended early at `now`, last known safe until
/// `safe_until`: `grace` from now, but never after [`kill_at`]`(safe_until)` (the core policy's
/// [`policy::kill_at_after_early_end`]).
pub fn kill_at_after_early_end(safe_until: Instant, grace: Duration, now: Instant) -> Instant {
    let line = Timeline::from(safe_until.min(now));
    let at = policy::kill_at_after_early_end(line.to_core(safe_until), grace, line.to_core(now));
    line.to_std(at).unwrap_or_else(|| kill_at(safe_until))
}

/// Maps this process's clock onto the core's [`policy`] instants: `origin` (no later than
/// every instant mapped) becomes [`Timeline::ORIGIN`], far enough from the core clock's zero
/// that no deadline computed from it saturates there.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    origin: Instant,
}

impl Timeline {
    /// Where `origin` lands on the core clock: 2^62 ns, about 146 years on either side.
    const ORIGIN: CoreInstant = CoreInstant::from_nanos(1 << 62);

    fn to_core(self, t: Instant) -> CoreInstant {
        Self::ORIGIN + t.saturating_duration_since(self.origin)
    }

    /// `None` when `t` is before this clock's start or beyond its end.
    fn to_std(self, t: CoreInstant) -> Option<Instant> {
        if t >= Self::ORIGIN {
            self.origin.checked_add(t - Self::ORIGIN)
        } else {
            self.origin.checked_sub(Self::ORIGIN - t)
        }
    }
}

impl From<Instant> for Timeline {
    fn from(origin: Instant) -> Timeline {
        Timeline { origin }
    }
}

/// Runs `child` until it exits or the lease it runs under is ending.
///
/// `safe_until` reads the hold's current safe end (`None` once it is not held); a renewal moves
/// it later. `ended` resolves when the hold ends before its safe end. SIGTERM goes to the group
/// at `safe_until − grace` unless `safe_until` was moved later by then (it is read again at that
/// moment), SIGKILL at `safe_until`; when `ended` resolves first, SIGTERM goes out at once and
/// SIGKILL `grace` later, never after the last known `safe_until`. Once SIGTERM was sent the
/// command is stopped whatever renewals do.
///
/// SIGINT, SIGTERM and SIGHUP sent to this process are forwarded to the command's group (it runs
/// in a group of its own, so a terminal's Ctrl-C reaches only us); the command decides how to
/// react, and we keep waiting for it.
pub async fn supervise<F, R, S>(
    child: &mut Supervised,
    ended: F,
    mut safe_until: S,
    grace: Duration,
) -> io::Result<Outcome<R>>
where
    F: Future<Output = R>,
    S: FnMut() -> Option<Instant>,
{
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::pin!(ended);
    // The last safe end seen; only ever moves later, and is never later than the real one.
    let Some(mut known) = safe_until() else {
        // Not held (any more): stop at once.
        let now = Instant::now();
        let why = match tokio::time::timeout(Duration::ZERO, &mut ended).await {
            Ok(why) => Stop::Ended(why),
            Err(_) => Stop::NotRenewed { safe_until: now },
        };
        let terminated = child.terminate_until(now).await?;
        return Ok(Outcome::Stopped { why, terminated });
    };
    child.move_deadline(known)?;
    loop {
        let due = tokio::time::Instant::from_std(term_at(known, grace, Instant::now()));
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                // Killed by the guard at the safe end, because we could not act in time.
                if status.signal() == Some(9) && Instant::now() >= known {
                    let terminated = Terminated { status, killed: true };
                    return Ok(Outcome::Stopped {
                        why: Stop::NotRenewed { safe_until: known },
                        terminated,
                    });
                }
                return Ok(Outcome::Exited(status));
            }
            why = &mut ended => {
                let kill_at = kill_at_after_early_end(known, grace, Instant::now());
                let terminated = child.terminate_until(kill_at).await?;
                return Ok(Outcome::Stopped { why: Stop::Ended(why), terminated });
            }
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                match safe_until() {
                    // Renewed in time: the termination is off, wait for the new due time.
                    Some(later) if term_at(later, grace, now) > now => {
                        known = later;
                        child.move_deadline(known)?;
                    }
                    still => {
                        // `known` never runs past the real safe end; a renewal may just have
                        // moved it later.
                        let end = still.map_or(known, |s| s.max(known));
                        // Why, as of now: the hold may have ended in the same instant.
                        let why = match tokio::time::timeout(Duration::ZERO, &mut ended).await {
                            Ok(why) => Stop::Ended(why),
                            Err(_) => Stop::NotRenewed { safe_until: end },
                        };
                        let terminated = child.terminate_until(kill_at(end)).await?;
                        return Ok(Outcome::Stopped { why, terminated });
                    }
                }
            }
            Some(()) = interrupt.recv() => child.signal(Signal::SIGINT)?,
            Some(()) = terminate.recv() => child.signal(Signal::SIGTERM)?,
            Some(()) = hangup.recv() => child.signal(Signal::SIGHUP)?,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The deadlines; the supervision of real processes (which needs the `leasedlock` binary as
    //! the guard) is tested in `tests/supervise.rs`.
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn term_comes_grace_before_the_safe_end_and_kill_at_it() {
        let now = Instant::now();
        let safe_until = now + Duration::from_secs(10);
        let grace = Duration::from_secs(2);
        assert_eq!(
            term_at(safe_until, grace, now),
            now + Duration::from_secs(8)
        );
        assert_eq!(kill_at(safe_until), safe_until - KILL_LEAD);
        // Lost early: SIGKILL a grace later...
        assert_eq!(
            kill_at_after_early_end(safe_until, grace, now),
            now + Duration::from_secs(2)
        );
        // ...but never after the safe end.
        let late = now + Duration::from_secs(9);
        assert_eq!(
            kill_at_after_early_end(safe_until, grace, late),
            kill_at(safe_until)
        );
    }

    proptest! {
        #[test]
        fn kill_never_comes_after_the_safe_end(
            ahead_ms in 0u64..100_000,
            grace_ms in 0u64..100_000,
            elapsed_ms in 0u64..200_000,
        ) {
            let base = Instant::now();
            let safe_until = base + Duration::from_millis(ahead_ms);
            let grace = Duration::from_millis(grace_ms);
            let now = base + Duration::from_millis(elapsed_ms);
            prop_assert!(kill_at(safe_until) <= safe_until);
            prop_assert!(kill_at_after_early_end(safe_until, grace, now) <= safe_until);
            prop_assert!(kill_at_after_early_end(safe_until, grace, now) <= now + grace);
            let term = term_at(safe_until, grace, base);
            prop_assert!(term <= safe_until);
            prop_assert_eq!(term + grace, safe_until);
        }
    }
}
