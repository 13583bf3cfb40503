//! Library clients under faults: holder `a` on one runtime, contender `b` on the other, and a
//! fault aimed at `a` (through its own proxy, or as signals). Each scenario runs once with `a`
//! on tokio and once with `a` on async-std.

use std::time::Duration;

use leasedlock_faults::clock::now_ns;
use leasedlock_faults::procs::{ContenderSpec, Proc, Runtime, World, START_TIMEOUT};
use leasedlock_faults::proxy::{Fault, FaultProxy};
use leasedlock_faults::record::{Record, WriteOutcome};
use leasedlock_faults::scenario::{
    applied_write_by, expect_exit, holds_by, judge, note_by, run, Stale, EXIT_TIMEOUT,
    FAULT_TIMEOUT,
};
use nix::sys::signal::Signal;

fn world() -> Result<World, String> {
    leasedlock_faults::scenario::world(
        env!("CARGO_BIN_EXE_leasedlock-faults-contender"),
        env!("CARGO_BIN_EXE_leasedlock-faults-stamp"),
    )
}

/// `a` on `runtime`, holding for `hold` through a fault proxy (healthy for now), and `b` on the
/// other runtime, connected directly and ready to contend.
fn holder_behind_a_proxy(
    world: &World,
    runtime: Runtime,
    hold: Duration,
) -> Result<(FaultProxy, Proc, Proc), String> {
    holder_behind_a_proxy_as(world, runtime, |a| a.hold = hold)
}

/// [`holder_behind_a_proxy`], with `a`'s spec set by `configure`.
fn holder_behind_a_proxy_as(
    world: &World,
    runtime: Runtime,
    configure: impl FnOnce(&mut ContenderSpec),
) -> Result<(FaultProxy, Proc, Proc), String> {
    let proxy = FaultProxy::start(world.broker.addr()).map_err(|e| format!("proxy: {e}"))?;
    let mut a_spec = ContenderSpec::new("a", runtime, proxy.addr().port());
    configure(&mut a_spec);
    let mut a = world.contender(&a_spec)?;
    world.wait_record(START_TIMEOUT, "a to hold", &mut [&mut a], holds_by("a"))?;
    let mut b = world.contender(&ContenderSpec::new(
        "b",
        runtime.other(),
        world.broker.port(),
    ))?;
    world.wait_record(
        START_TIMEOUT,
        "b to connect",
        &mut [&mut a, &mut b],
        note_by("b", "ready"),
    )?;
    Ok((proxy, a, b))
}

/// `a` holds through a proxy (for far longer than the scenario lasts, so only a loss ends its
/// hold), `b` waits on a direct connection; then the proxy applies `fault` to `a`. `b` must
/// take over only after `a` stopped acting as holder, and `a`'s write with its lost token must
/// be refused once the network heals.
fn holder_cut_off(runtime: Runtime, fault: Fault) -> Result<(), String> {
    let world = world()?;
    let (proxy, mut a, mut b) = holder_behind_a_proxy(&world, runtime, Duration::from_secs(120))?;

    proxy.set(fault);
    cut_off_until_b_took_over(&world, &proxy, &mut a, &mut b)?;
    Ok(())
}

/// With `a` cut off by `proxy`: waits for `b` to take over and write, heals the network, waits
/// for both to finish, and judges the log (`a` lost the lock, so its stale write must have been
/// refused). Returns the holds.
fn cut_off_until_b_took_over(
    world: &World,
    proxy: &FaultProxy,
    a: &mut Proc,
    b: &mut Proc,
) -> Result<Vec<leasedlock_faults::record::Hold>, String> {
    world.wait_record(
        FAULT_TIMEOUT,
        "b to take over and write",
        &mut [&mut *b],
        applied_write_by("b"),
    )?;
    proxy.set(Fault::Pass);
    expect_exit(world, b, 0, EXIT_TIMEOUT)?;
    expect_exit(world, a, 0, EXIT_TIMEOUT)?;
    judge(world, &["a", "b"], Stale::Refused)
}

