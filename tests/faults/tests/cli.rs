//! `leasedlock lock NAME -- CMD` (and `elect`) under faults. The commands record heartbeats
//! with the stamp binary; the hard case is a command that ignores SIGTERM. `cli-a` is the
//! holder the fault hits; `cli-b` waits for the lock on a direct connection, beats a bounded
//! number of times, and makes one fenced write with its token; afterwards the test writes with
//! `cli-a`'s token, which the store must refuse.

use std::time::Duration;

use leasedlock_faults::procs::{wait_until, Proc, World, PROTECTED, START_TIMEOUT};
use leasedlock_faults::proxy::{Fault, FaultProxy};
use leasedlock_faults::record::Record;
use leasedlock_faults::scenario::{
    expect_exit, first_token, holds_by, judge, run, stale_write_with_cli, Stale, EXIT_TIMEOUT,
};
use nix::sys::signal::Signal;

/// `lock`: the lease of every participant, the grace its command gets between SIGTERM and
/// SIGKILL, and the bound on the wait for the lock.
const LOCK: (&str, &[&str]) = (
    "lock",
    &["--ttl", "2s", "--grace", "300ms", "--wait", "30s"],
);

/// `elect`: the same lease and grace; one term only, so a deposed leader exits.
const ELECT: (&str, &[&str]) = ("elect", &["--ttl", "2s", "--grace", "300ms", "--once"]);

/// Beats until killed, ignoring SIGTERM (and so does every child it starts).
const STUBBORN: &str = r#"trap '' TERM; while :; do "$STAMP" "$LOG"; sleep 0.02; done"#;

/// The exit status of `leasedlock lock` when the lease was lost while the command ran.
const LEASE_LOST: i32 = 123;

/// How long a command may outlive the wrapper that was killed before the check gives up.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(5);

fn world() -> Result<World, String> {
    leasedlock_faults::scenario::world(
        env!("CARGO_BIN_EXE_leasedlock-faults-contender"),
        env!("CARGO_BIN_EXE_leasedlock-faults-stamp"),
    )
}

/// Starts `cli-a`, the holder: `wrapper` through `port` running `script`; returns once its
/// command beats under the lock.
fn start_a(
    world: &World,
    (subcommand, args): (&str, &[&str]),
    port: u16,
    script: &str,
) -> Result<Proc, String> {
    let mut a = world.cli_under_lease("cli-a", port, subcommand, args, script)?;
    world.wait_record(
        START_TIMEOUT,
        "cli-a to hold",
        &mut [&mut a],
        holds_by("cli-a"),
    )?;
    Ok(a)
}

/// What every scenario ends with once `cli-b` held after `cli-a`: `cli-a`'s write fenced with
/// its old token is refused, the log is safe, and nothing of `cli-a`'s command is left.
fn a_was_replaced_safely(world: &World) -> Result<(), String> {
    stale_write_with_cli(world, "cli-a", first_token(world, "cli-a")?)?;
    judge(world, &["cli-a", "cli-b"], Stale::Refused)?;
    expect_commands_gone(world, "cli-a")
}

/// `cli-b`: waits for the lock, beats 25 times, writes the protected key fenced with its token.
fn start_b(world: &World, (subcommand, args): (&str, &[&str])) -> Result<Proc, String> {
    let script = format!(
        r#"set -e
i=0
while [ $i -lt 25 ]; do "$STAMP" "$LOG"; sleep 0.02; i=$((i+1)); done
"{cli}" --broker 127.0.0.1:{port} set {key} cli-b --fencing-token "$LEASEDLOCK_FENCING_TOKEN"
"$STAMP" "$LOG""#,
        cli = world.bins.leasedlock.display(),
        port = world.broker.port(),
        key = PROTECTED,
    );
    world.cli_under_lease("cli-b", world.broker.port(), subcommand, args, &script)
}

/// Fails if a command `who` ran is still alive `ORPHAN_TIMEOUT` after the check starts.
fn expect_commands_gone(world: &World, who: &str) -> Result<(), String> {
    let groups: Vec<_> = world
        .records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Held {
                who: w,
                group: Some(g),
                ..
            } if w == who => Some(nix::unistd::Pid::from_raw(g)),
            _ => None,
        })
        .collect();
    wait_until(
        ORPHAN_TIMEOUT,
        &format!("the commands of {who} to die"),
        || groups.iter().all(|g| !world.group_alive(*g)),
    )
    .map_err(|e| {
        format!(
            "{e}: the command outlived its lease holder\n{}",
            world.dump(&[])
        )
    })
}

/// The holder's connection is black-holed (a partition) while its command ignores SIGTERM.
/// The command must be dead by the time another holder can get the lock.
fn partitioned_holder_with_a_term_ignoring_command(wrapper: (&str, &[&str])) -> Result<(), String> {
    let world = world()?;
    let proxy = FaultProxy::start(world.broker.addr()).map_err(|e| format!("proxy: {e}"))?;
    let mut a = start_a(&world, wrapper, proxy.addr().port(), STUBBORN)?;
    let mut b = start_b(&world, wrapper)?;
    proxy.set(Fault::BlackHole);
    expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
    expect_exit(&world, &mut a, LEASE_LOST, EXIT_TIMEOUT)?;
    a_was_replaced_safely(&world)
}

#[test]
fn lock_partitioned_holder_with_a_term_ignoring_command() {
    run(|| partitioned_holder_with_a_term_ignoring_command(LOCK));
}

/// The same for a leader: `elect --once` deposed by a partition.
#[test]
fn elect_partitioned_leader_with_a_term_ignoring_command() {
    run(|| partitioned_holder_with_a_term_ignoring_command(ELECT));
}

/// `kill -9` of the `leasedlock lock` process: its command (which ignores SIGTERM) must die
/// with it, before the lease can pass to another holder.
#[test]
fn wrapper_killed_with_sigkill() {
    run(|| {
        let world = world()?;
        let a = start_a(&world, LOCK, world.broker.port(), STUBBORN)?;
        a.signal(Signal::SIGKILL)?;
        let mut b = start_b(&world, LOCK)?;
        expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
        a_was_replaced_safely(&world)
    });
}

/// `leasedlock lock` is stopped (SIGSTOP) past the TTL while its command, which ignores
/// SIGTERM, keeps running: a stopped wrapper cannot renew, so the command must be dead before
/// another holder can get the lock; after SIGCONT the wrapper reports the loss.
#[test]
fn wrapper_stopped_past_the_ttl() {
    run(|| {
        let world = world()?;
        let mut a = start_a(&world, LOCK, world.broker.port(), STUBBORN)?;
        a.signal(Signal::SIGSTOP)?;
        let mut b = start_b(&world, LOCK)?;
        let b_done = expect_exit(&world, &mut b, 0, EXIT_TIMEOUT);
        a.signal(Signal::SIGCONT)?;
        b_done?;
        expect_exit(&world, &mut a, LEASE_LOST, EXIT_TIMEOUT)?;
        a_was_replaced_safely(&world)
    });
}

/// The command exits by itself but leaves a background process (ignoring SIGTERM) in its
/// group: the group must be gone before the lock is released to the next holder.
#[test]
fn command_exits_leaving_a_background_process() {
    run(|| {
        let world = world()?;
        let script = format!(r#"( {STUBBORN} ) & "$STAMP" "$LOG"; sleep 0.1; exit 0"#);
        let mut a = start_a(&world, LOCK, world.broker.port(), &script)?;
        let mut b = start_b(&world, LOCK)?;
        expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
        expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
        a_was_replaced_safely(&world)
    });
}
