//! End-to-end checks of the transport against a real Mosquitto (no state store behind it):
//! connecting, TCP_NODELAY round trips through the broker, request outcomes when nobody serves
//! the store, observation clean-up and closing. The broker's port is `LEASEDLOCK_MQTT_PORT`
//! (default 1883); `scripts/mosquitto.sh start` provides it.

use std::time::Duration;

use leasedlock_async_std::{
    Connection, ConnectionOptions, ConnectionState, SetOptions, StoreError,
};

fn port() -> u16 {
    std::env::var("LEASEDLOCK_MQTT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1883)
}

fn options(id: &str) -> ConnectionOptions {
    ConnectionOptions::new("127.0.0.1", port(), format!("{id}-{}", std::process::id()))
        .request_timeout(Duration::from_millis(800))
}

#[async_std::test]
async fn connects_and_closes() {
    let conn = Connection::connect(options("as-connect")).await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Connected);
    conn.close().await;
    assert_eq!(conn.state(), ConnectionState::Closed);
    // A closed connection refuses work with a typed error.
    let err = conn.state_store().get("k", None).await.unwrap_err();
    assert_eq!(err, StoreError::Closed);
}

#[async_std::test]
async fn request_without_a_store_times_out_after_being_sent() {
    let conn = Connection::connect(options("as-nostore")).await.unwrap();
    let err = conn
        .state_store()
        .set(
            "k",
            "v",
            &SetOptions::new().timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Timeout { sent: true });
    conn.close().await;
}

#[async_std::test]
async fn dropped_handles_stop_the_driver() {
    let conn = Connection::connect(options("as-drop")).await.unwrap();
    let store = conn.state_store();
    drop(conn);
    // The store handle keeps the driver alive.
    let err = store
        .get("k", Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Timeout { sent: true });
}