/// `a` holds on a direct connection, `b` waits; `signal` hits `a` (then `after`, if any, once
/// `b` took over).
fn holder_signalled(runtime: Runtime, signal: Signal, after: Option<Signal>) -> Result<(), String> {
    let world = world()?;
    let mut a_spec = ContenderSpec::new("a", runtime, world.broker.port());
    a_spec.hold = Duration::from_secs(120);
    let mut a = world.contender(&a_spec)?;
    world.wait_record(START_TIMEOUT, "a to hold", &mut [&mut a], holds_by("a"))?;
    let mut b = world.contender(&ContenderSpec::new(
        "b",
        runtime.other(),
        world.broker.port(),
    ))?;
    world.wait_record(
        START_TIMEOUT,
        "b to connect",
        &mut [&mut a, &mut b],
        note_by("b", "ready"),
    )?;

    a.signal(signal)?;
    world.wait_record(
        FAULT_TIMEOUT,
        "b to take over and write",
        &mut [&mut b],
        applied_write_by("b"),
    )?;
    if let Some(after) = after {
        a.signal(after)?;
    }

    expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
    match after {
        // Resumed after its TTL: it must find the lock lost and its stale write refused.
        Some(_) => {
            expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
            judge(&world, &["a", "b"], Stale::Refused)?;
        }
        None => {
            a.wait(START_TIMEOUT)?;
            judge(&world, &["a", "b"], Stale::Optional)?;
        }
    }
    Ok(())
}

/// `a` holds through a proxy that resets its connection, and every reconnection attempt, a few
/// times; then the network heals. `a` keeps or loses its lock (either is safe); both finish.
fn holder_reset(runtime: Runtime) -> Result<(), String> {
    let world = world()?;
    let (proxy, mut a, mut b) = holder_behind_a_proxy(&world, runtime, Duration::from_secs(3))?;

    proxy.set(Fault::Reset);
    // The open connection and at least two reconnection attempts.
    leasedlock_faults::procs::wait_until(FAULT_TIMEOUT, "three resets", || proxy.resets() >= 3)
        .map_err(|e| format!("{e}\n{}", world.dump(&[&a])))?;
    proxy.set(Fault::Pass);

    expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
    expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
    let records = world.records();
    let a_lost = records.iter().any(note_by("a", "lost"));
    let stale = if a_lost {
        Stale::Refused
    } else {
        Stale::Optional
    };
    judge(&world, &["a", "b"], stale)?;
    Ok(())
}

/// Two lock handles of one connection in each process (`a.0`, `a.1` on `runtime` behind a
/// proxy, `b.0`, `b.1` on the other runtime, direct), all taking turns on the one lock. `a`'s
/// connection is reset a few times, then black-holed until a handle of `b` has written. Each
/// handle must exclude the other handle of its own connection exactly as it excludes the other
/// process's: no two of the four holds overlap, and tokens increase across all of them.
fn two_handles_per_connection(runtime: Runtime) -> Result<(), String> {
    let world = world()?;
    let proxy = FaultProxy::start(world.broker.addr()).map_err(|e| format!("proxy: {e}"))?;
    let spec = |id: &str, runtime: Runtime, port: u16| {
        let mut spec = ContenderSpec::new(id, runtime, port);
        spec.handles = 2;
        spec.rounds = 4;
        spec.hold = Duration::from_millis(300);
        spec
    };
    let mut a = world.contender(&spec("a", runtime, proxy.addr().port()))?;
    let any_hold_by_a = |r: &Record| matches!(r, Record::Held { who, .. } if who.starts_with("a."));
    world.wait_record(
        START_TIMEOUT,
        "a handle of a to hold",
        &mut [&mut a],
        any_hold_by_a,
    )?;
    let mut b = world.contender(&spec("b", runtime.other(), world.broker.port()))?;
    world.wait_record(
        START_TIMEOUT,
        "b to connect",
        &mut [&mut a, &mut b],
        note_by("b", "ready"),
    )?;

    proxy.set(Fault::Reset);
    leasedlock_faults::procs::wait_until(FAULT_TIMEOUT, "three resets", || proxy.resets() >= 3)
        .map_err(|e| format!("{e}\n{}", world.dump(&[&a, &b])))?;
    proxy.set(Fault::Pass);

    let cut_at = now_ns();
    proxy.set(Fault::BlackHole);
    world.wait_record(
        FAULT_TIMEOUT,
        "a handle of b to write while a is cut off",
        &mut [&mut b],
        |r| {
            matches!(r, Record::Write { who, start, outcome: WriteOutcome::Applied, stale: false, .. }
                if who.starts_with("b.") && *start > cut_at)
        },
    )?;
    proxy.set(Fault::Pass);

    expect_exit(&world, &mut b, 0, EXIT_TIMEOUT)?;
    expect_exit(&world, &mut a, 0, EXIT_TIMEOUT)?;
    let a_lost = world
        .records()
        .iter()
        .any(|r| matches!(r, Record::Note { who, text, .. } if who.starts_with("a.") && text.starts_with("lost")));
    let stale = if a_lost {
        Stale::Refused
    } else {
        Stale::Optional
    };
    judge(&world, &["a.0", "a.1", "b.0", "b.1"], stale)?;
    Ok(())
}

