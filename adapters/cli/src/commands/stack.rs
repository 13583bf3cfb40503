//! The local stack `demo` and `bench` run on: the embedded broker plus the emulator in this
//! process, or, with `--broker`, the state store already served there (an AIO broker, or a
//! `leasedlock serve`).

use leasedlock_emulator::{Emulator, EmulatorConfig};

use crate::args::{BrokerAddr, GlobalOptions};
use crate::commands::connect::Failure;
use crate::embedded_broker::EmbeddedBroker;
use crate::exit;

/// A broker address with, when we started them, the broker and the emulator behind it.
pub struct Stack {
    /// Where clients connect.
    pub addr: BrokerAddr,
    broker: Option<EmbeddedBroker>,
    emulator: Option<Emulator>,
}

impl Stack {
    /// With `--broker`: that broker, whose state store must already run. Without: an embedded
    /// broker on a free loopback port and an emulator on it.
    pub async fn start(global: &GlobalOptions) -> Result<Stack, Failure> {
        if let Some(addr) = &global.broker {
            return Ok(Stack {
                addr: addr.clone(),
                broker: None,
                emulator: None,
            });
        }
        let broker = EmbeddedBroker::start(([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| Failure::new(exit::NO, e.to_string()))?;
        let local = broker.local_addr();
        let addr = BrokerAddr {
            host: local.ip().to_string(),
            port: local.port(),
            tls: false,
        };
        let mut config = EmulatorConfig::new(addr.host.clone(), addr.port);
        config.client_id = format!("leasedlock-emulator-{}", std::process::id());
        let emulator = match Emulator::start(config).await {
            Ok(e) => e,
            Err(e) => {
                broker.stop().await;
                return Err(Failure::new(
                    exit::NO,
                    format!("the emulator did not start: {e}"),
                ));
            }
        };
        Ok(Stack {
            addr,
            broker: Some(broker),
            emulator: Some(emulator),
        })
    }

    /// Whether the broker and the store run in this process.
    pub fn is_embedded(&self) -> bool {
        self.broker.is_some()
    }

    /// Stops what this process started.
    pub async fn stop(self) {
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
        if let Some(broker) = self.broker {
            broker.stop().await;
        }
    }
}
