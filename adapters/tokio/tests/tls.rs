//! TLS end to end: a private Mosquitto with a TLS listener that requires client certificates,
//! certificates made on the fly. Checks that the rustls configuration built from
//! `TlsOptions` (custom CA, client certificate and key) connects, and that a missing client
//! certificate, an untrusted server and a closed port are connection errors, not hangs, each
//! with its own cause.

use std::time::Duration;

use leasedlock_scenarios::tls::TlsBroker;
use leasedlock_tokio::{ConnectError, Connection, ConnectionOptions, ConnectionState, TlsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_custom_ca_and_client_certificate() {
    let broker = TlsBroker::start();
    let pki = &broker.pki;
    let options = |id: &str, tls: TlsOptions| {
        ConnectionOptions::new("127.0.0.1", broker.tls_port, id)
            .tls(tls)
            .connect_timeout(Duration::from_secs(2))
    };

    let good = TlsOptions::new()
        .ca_file(&pki.ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let conn = Connection::connect(options("tls-ok", good))
        .await
        .expect("TLS connects");
    assert_eq!(conn.state(), ConnectionState::Connected);
    conn.close().await;

    // The broker requires a client certificate: our CA verified the server (the handshake got
    // that far), and the broker refused us with TLS's "certificate required" alert.
    let no_cert = TlsOptions::new().ca_file(&pki.ca);
    let r = Connection::connect(options("tls-nocert", no_cert)).await;
    let cause = connect_cause(r);
    assert!(
        cause.contains("received fatal alert: CertificateRequired"),
        "{cause}"
    );

    // A server whose certificate our CA did not sign is refused by our own verification.
    let wrong_ca = TlsOptions::new()
        .ca_file(&pki.other_ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let r = Connection::connect(options("tls-wrongca", wrong_ca)).await;
    let cause = connect_cause(r);
    assert!(
        cause.contains("invalid peer certificate: UnknownIssuer"),
        "{cause}"
    );

    // Nothing listening: refused before any TLS, which the causes above must not be.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let good = TlsOptions::new()
        .ca_file(&pki.ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let r = Connection::connect(
        ConnectionOptions::new("127.0.0.1", closed_port, "tls-refused")
            .tls(good)
            .connect_timeout(Duration::from_secs(2)),
    )
    .await;
    let cause = connect_cause(r);
    assert!(cause.contains("Connection refused"), "{cause}");
    assert!(!cause.contains("certificate"), "{cause}");
}

/// The cause of a failed connect: the connect wait ended with the last connection error.
fn connect_cause(r: Result<Connection, ConnectError>) -> String {
    match r {
        Err(ConnectError::Timeout(Some(cause))) => cause,
        Err(other) => panic!("expected the connect wait to end with a cause, got {other:?}"),
        Ok(_) => panic!("connected where the connection must fail"),
    }
}

/// The CA file is read again before every reconnection attempt, as the token file is: a
/// connection started while its CA file still holds a CA that did not sign the broker's
/// certificate (refused by our own verification) connects once the file holds the right one,
/// as after a CA rotation that updates a mounted trust bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_ca_file_is_read_again_before_reconnecting() {
    let broker = TlsBroker::start();
    let pki = &broker.pki;
    let ca = pki.ca.with_file_name("mounted-ca.pem");
    std::fs::copy(&pki.other_ca, &ca).expect("old CA in place");
    let tls = TlsOptions::new()
        .ca_file(&ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let conn = Connection::start(
        ConnectionOptions::new("127.0.0.1", broker.tls_port, "tls-rotated-ca")
            .tls(tls)
            .connect_timeout(Duration::from_secs(2))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await
    .expect("started");
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ConnectionState::Disconnected(cause) = conn.state() {
                if cause.contains("UnknownIssuer") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the old CA is refused first: {:?}",
        conn.state()
    );

    std::fs::copy(&pki.ca, &ca).expect("rotated CA in place");
    let connected = tokio::time::timeout(Duration::from_secs(10), conn.wait_connected()).await;
    assert!(
        matches!(connected, Ok(Ok(()))),
        "connects with the rotated CA: {:?}",
        conn.state()
    );
    conn.close().await;
}
