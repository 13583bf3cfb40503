//! Test support: the emulator running on its own tokio runtime thread, so async-std tests can
//! use it without tokio in the adapter.

pub mod runtime;

use std::sync::OnceLock;
use std::time::Duration;

use leasedlock_emulator::{Emulator, EmulatorConfig, Snapshot};

/// The test broker's host and port: `LEASEDLOCK_TEST_BROKER` (`host:port`, default
/// `127.0.0.1:1883`), the one variable every test reads.
pub fn broker() -> (String, u16) {
    leasedlock_scenarios::env::shared_broker()
}

/// The emulator of this test process. One per process: two emulators on one broker would both
/// answer every request from their own stores.
pub fn store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| TestStore::start("shared"))
}

/// A running emulator with a private client id; stopped when dropped.
pub struct TestStore {
    runtime: Option<tokio::runtime::Runtime>,
    emulator: Option<Emulator>,
}

impl TestStore {
    /// Starts an emulator against the test broker.
    pub fn start(name: &str) -> TestStore {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (host, port) = broker();
        let mut config = EmulatorConfig::new(host, port);
        config.client_id = format!("emu-{name}-{}", std::process::id());
        let emulator = runtime
            .block_on(Emulator::start(config))
            .expect("emulator must start (is Mosquitto running? scripts/mosquitto.sh start)");
        TestStore {
            runtime: Some(runtime),
            emulator: Some(emulator),
        }
    }

    /// The store's counters.
    pub fn snapshot(&self) -> Snapshot {
        self.emulator
            .as_ref()
            .map(Emulator::snapshot)
            .unwrap_or_default()
    }

    /// Waits (up to 5 s) until `check` holds for the snapshot.
    pub async fn wait_for(&self, check: impl Fn(&Snapshot) -> bool) -> Snapshot {
        for _ in 0..100 {
            let s = self.snapshot();
            if check(&s) {
                return s;
            }
            async_std::task::sleep(Duration::from_millis(50)).await;
        }
        self.snapshot()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let (Some(rt), Some(emu)) = (self.runtime.take(), self.emulator.take()) {
            rt.block_on(emu.shutdown());
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
