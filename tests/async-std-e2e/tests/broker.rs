//! The transport against a real Mosquitto with no state store behind it: connecting, request
//! outcomes when nobody serves the store, closing, and `Connection::close` completing promptly
//! whatever the connection is doing (connected, broker gone, broker restarting). Each test runs
//! on its own private Mosquitto, so restarting it disturbs nobody and no other test binary's
//! emulator answers its requests.

use std::time::{Duration, Instant};

use leasedlock_async_std::{
    Connection, ConnectionOptions, ConnectionState, SetOptions, StoreError, CLOSE_GRACE,
};
use leasedlock_scenarios::PrivateBroker;

/// What a close may take: the driver's grace plus scheduling slack.
const CLOSE_BOUND: Duration = Duration::from_millis(CLOSE_GRACE.as_millis() as u64 + 1000);

fn options(port: u16, id: &str) -> ConnectionOptions {
    ConnectionOptions::new("127.0.0.1", port, format!("{id}-{}", std::process::id()))
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_millis(800))
}

async fn close_bounded(conn: &Connection) {
    let started = Instant::now();
    let closed = async {
        conn.close().await;
        true
    };
    let hung = async {
        async_std::task::sleep(CLOSE_BOUND * 2).await;
        false
    };
    assert!(
        futures_lite::future::or(closed, hung).await,
        "close() did not complete"
    );
    assert!(started.elapsed() <= CLOSE_BOUND, "{:?}", started.elapsed());
    assert_eq!(conn.state(), ConnectionState::Closed);
}

#[async_std::test]
async fn close_while_the_broker_is_down() {
    let mut broker = PrivateBroker::start();
    let conn = Connection::connect(options(broker.port(), "as-close-down"))
        .await
        .unwrap();
    broker.stop();
    // Let the driver notice and go through a few reconnect attempts and back-offs.
    async_std::task::sleep(Duration::from_millis(500)).await;
    close_bounded(&conn).await;
}

#[async_std::test]
async fn close_while_the_broker_restarts() {
    let mut broker = PrivateBroker::start();
    let conn = Connection::connect(options(broker.port(), "as-close-restart"))
        .await
        .unwrap();
    for round in 0..5u64 {
        broker.stop();
        async_std::task::sleep(Duration::from_millis(30 * round)).await;
        broker.resume();
        async_std::task::sleep(Duration::from_millis(20 * round)).await;
    }
    close_bounded(&conn).await;
}

#[async_std::test]
async fn stress_close_around_restarts() {
    let mut broker = PrivateBroker::start();
    for i in 0..40u64 {
        let conn = Connection::start(options(broker.port(), &format!("as-stress-{i}")))
            .await
            .unwrap();
        async_std::task::sleep(Duration::from_millis(i % 7 * 3)).await;
        if i % 2 == 0 {
            broker.stop();
        }
        async_std::task::sleep(Duration::from_millis(i % 5 * 4)).await;
        close_bounded(&conn).await;
        if i % 2 == 0 {
            broker.resume();
        }
    }
}

#[async_std::test]
async fn connects_and_closes() {
    let broker = PrivateBroker::start();
    let conn = Connection::connect(options(broker.port(), "as-connect"))
        .await
        .unwrap();
    assert_eq!(conn.state(), ConnectionState::Connected);
    close_bounded(&conn).await;
    // A closed connection refuses work with a typed error.
    let err = conn.state_store().get("k", None).await.unwrap_err();
    assert_eq!(err, StoreError::Closed);
}

#[async_std::test]
async fn request_without_a_store_times_out_after_being_sent() {
    // A private broker: on the shared one another binary's emulator may serve the store.
    let broker = PrivateBroker::start();
    let conn = Connection::connect(options(broker.port(), "as-nostore"))
        .await
        .unwrap();
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
    close_bounded(&conn).await;
}

/// A broker stand-in that accepts one MQTT connection, answers its CONNECT with a CONNACK and
/// then only reads: `ended` resolves when the client closes the connection (a DISCONNECT
/// followed by EOF, or EOF), i.e. when the client's driver stopped.
struct OneConnectionBroker {
    port: u16,
    ended: async_std::channel::Receiver<()>,
}

impl OneConnectionBroker {
    async fn start() -> OneConnectionBroker {
        use async_std::io::ReadExt;
        use async_std::io::WriteExt;
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, ended) = async_std::channel::bounded(1);
        async_std::task::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            // The CONNECT (the client sends nothing else before the CONNACK).
            let n = socket.read(&mut buf).await.unwrap_or(0);
            assert!(n > 0 && buf[0] == 0x10, "expected CONNECT");
            // CONNACK v5: no session, success, no properties.
            socket
                .write_all(&[0x20, 0x03, 0x00, 0x00, 0x00])
                .await
                .unwrap();
            while socket.read(&mut buf).await.unwrap_or(0) > 0 {}
            let _ = tx.send(()).await;
        });
        OneConnectionBroker { port, ended }
    }
}

#[async_std::test]
async fn dropped_handles_stop_the_driver() {
    let broker = OneConnectionBroker::start().await;
    let conn = Connection::connect(options(broker.port, "as-drop"))
        .await
        .unwrap();
    let store = conn.state_store();
    drop(conn);
    // The store handle keeps the driver alive: the request is taken and runs to its deadline
    // (nothing answers it here), and the connection stays open.
    let err = store
        .get("k", Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
    assert!(
        broker.ended.try_recv().is_err(),
        "the driver stopped with a handle alive"
    );
    // The last handle goes: the driver closes the connection and stops.
    drop(store);
    let ended = async { broker.ended.recv().await.is_ok() };
    let hung = async {
        async_std::task::sleep(CLOSE_BOUND * 2).await;
        false
    };
    assert!(
        futures_lite::future::or(ended, hung).await,
        "the driver kept the connection after the last handle was dropped"
    );
}

/// A request made just after `close()` returned must end with `Closed`, not wait forever: the
/// driver signalled the close before dropping its inbox, so a command could slip in between
/// and its reply was never sent.
#[async_std::test]
async fn requests_right_after_close_are_refused() {
    let broker = PrivateBroker::start();
    for i in 0..10 {
        let conn = Connection::connect(options(broker.port(), &format!("as-after-close-{i}")))
            .await
            .unwrap();
        let store = conn.state_store();
        conn.close().await;
        let refused = async { Some(store.get("k", None).await) };
        let hung = async {
            async_std::task::sleep(Duration::from_secs(3)).await;
            None
        };
        let got = futures_lite::future::or(refused, hung).await;
        assert_eq!(got, Some(Err(StoreError::Closed)), "round {i}");
    }
}
