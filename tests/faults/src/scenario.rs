//! What the scenario tests share: starting a world with the right binaries, record predicates,
//! and the final judgement of a log.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use leasedlock_core::hlc::Hlc;

use crate::clock::now_ns;
use crate::procs::{Bins, Proc, World, PROTECTED};
use crate::record::{check_safety, stale_writes, Hold, Record, WriteOutcome};

/// The bound on waiting for a fault's consequence (a loss, a take-over).
pub const FAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound on a participant finishing once the fault healed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a world with this crate's binaries (paths from cargo, given by the test).
pub fn world(contender: &str, stamp: &str) -> Result<World, String> {
    World::start(Bins::locate(contender, stamp)?)
}

/// `who` recorded a hold.
pub fn holds_by(who: &str) -> impl Fn(&Record) -> bool + '_ {
    move |r| matches!(r, Record::Held { who: w, .. } if w == who)
}

/// `who` wrote a note starting with `prefix`.
pub fn note_by<'a>(who: &'a str, prefix: &'a str) -> impl Fn(&Record) -> bool + 'a {
    move |r| matches!(r, Record::Note { who: w, text, .. } if w == who && text.starts_with(prefix))
}

/// `who` had a fenced write applied.
pub fn applied_write_by(who: &str) -> impl Fn(&Record) -> bool + '_ {
    move |r| {
        matches!(r, Record::Write { who: w, outcome: WriteOutcome::Applied, stale: false, .. }
            if w == who)
    }
}

/// Waits for `proc` to exit and checks its status is `expected`.
pub fn expect_exit(
    world: &World,
    proc: &mut Proc,
    expected: i32,
    timeout: Duration,
) -> Result<ExitStatus, String> {
    let status = proc
        .wait(timeout)
        .map_err(|e| format!("{e}\n{}", world.dump(&[])))?;
    if status.code() != Some(expected) {
        return Err(format!(
            "{} exited with {status}, expected {expected}\n{}",
            proc.name(),
            world.dump(&[proc])
        ));
    }
    Ok(status)
}

/// What a scenario expects of stale writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Someone lost the lock and must have had its stale write refused.
    Refused,
    /// Nobody needs to have lost it (none may be applied all the same).
    Optional,
}

/// The safety checks over the whole log, plus: every participant in `who` held the lock at
/// least once, and what `stale` asks. Returns the holds.
pub fn judge(world: &World, who: &[&str], stale: Stale) -> Result<Vec<Hold>, String> {
    let records = world.records();
    let fail = |e: String| format!("{e}\n{}", world.dump(&[]));
    let holds = check_safety(&records).map_err(fail)?;
    for w in who {
        if !holds.iter().any(|h| h.who == *w) {
            return Err(fail(format!("{w} never held the lock")));
        }
    }
    let (refused, applied) = stale_writes(&records);
    if applied > 0 {
        return Err(fail(format!("{applied} stale writes were applied")));
    }
    if stale == Stale::Refused && refused == 0 {
        return Err(fail("no stale write was made and refused".into()));
    }
    Ok(holds)
}

/// Runs a scenario, panicking with its message on failure.
pub fn run(scenario: impl FnOnce() -> Result<(), String>) {
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

/// The first token `who` held.
pub fn first_token(world: &World, who: &str) -> Result<Hlc, String> {
    world
        .records()
        .into_iter()
        .find_map(|r| match r {
            Record::Held { who: w, token, .. } if w == who => Some(token),
            _ => None,
        })
        .ok_or_else(|| format!("{who} never held the lock\n{}", world.dump(&[])))
}

/// Writes the protected key with `leasedlock set` fenced with `token`, and records the outcome
/// as a stale write of `who` (which [`judge`] then checks).
pub fn stale_write_with_cli(world: &World, who: &str, token: Hlc) -> Result<(), String> {
    let start = now_ns();
    let mut set = Command::new(&world.bins.leasedlock);
    set.args(["--broker", &format!("127.0.0.1:{}", world.broker.port())])
        .args(["--request-timeout", "10s", "set", PROTECTED, "stale"])
        .args(["--fencing-token", &token.to_string()]);
    let mut proc = Proc::spawn(&format!("{who}-stale-write"), set, world.dir())?;
    let status = proc.wait(EXIT_TIMEOUT)?;
    // Exit status 4: the store refused the request.
    let outcome = match status.code() {
        Some(0) => WriteOutcome::Applied,
        Some(4) => WriteOutcome::Refused,
        _ => WriteOutcome::Unknown(format!("exit-{status}")),
    };
    world
        .log
        .append(&Record::Write {
            start,
            end: now_ns(),
            who: who.to_string(),
            token,
            outcome,
            stale: true,
        })
        .map_err(|e| format!("log: {e}"))?;
    Ok(())
}
