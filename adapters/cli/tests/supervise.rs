//! Supervision of real processes on scripted lease timelines (no broker): the command runs
//! behind the guard of the real `leasedlock` binary, and the lease is a `safe_until` function of
//! time plus an "ended" future that the test controls.
//!
//! Times the command sees come from `date +%s%N` (the wall clock) and are mapped onto the
//! test's monotonic clock through one pair of readings taken at the start; nothing adjusts the
//! clock during a test, so the mapping is off by far less than the tolerances below.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasedlock_cli::exit;
use leasedlock_cli::supervise::{
    supervise, ChildSpec, Outcome, SpawnError, Stop, Supervised, FENCING_TOKEN_ENV, LOCK_NAME_ENV,
};

const BIN: &str = env!("CARGO_BIN_EXE_leasedlock");

/// The longest any awaited readiness signal may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// How far past `safe_until` the command may still be seen running. This is the correctness
/// bound, not a speed target: the store keeps the lease at least the margin (100 ms at the
/// least) after `safe_until`, so a command dead within that is dead before anyone else can
/// hold the lock.
const MIN_MARGIN: Duration = Duration::from_millis(100);

/// Tolerance for mapping the command's wall-clock readings onto the monotonic clock.
const CLOCK_MAPPING: Duration = Duration::from_millis(10);

fn sh(script: &str) -> ChildSpec {
    let argv: Vec<OsString> = vec!["sh".into(), "-c".into(), script.into()];
    ChildSpec::from_argv(&argv)
        .expect("non-empty argv")
        .guard_program(BIN)
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// One wall-clock/monotonic pair to map the command's `date +%s%N` readings.
struct Clocks {
    mono: Instant,
    wall_ns: u128,
}

impl Clocks {
    fn now() -> Clocks {
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        Clocks {
            mono: Instant::now(),
            wall_ns,
        }
    }

    /// The monotonic instant of a `date +%s%N` reading.
    fn instant(&self, wall_ns: u128) -> Instant {
        if wall_ns >= self.wall_ns {
            let ahead = u64::try_from(wall_ns - self.wall_ns).expect("ns fit u64");
            self.mono + Duration::from_nanos(ahead)
        } else {
            let behind = u64::try_from(self.wall_ns - wall_ns).expect("ns fit u64");
            self.mono - Duration::from_nanos(behind)
        }
    }
}

/// Polls until `done` holds or `within` has passed; says whether it held.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until `path` exists; the command renames it into place once complete.
async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {LIMIT:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A shell snippet that creates `path` atomically with `what` in it.
fn publish(path: &Path, what: &str) -> String {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    format!(
        "echo {what} > {tmp}; mv {tmp} {path}",
        tmp = quote(&tmp),
        path = quote(path)
    )
}

/// Whether process `pid` has ended: gone, or a zombie that nobody has reaped yet.
fn process_ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The last heartbeat (a `date +%s%N` line) in `path`.
fn last_heartbeat(path: &Path, clocks: &Clocks) -> Instant {
    let text = std::fs::read_to_string(path).expect("heartbeats");
    let last = text
        .lines()
        .filter_map(|l| l.trim().parse::<u128>().ok())
        .max()
        .expect("at least one heartbeat");
    clocks.instant(last)
}

/// A command that records when it gets SIGTERM (in `term`) and then keeps running, writing a
/// heartbeat every 10 ms to `beats` until it is killed; it publishes `ready` once its trap is
/// installed and the first heartbeat is written.
fn term_ignoring_command(dir: &Path) -> (String, PathBuf, PathBuf, PathBuf) {
    let (ready, term, beats) = (dir.join("ready"), dir.join("term"), dir.join("heartbeats"));
    let script = format!(
        "trap 'date +%s%N > {term_tmp}; mv {term_tmp} {term}' TERM; \
         date +%s%N >> {beats}; {ready}; \
         while :; do date +%s%N >> {beats}; sleep 0.01; done",
        term_tmp = quote(&dir.join("term.tmp")),
        term = quote(&term),
        beats = quote(&beats),
        ready = publish(&ready, "ready"),
    );
    (script, ready, term, beats)
}

/// A scripted lease: safe until `first`, moved to `renewed.1` from `renewed.0` on; like a real
/// handle it reads `None` once the safe end has passed.
fn scripted(
    first: Instant,
    renewed: Option<(Instant, Instant)>,
) -> impl FnMut() -> Option<Instant> {
    move || {
        let now = Instant::now();
        let safe_until = match renewed {
            Some((at, later)) if now >= at => later,
            _ => first,
        };
        (now < safe_until).then_some(safe_until)
    }
}

#[tokio::test]
async fn a_term_ignoring_command_gets_term_grace_before_the_safe_end_and_is_dead_by_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, ready, term, beats) = term_ignoring_command(dir.path());
    let clocks = Clocks::now();
    let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
    wait_for_file(&ready).await;
    let grace = Duration::from_millis(600);
    let safe_until = Instant::now() + Duration::from_millis(1500);
    let outcome = supervise(
        &mut child,
        std::future::pending::<()>(),
        scripted(safe_until, None),
        grace,
    )
    .await
    .expect("supervise");
    let Outcome::Stopped { why, terminated } = outcome else {
        panic!("the command ended by itself: {outcome:?}");
    };
    assert_eq!(
        why,
        Stop::NotRenewed { safe_until },
        "stopped for the wrong reason"
    );
    assert!(terminated.killed, "SIGKILL was needed: {terminated:?}");
    assert_eq!(terminated.status.signal(), Some(9), "{terminated:?}");

    // SIGTERM came at safe_until − grace: not before (the renewal's chance), and early enough
    // that the command had the grace to react before the safe end.
    let term_seen = clocks.instant(
        std::fs::read_to_string(&term)
            .expect("the command saw SIGTERM")
            .trim()
            .parse()
            .expect("a date"),
    );
    assert!(
        term_seen + CLOCK_MAPPING >= safe_until - grace,
        "SIGTERM {:?} before safe_until - grace",
        (safe_until - grace).saturating_duration_since(term_seen)
    );
    assert!(
        term_seen < safe_until,
        "SIGTERM only {:?} after the safe end",
        term_seen.saturating_duration_since(safe_until)
    );
    // And the command was dead by the safe end (within the margin the store adds).
    let last = last_heartbeat(&beats, &clocks);
    assert!(
        last <= safe_until + MIN_MARGIN,
        "the command still ran {:?} after safe_until",
        last.saturating_duration_since(safe_until)
    );
}

