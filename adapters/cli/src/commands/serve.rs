//! `leasedlock serve`: the state store (the emulator) for local development and tests, on a
//! given broker or on the embedded one.

use leasedlock_emulator::{Emulator, EmulatorConfig, TlsOptions};

use crate::args::{GlobalOptions, ServeArgs};
use crate::commands::common::{read_password, Report, ShutdownSignals};
use crate::embedded_broker::EmbeddedBroker;
use crate::exit;

/// Runs until SIGINT or SIGTERM; prints one `ready` line (text or JSON) once requests are served.
pub async fn run(global: &GlobalOptions, args: &ServeArgs) -> u8 {
    let report = Report::new(global.json);
    let mut signals = ShutdownSignals::new();
    let (broker, addr) = match &global.broker {
        Some(addr) => (None, addr.clone()),
        None => match EmbeddedBroker::start(args.listen).await {
            Ok(b) => {
                let local = b.local_addr();
                let addr = crate::args::BrokerAddr {
                    host: local.ip().to_string(),
                    port: local.port(),
                    tls: false,
                };
                (Some(b), addr)
            }
            Err(e) => {
                report.error(&e.to_string());
                return exit::NO;
            }
        },
    };
    let mut config = EmulatorConfig::new(addr.host.clone(), addr.port);
    if let Some(id) = &global.client_id {
        config.client_id = id.clone();
    }
    config.data_dir = args.data_dir.clone();
    if let Some(user) = &global.username {
        let password = match read_password(global) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                report.error(&e);
                return exit::NO;
            }
        };
        config.credentials = Some((user.clone(), password));
    }
    if broker.is_none()
        && (global.tls || addr.tls || global.tls_ca.is_some() || global.tls_cert.is_some())
    {
        config.tls = Some(TlsOptions {
            ca_file: global.tls_ca.clone(),
            client_cert: global.tls_cert.clone().zip(global.tls_key.clone()),
        });
    }
    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            report.error(&format!("the state store could not start on {addr}: {e}"));
            if let Some(b) = broker {
                b.stop().await;
            }
            return exit::UNREACHABLE;
        }
    };
    let embedded = broker.is_some();
    if global.json {
        report.json(&serde_json::json!({
            "event": "ready",
            "broker": addr.to_string(),
            "embedded_broker": embedded,
        }));
    } else if embedded {
        report.line(&format!(
            "state store ready on {addr} (embedded MQTT 5 broker, mqtt5 crate); Ctrl-C stops it"
        ));
    } else {
        report.line(&format!(
            "state store ready, serving through {addr}; Ctrl-C stops it"
        ));
    }
    signals.recv().await;
    emulator.shutdown().await;
    if let Some(b) = broker {
        b.stop().await;
    }
    exit::OK
}
