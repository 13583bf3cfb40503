//! An auto-renewed leader: campaign, do leader work while the term lasts, campaign again after
//! a loss; Ctrl-C resigns (drain, then release). Run several copies to watch the handover.
//!
//! Needs a broker and a state store, e.g. `bash scripts/mosquitto.sh start` and
//! `cargo run -p leasedlock-emulator -- --broker 127.0.0.1:1883`, then
//! `cargo run -p leasedlock-tokio --example leader`.

use std::time::Duration;

use leasedlock_tokio::{Connection, ConnectionOptions, LeaderOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker();
    let id = format!("leader-{}", std::process::id());
    let conn = Connection::connect(ConnectionOptions::new(host, port, id.clone())).await?;
    let leader = conn.leader("examples/scheduler")?;
    leader
        .campaign(&LeaderOptions::new(Duration::from_secs(6)))
        .await?;
    println!("{id}: campaigning; current leader {:?}", leader.leader());

    loop {
        let term = tokio::select! {
            term = leader.elected() => term?,
            _ = tokio::signal::ctrl_c() => break,
        };
        println!(
            "{id}: elected (term {}, token {})",
            term.number(),
            term.token()
        );
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = term.cancelled() => {
                    println!("{id}: term ended: {:?}", leader.deposed().await);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    ticks += 1;
                    println!("{id}: leader work tick {ticks}");
                }
                _ = tokio::signal::ctrl_c() => {
                    leader.resign_after(async { println!("{id}: draining") }).await?;
                    println!("{id}: resigned");
                    conn.close().await;
                    return Ok(());
                }
            }
        }
    }
    leader.resign().await?;
    conn.close().await;
    Ok(())
}

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}