#[tokio::test]
async fn a_renewal_before_term_is_due_calls_the_termination_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, ready, term, beats) = term_ignoring_command(dir.path());
    let clocks = Clocks::now();
    // Safe until +1500 ms (SIGTERM due at +1000 ms), renewed at +300 ms to +2500 ms. The guard
    // kills by itself at the first safe end unless `supervise` tells it about the renewal.
    let grace = Duration::from_millis(500);
    let start = Instant::now();
    let first = start + Duration::from_millis(1500);
    let renewed = start + Duration::from_millis(2500);
    let mut child = Supervised::spawn(&sh(&script).kill_by(first)).expect("spawn");
    wait_for_file(&ready).await;
    let outcome = supervise(
        &mut child,
        std::future::pending::<()>(),
        scripted(first, Some((start + Duration::from_millis(300), renewed))),
        grace,
    )
    .await
    .expect("supervise");
    let Outcome::Stopped { why, terminated } = outcome else {
        panic!("the command ended by itself: {outcome:?}");
    };
    assert_eq!(
        why,
        Stop::NotRenewed {
            safe_until: renewed
        }
    );
    assert!(terminated.killed, "{terminated:?}");
    let term_seen = clocks.instant(
        std::fs::read_to_string(&term)
            .expect("the command saw SIGTERM")
            .trim()
            .parse()
            .expect("a date"),
    );
    // Not at first − grace: the renewal had moved the safe end.
    assert!(
        term_seen + CLOCK_MAPPING >= renewed - grace,
        "SIGTERM came {:?} before the renewed safe end's due time",
        (renewed - grace).saturating_duration_since(term_seen)
    );
    let last = last_heartbeat(&beats, &clocks);
    assert!(
        last <= renewed + MIN_MARGIN,
        "the command still ran {:?} after safe_until",
        last.saturating_duration_since(renewed)
    );
}

#[tokio::test]
async fn a_hold_that_ends_early_stops_the_command_at_once_and_kills_it_a_grace_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, ready, term, beats) = term_ignoring_command(dir.path());
    let clocks = Clocks::now();
    let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
    wait_for_file(&ready).await;
    let grace = Duration::from_millis(300);
    let ended_at = Instant::now();
    let safe_until = ended_at + Duration::from_secs(30);
    let outcome = supervise(
        &mut child,
        std::future::ready("taken"),
        scripted(safe_until, None),
        grace,
    )
    .await
    .expect("supervise");
    let Outcome::Stopped { why, terminated } = outcome else {
        panic!("the command ended by itself: {outcome:?}");
    };
    assert_eq!(why, Stop::Ended("taken"));
    assert!(terminated.killed, "{terminated:?}");
    assert!(term.exists(), "no SIGTERM first");
    let last = last_heartbeat(&beats, &clocks);
    assert!(
        last <= ended_at + grace + MIN_MARGIN,
        "the command still ran {:?} after the grace",
        last.saturating_duration_since(ended_at + grace)
    );
}

#[tokio::test]
async fn the_guard_kills_the_group_at_its_deadline_when_leasedlock_cannot_act() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, ready, _term, beats) = term_ignoring_command(dir.path());
    let clocks = Clocks::now();
    // Nobody supervises: like a leasedlock stopped with SIGSTOP right after the start.
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut child = Supervised::spawn(&sh(&script).kill_by(deadline)).expect("spawn");
    wait_for_file(&ready).await;
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("the guard did not kill the command")
        .expect("wait");
    assert!(
        Instant::now() >= deadline,
        "killed {:?} before the deadline",
        deadline.saturating_duration_since(Instant::now())
    );
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let last = last_heartbeat(&beats, &clocks);
    assert!(
        last <= deadline + MIN_MARGIN,
        "the command still ran {:?} after the deadline",
        last.saturating_duration_since(deadline)
    );
}

