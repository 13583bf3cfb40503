//! The shared end-to-end scenarios (`leasedlock-scenarios`), unchanged, on the async-std
//! adapter, against Mosquitto (`LEASEDLOCK_TEST_BROKER`, default 127.0.0.1:1883) and an
//! in-process emulator.

use leasedlock_async_std_e2e::runtime::AsyncStd;

fn run(f: impl std::future::Future<Output = ()>) {
    async_std::task::block_on(f);
}

leasedlock_scenarios::scenario_tests!(AsyncStd, run);
