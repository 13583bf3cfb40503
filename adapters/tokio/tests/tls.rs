//! TLS end to end: a private Mosquitto with a TLS listener that requires client certificates,
//! certificates made on the fly. Checks that the rustls configuration built from
//! `TlsOptions` (custom CA, client certificate and key) connects, and that a missing client
//! certificate or an untrusted server are connection errors, not hangs.

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

    // The broker requires a client certificate.
    let no_cert = TlsOptions::new().ca_file(&pki.ca);
    let r = Connection::connect(options("tls-nocert", no_cert)).await;
    assert!(matches!(r, Err(ConnectError::Timeout(Some(_)))), "{r:?}");

    // A server whose certificate our CA did not sign is refused.
    let wrong_ca = TlsOptions::new()
        .ca_file(&pki.other_ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let r = Connection::connect(options("tls-wrongca", wrong_ca)).await;
    match r {
        Err(ConnectError::Timeout(Some(e))) => assert!(
            e.to_lowercase().contains("tls") || e.contains("certificate"),
            "{e}"
        ),
        other => panic!("untrusted server accepted: {other:?}"),
    }
}
