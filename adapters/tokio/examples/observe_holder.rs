//! Watch who holds a lease: every acquisition, release and expiry, until Ctrl-C.
//!
//! Needs a broker and a state store, e.g. `bash scripts/mosquitto.sh start` and
//! `cargo run -p leasedlock-emulator -- --broker 127.0.0.1:1883`, then
//! `cargo run -p leasedlock-tokio --example observe_holder` (and the `leader` example beside it).

use leasedlock_tokio::{Connection, ConnectionOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker();
    let id = format!("observer-{}", std::process::id());
    let conn = Connection::connect(ConnectionOptions::new(host, port, id)).await?;
    let lease = conn.lease("examples/scheduler")?;
    println!("holder now: {:?}", lease.holder().await?);
    let mut changes = lease.observe().await?;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(c)) if c.held => println!("held by {:?}", c.holder),
                Some(Ok(_)) => println!("free"),
                // The registration lapsed after a reconnect: changes may have been missed.
                Some(Err(lapse)) => println!("{lapse}; holder now: {:?}", lease.holder().await?),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Dropping the stream unregisters the observation.
    drop(changes);
    conn.close().await;
    Ok(())
}

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}
