//! Where the benchmark runs: a broker and one emulator serving the state store on it.

use leasedlock_scenarios::env::shared_broker;
use leasedlock_scenarios::{Env, PrivateBroker};

/// The broker and the emulator, stopped (emulator first) when dropped.
#[derive(Debug)]
pub struct World {
    // Field order is drop order: the emulator leaves before its broker stops.
    env: Env,
    _broker: Option<PrivateBroker>,
}

impl World {
    /// With `LEASEDLOCK_TEST_BROKER` set, that broker (nothing else may serve the state-store
    /// request topic on it during the run); otherwise a private Mosquitto on a free port, so
    /// other users of the shared broker neither disturb the numbers nor are disturbed.
    pub fn start() -> World {
        let (broker, host, port) = if std::env::var_os("LEASEDLOCK_TEST_BROKER").is_some() {
            let (host, port) = shared_broker();
            (None, host, port)
        } else {
            let b = PrivateBroker::start();
            let port = b.port();
            (Some(b), "127.0.0.1".to_string(), port)
        };
        World {
            env: Env::on(&host, port, true),
            _broker: broker,
        }
    }

    /// Broker host.
    pub fn host(&self) -> &str {
        self.env.host()
    }

    /// Broker port.
    pub fn port(&self) -> u16 {
        self.env.port()
    }
}

/// A client id no other run or client uses.
pub fn client_id(prefix: &str) -> String {
    leasedlock_scenarios::util::unique(prefix)
}
