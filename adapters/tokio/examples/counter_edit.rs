//! A counter shared by many processes, incremented under a lock with a fenced write.
//!
//! Needs a broker and a state store, e.g. `bash scripts/mosquitto.sh start` and
//! `cargo run -p leasedlock-emulator -- --broker 127.0.0.1:1883`, then
//! `cargo run -p leasedlock-tokio --example counter_edit` (in several terminals at once).

use std::time::Duration;

use leasedlock_tokio::{Connection, ConnectionOptions, EditDecision};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker();
    let id = format!("counter-{}", std::process::id());
    let conn = Connection::connect(ConnectionOptions::new(host, port, id)).await?;
    let lock = conn.lock("examples/counter-lock")?;
    for _ in 0..10 {
        lock.edit(
            "examples/counter",
            Duration::from_secs(5),
            |current| async move {
                let n: u64 = current
                    .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                    .unwrap_or(0);
                EditDecision::Set((n + 1).to_string().into())
            },
        )
        .await?;
        let value = conn.state_store().get("examples/counter", None).await?;
        println!("counter is now {:?}", value.map(|v| v.value));
    }
    conn.close().await;
    Ok(())
}

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}
