//! One attempt at a lease: hold it for a short job, then release it.
//!
//! Needs a broker and a state store, e.g. `bash scripts/mosquitto.sh start` and
//! `cargo run -p leasedlock-emulator -- --broker 127.0.0.1:1883`, then
//! `cargo run -p leasedlock-tokio --example single_shot_lease`.

use std::time::Duration;

use leasedlock_tokio::{AcquireOptions, Connection, ConnectionOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker();
    let id = format!("single-shot-{}", std::process::id());
    let conn = Connection::connect(ConnectionOptions::new(host, port, id)).await?;
    let lease = conn.lease("examples/nightly-report")?;

    if !lease
        .acquire(Duration::from_secs(10), &AcquireOptions::new())
        .await?
    {
        let holder = lease.holder().await?;
        println!("someone else runs the job: {holder:?}");
        return Ok(());
    }
    let token = lease.token()?;
    println!(
        "got the lease (fencing token {token}); working until {:?}",
        lease.safe_until()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("released: {:?}", lease.release().await?);
    conn.close().await;
    Ok(())
}

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}
