//! The infrastructure restarts: the scenario's Mosquitto while the lock changes hands, and its
//! emulator (`leasedlock serve --data-dir`) between holds and during one. Every hold must
//! still be exclusive, tokens must keep increasing, the fence on the protected key must
//! survive, and everyone must finish.

use std::time::Duration;

use leasedlock_core::hlc::Hlc;
use leasedlock_faults::clock::now_ns;
use leasedlock_faults::procs::{ContenderSpec, Runtime, World, START_TIMEOUT};
use leasedlock_faults::record::{Record, WriteOutcome};
use leasedlock_faults::scenario::{
    expect_exit, first_token, judge, run, stale_write_with_cli, Stale, EXIT_TIMEOUT, FAULT_TIMEOUT,
};

fn world() -> Result<World, String> {
    leasedlock_faults::scenario::world(
        env!("CARGO_BIN_EXE_leasedlock-faults-contender"),
        env!("CARGO_BIN_EXE_leasedlock-faults-stamp"),
    )
}

/// Runs `a` and `b` for `rounds` holds of `hold` each, calls `restart` once one of them holds
/// the lock, and judges the log.
fn restart_while_held(
    rounds: u32,
    hold: Duration,
    restart: impl FnOnce(&mut World) -> Result<(), String>,
) -> Result<(), String> {
    let mut world = world()?;
    let spec = |id: &str, runtime| {
        let mut s = ContenderSpec::new(id, runtime, world.broker.port());
        s.rounds = rounds;
        s.hold = hold;
        s
    };
    let (a_spec, b_spec) = (spec("a", Runtime::Tokio), spec("b", Runtime::AsyncStd));
    let mut a = world.contender(&a_spec)?;
    let mut b = world.contender(&b_spec)?;
    world.wait_record(START_TIMEOUT, "a first hold", &mut [&mut a, &mut b], |r| {
        matches!(r, Record::Held { .. })
    })?;
    restart(&mut world)?;
    let restarted = now_ns();
    world
        .log
        .append(&Record::Note {
            at: restarted,
            who: "test".into(),
            text: "restarted".into(),
        })
        .map_err(|e| format!("log: {e}"))?;

    expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
    expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
    // The first token ever held is the oldest; after the restart the fence must still refuse it.
    let first = world
        .records()
        .into_iter()
        .find_map(|r| match r {
            Record::Held { who, .. } => Some(who),
            _ => None,
        })
        .ok_or("nobody held the lock")?;
    let token = first_token(&world, &first)?;
    stale_write_with_cli(&world, &first, token)?;
    let holds = judge(&world, &["a", "b"], Stale::Refused)?;
    if !holds.iter().any(|h| h.from > restarted) {
        return Err(format!(
            "no hold began after the restart\n{}",
            world.dump(&[])
        ));
    }
    Ok(())
}

/// Mosquitto restarts (SIGTERM, then started again on its port) at once: the emulator and both
/// clients lose their connections and sessions and must reconnect, re-subscribe and
/// re-register; the holder may keep its lease.
#[test]
fn mosquitto_restart() {
    run(|| {
        restart_while_held(4, Duration::from_millis(400), |world| {
            world.broker.stop()?;
            world.broker.start_again()
        })
    });
}

/// Mosquitto stays down until the holder has lost its lease (holds last twice the TTL), then
/// comes back: the lease expires in the store while nobody can reach it, and everyone must
/// recover.
#[test]
fn mosquitto_down_past_the_ttl() {
    run(|| {
        restart_while_held(2, Duration::from_secs(3), |world| {
            world.broker.stop()?;
            world.wait_record(
                FAULT_TIMEOUT,
                "a holder to lose the lock",
                &mut [],
                |r| matches!(r, Record::Note { text, .. } if text.starts_with("lost")),
            )?;
            world.broker.start_again()
        })
    });
}

/// The emulator crashes (SIGKILL) between holds and starts again with the same `--data-dir`:
/// the fenced key (written with `aio-persistence`) keeps its fence, so a write fenced just
/// below the last holder's token is refused; then two new contenders take turns on the new
/// emulator (registrations, notifications and fencing all work after the restart).
#[test]
fn emulator_restart_between_holds_keeps_the_fence() {
    run(|| {
        let mut world = world()?;
        let mut a = world.contender(&ContenderSpec::new(
            "a",
            Runtime::Tokio,
            world.broker.port(),
        ))?;
        expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
        world.emulator.crash();
        world.emulator.start_again()?;

        let last = world
            .records()
            .iter()
            .filter_map(|r| match r {
                Record::Write {
                    token,
                    outcome: WriteOutcome::Applied,
                    ..
                } => Some(token.clone()),
                _ => None,
            })
            .max()
            .ok_or("a made no fenced write")?;
        let below = Hlc::new(last.millis.saturating_sub(1), 0, last.node_bytes().clone())
            .map_err(|e| format!("token: {e}"))?;
        stale_write_with_cli(&world, "a", below)?;

        let spec = |id: &str, runtime| {
            let mut s = ContenderSpec::new(id, runtime, world.broker.port());
            s.rounds = 2;
            s.hold = Duration::from_millis(400);
            s
        };
        let mut b = world.contender(&spec("b", Runtime::AsyncStd))?;
        let mut c = world.contender(&spec("c", Runtime::Tokio))?;
        expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
        expect_exit(&world, &mut c, 0, EXIT_TIMEOUT)?;
        judge(&world, &["a", "b", "c"], Stale::Refused)?;
        Ok(())
    });
}

/// The emulator crashes and restarts right after the holder renewed, and a new contender
/// arrives at once. A store that forgot the lease on restart would let the newcomer's first
/// attempt win while the holder still believes in its lease (this failed 5 of 5 runs before the
/// emulator kept keys with an expiry in its `--data-dir`); now the newcomer must wait.
#[test]
fn emulator_restart_then_a_newcomer() {
    run(|| {
        let mut world = world()?;
        let mut a_spec = ContenderSpec::new("a", Runtime::Tokio, world.broker.port());
        // Renewals every second: the restart and the newcomer fit before the next one.
        a_spec.ttl = Duration::from_secs(3);
        // Long enough that the newcomer arrives while it still holds: it must wait for the release.
        a_spec.hold = Duration::from_secs(8);
        let mut a = world.contender(&a_spec)?;
        let renewed = |r: &Record| match r {
            Record::Held { who, token, .. } if who == "a" => Some(token.clone()),
            _ => None,
        };
        world.wait_record(START_TIMEOUT, "a to renew", &mut [&mut a], |_| {
            let tokens: std::collections::BTreeSet<_> =
                world.records().iter().filter_map(renewed).collect();
            tokens.len() >= 2
        })?;
        world.emulator.crash();
        world.emulator.start_again()?;
        let mut b = world.contender(&ContenderSpec::new(
            "b",
            Runtime::AsyncStd,
            world.broker.port(),
        ))?;
        expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
        expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
        judge(&world, &["a", "b"], Stale::Optional)?;
        Ok(())
    });
}