#[tokio::test]
async fn exit_status_passes_through() {
    let mut child = Supervised::spawn(&sh("exit 7")).expect("spawn");
    match supervise(
        &mut child,
        std::future::pending::<()>(),
        scripted(Instant::now() + Duration::from_secs(60), None),
        Duration::from_secs(1),
    )
    .await
    {
        Ok(Outcome::Exited(status)) => assert_eq!(exit::from_status(status), 7),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn environment_reaches_the_command() {
    let spec = sh(
        r#"test "$LEASEDLOCK_FENCING_TOKEN" = "001:00000:n" && test "$LEASEDLOCK_LOCK_NAME" = job"#,
    )
    .env(FENCING_TOKEN_ENV, "001:00000:n")
    .env(LOCK_NAME_ENV, "job");
    let mut child = Supervised::spawn(&spec).expect("spawn");
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_command_that_exits_on_sigterm_is_not_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let script = format!("{}; exec sleep 30", publish(&ready, "ready"));
    let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
    wait_for_file(&ready).await;
    match supervise(
        &mut child,
        std::future::ready(()),
        scripted(Instant::now() + Duration::from_secs(60), None),
        Duration::from_secs(5),
    )
    .await
    {
        Ok(Outcome::Stopped { terminated, .. }) => {
            assert!(!terminated.killed);
            // The guard reports the command's death by SIGTERM as 128 + 15.
            assert_eq!(exit::from_status(terminated.status), 143);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn background_processes_of_a_stopped_command_are_killed_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "sleep 30 >/dev/null 2>&1 & {}; wait",
        publish(&pid_file, "$!")
    );
    let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
    let pid: i32 = wait_for_file(&pid_file).await.trim().parse().expect("pid");
    let outcome = supervise(
        &mut child,
        std::future::ready(()),
        scripted(Instant::now() + Duration::from_secs(60), None),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Outcome::Stopped { .. })),
        "{outcome:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || process_ended(pid)),
        "background sleep {pid} survived the stop"
    );
}

#[tokio::test]
async fn what_a_command_leaves_running_is_killed_when_it_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "sleep 30 >/dev/null 2>&1 & {}; exit 0",
        publish(&pid_file, "$!")
    );
    let mut child = Supervised::spawn(&sh(&script)).expect("spawn");
    let outcome = supervise(
        &mut child,
        std::future::pending::<()>(),
        scripted(Instant::now() + Duration::from_secs(60), None),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(&outcome, Ok(Outcome::Exited(status)) if status.success()),
        "{outcome:?}"
    );
    let pid: i32 = wait_for_file(&pid_file).await.trim().parse().expect("pid");
    // SIGKILL went out before `supervise` returned; the kernel ends the process right after.
    assert!(
        eventually(Duration::from_secs(5), || process_ended(pid)),
        "background sleep {pid} outlived the command"
    );
}

#[tokio::test]
async fn commands_that_cannot_start_get_shell_exit_codes() {
    let missing = ChildSpec::from_argv(&["/nonexistent/leasedlock-test".into()])
        .expect("argv")
        .guard_program(BIN);
    let mut child = Supervised::spawn(&missing).expect("the guard starts");
    let status = child.wait().await.expect("wait");
    assert_eq!(exit::from_status(status), exit::NOT_FOUND);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").expect("write");
    let not_exec = ChildSpec::from_argv(&[file.into_os_string()])
        .expect("argv")
        .guard_program(BIN);
    let mut child = Supervised::spawn(&not_exec).expect("the guard starts");
    let status = child.wait().await.expect("wait");
    assert_eq!(exit::from_status(status), exit::CANNOT_EXECUTE);

    // No guard program at all: that is our failure, not the command's.
    let no_guard = ChildSpec::from_argv(&["true".into()])
        .expect("argv")
        .guard_program("/nonexistent/leasedlock");
    match Supervised::spawn(&no_guard) {
        Err(e @ SpawnError::Other(_)) => assert_eq!(e.exit_code(), exit::WRAPPER_FAILED),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_guard_refuses_to_run_outside_a_group_of_its_own() {
    // Run directly, it would share the test's process group: SIGKILL to it must not be possible.
    let mut guard = std::process::Command::new(BIN)
        .args([
            leasedlock_cli::guard::GUARD_ARG,
            &std::process::id().to_string(),
            "text",
            "-",
            "--",
            "true",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the guard");
    let mut status = None;
    assert!(
        eventually(LIMIT, || {
            status = guard.try_wait().expect("try_wait");
            status.is_some()
        }),
        "the guard did not exit"
    );
    // It has exited, so its stderr is closed and the read ends.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut guard.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.and_then(|s| s.code()), Some(i32::from(exit::USAGE)));
    assert!(stderr.contains("process group"), "{stderr}");
}
