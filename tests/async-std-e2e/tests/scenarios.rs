//! The shared end-to-end scenarios (`leasedlock-scenarios`), unchanged, on the async-std
//! adapter, against Mosquitto (`LEASEDLOCK_TEST_BROKER`, default 127.0.0.1:1883) and an
//! in-process emulator.

use leasedlock_async_std_e2e::runtime::AsyncStd;
use leasedlock_scenarios::{scenarios, Env, PrivateBroker};

fn run(f: impl std::future::Future<Output = ()>) {
    async_std::task::block_on(f);
}

#[test]
fn store_operations() {
    let env = Env::with_emulator();
    run(scenarios::store_operations(&AsyncStd, &env));
}

#[test]
fn lease_operations() {
    let env = Env::with_emulator();
    run(scenarios::lease_operations(&AsyncStd, &env));
}

#[test]
fn lock_operations() {
    let env = Env::with_emulator();
    run(scenarios::lock_operations(&AsyncStd, &env));
}

#[test]
fn leader_operations() {
    let env = Env::with_emulator();
    run(scenarios::leader_operations(&AsyncStd, &env));
}

#[test]
fn contention_with_fenced_writes() {
    let env = Env::with_emulator();
    run(scenarios::contention_with_fenced_writes(&AsyncStd, &env));
}

#[test]
fn failover_when_holder_dies() {
    let env = Env::with_emulator();
    run(scenarios::failover_when_holder_dies(&AsyncStd, &env));
}

#[test]
fn broker_restart_mid_lease() {
    let mut broker = PrivateBroker::start();
    let env = Env::on("127.0.0.1", broker.port(), true);
    run(scenarios::broker_restart_mid_lease(
        &AsyncStd,
        &env,
        &mut broker,
    ));
}

#[test]
fn dropped_futures_leave_nothing_behind() {
    let env = Env::with_emulator();
    run(scenarios::dropped_futures_leave_nothing_behind(
        &AsyncStd, &env,
    ));
}

#[test]
fn garbage_replies_give_typed_errors() {
    let env = Env::bare();
    run(scenarios::garbage_replies_give_typed_errors(
        &AsyncStd, &env,
    ));
}
