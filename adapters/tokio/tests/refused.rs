//! A broker that refuses the connection in its CONNACK: the connect wait ends with the reason as
//! a typed value (what an expired service-account token looks like), not only as text.

use std::error::Error as _;
use std::time::Duration;

use leasedlock_scenarios::PrivateBroker;
use leasedlock_tokio::{ConnackRefusal, ConnectError, Connection, ConnectionOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_carries_the_connack_reason() {
    let broker = PrivateBroker::start_refusing_anonymous();
    let options = ConnectionOptions::new("127.0.0.1", broker.port(), "refused-client")
        .connect_timeout(Duration::from_secs(1));
    let err = match Connection::connect(options).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a broker that refuses anonymous clients"),
    };
    assert_eq!(err, ConnectError::Refused(ConnackRefusal::NotAuthorized));
    let reason = err
        .source()
        .and_then(|s| s.downcast_ref::<ConnackRefusal>())
        .expect("the reason is the error's source");
    assert_eq!(reason.code(), 0x87);
    assert_eq!(reason.to_string(), "not authorized (reason code 0x87)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_is_not_refused_still_times_out_with_the_last_error() {
    // Nothing listens: no CONNACK at all, so no refusal.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let options = ConnectionOptions::new("127.0.0.1", port, "nobody-there")
        .connect_timeout(Duration::from_millis(500));
    match Connection::connect(options).await {
        Err(ConnectError::Timeout(Some(cause))) => {
            assert!(cause.contains("Connection refused"), "{cause}")
        }
        Err(other) => panic!("expected a timeout with the last error, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}