/// `a` holds the lock as a lease for 4 s with no auto-renew, behind a proxy; `b` waits on a
/// direct connection. The proxy goes half-open (requests arrive, no reply comes back) and `a`
/// re-acquires its held lease for only 1.2 s: the store applies the shorter PX, so the lock
/// passes to `b` about 1.2 s later, long before `a`'s 4 s grant would end. `a` never hears the
/// outcome, so its `safe_until` must already have come down to the shorter lease when the SET
/// left (issue 18, item 3).
fn shorter_reacquire_with_no_reply(runtime: Runtime) -> Result<(), String> {
    let world = world()?;
    let (proxy, mut a, mut b) = holder_behind_a_proxy_as(&world, runtime, |a| {
        a.ttl = Duration::from_secs(4);
        a.shorten_to = Some(Duration::from_millis(1200));
    })?;

    proxy.set(Fault::HalfOpen);
    world.trigger_shortening()?;
    let holds = cut_off_until_b_took_over(&world, &proxy, &mut a, &mut b)?;
    // The lock passed on because the shorter lease ran out, not the 4 s one.
    let (Some(a_hold), Some(b_hold)) = (
        holds.iter().find(|h| h.who == "a"),
        holds.iter().find(|h| h.who == "b"),
    ) else {
        return Err(format!("missing holds: {holds:?}"));
    };
    let passed_after = Duration::from_nanos(b_hold.from.saturating_sub(a_hold.from));
    if passed_after >= Duration::from_millis(3500) {
        return Err(format!(
            "b took over {passed_after:?} after a's hold began: the shorter SET did not apply\n{}",
            world.dump(&[])
        ));
    }
    Ok(())
}

macro_rules! on_both_runtimes {
    ($($tokio:ident, $async_std:ident => $scenario:expr;)*) => {$(
        #[test]
        fn $tokio() {
            run(|| $scenario(Runtime::Tokio));
        }
        #[test]
        fn $async_std() {
            run(|| $scenario(Runtime::AsyncStd));
        }
    )*};
}

on_both_runtimes! {
    black_hole_tokio, black_hole_async_std =>
        |rt| holder_cut_off(rt, Fault::BlackHole);
    // Longer than the request timeout and the lease: renewals time out, then arrive late.
    delay_tokio, delay_async_std =>
        |rt| holder_cut_off(rt, Fault::Delay(Duration::from_secs(2)));
    half_open_tokio, half_open_async_std =>
        |rt| holder_cut_off(rt, Fault::HalfOpen);
    reset_tokio, reset_async_std => holder_reset;
    // A GC pause: stopped for longer than the TTL, then resumed.
    sigstop_past_ttl_tokio, sigstop_past_ttl_async_std =>
        |rt| holder_signalled(rt, Signal::SIGSTOP, Some(Signal::SIGCONT));
    kill_9_tokio, kill_9_async_std =>
        |rt| holder_signalled(rt, Signal::SIGKILL, None);
    two_handles_per_connection_tokio, two_handles_per_connection_async_std =>
        two_handles_per_connection;
    shorter_reacquire_with_no_reply_tokio, shorter_reacquire_with_no_reply_async_std =>
        shorter_reacquire_with_no_reply;
}
