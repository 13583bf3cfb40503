//! An application that already runs its own MQTT 5 connection (rumqttc) and lets leasedlock use
//! it: no second connection. The application keeps polling its event loop and handles its own
//! topic; leasedlock gets every polled event first and says which ones were its own. While it
//! holds the lock `examples/attach` (renewed as it runs), the application publishes a heartbeat
//! on its own topic; Ctrl-C unlocks and ends. Run two copies to watch the second wait for the
//! first: the release reaches it as a key notification on its own connection.
//!
//! Needs a broker and a state store, e.g. `bash scripts/mosquitto.sh start` and
//! `cargo run -p leasedlock-emulator -- --broker 127.0.0.1:1883`, then
//! `cargo run -p leasedlock-tokio --example attach`.

use std::time::Duration;

use leasedlock_tokio::{attach, AttachOptions, Attached, LockOptions};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

const APP_TOPIC: &str = "examples/attach/heartbeat";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker();
    // The application's connection, as it would be without leasedlock. leasedlock must be told
    // the same client id: its holder values and reply topic are made from it, and the AIO
    // state store sends key notifications to the connection's real client id.
    let id = format!("attach-{}", std::process::id());
    let mut options = MqttOptions::new(id.clone(), host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_session_expiry_interval(Some(300));
    let mut network = rumqttc::NetworkOptions::new();
    // Without it every request/reply waits on Nagle's algorithm.
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, event_loop) = AsyncClient::new(options, 64);

    let options = AttachOptions::new(id.clone()).request_timeout(Duration::from_secs(2));
    let (conn, attached) = attach(client.clone(), options).await?;
    tokio::spawn(application_loop(event_loop, attached, client.clone()));
    conn.wait_connected().await?;

    let lock = conn.lock("examples/attach")?;
    println!("{id}: waiting for the lock");
    let options = LockOptions::new().renew(Duration::from_secs(3));
    let token = tokio::select! {
        token = lock.lock(Duration::from_secs(10), &options) => token?,
        _ = tokio::signal::ctrl_c() => {
            conn.close().await;
            return Ok(());
        }
    };
    println!("{id}: holding the lock (fencing token {token})");
    let mut beat = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                beat += 1;
                client
                    .publish(APP_TOPIC, QoS::AtLeastOnce, false, format!("{id} beat {beat}"))
                    .await?;
            }
            why = lock.lost() => {
                println!("{id}: lock lost: {why}");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                lock.unlock().await?;
                println!("{id}: unlocked");
                break;
            }
        }
    }
    conn.close().await;
    client.disconnect().await?;
    Ok(())
}

/// The application's own loop: every result goes to leasedlock first; what it does not claim
/// is the application's.
async fn application_loop(mut event_loop: EventLoop, attached: Attached, client: AsyncClient) {
    loop {
        let polled = event_loop.poll().await;
        if attached.handle(&polled) {
            continue;
        }
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Resume the session on reconnects; (re)subscribe the application's topic.
                event_loop.options.set_clean_start(false);
                // `try_`: never wait on the client from the loop that drains it.
                if let Err(e) = client.try_subscribe(APP_TOPIC, QoS::AtLeastOnce) {
                    eprintln!("subscribe: {e}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                println!("app message: {}", String::from_utf8_lossy(&p.payload));
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("connection: {e}; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}
