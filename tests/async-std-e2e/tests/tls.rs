//! TLS end to end on the async-std adapter: a private Mosquitto whose TLS listener requires a
//! client certificate, the emulator on its plain listener. A lock, a fenced write and a read
//! go through TLS; a missing client certificate, an untrusted server and a closed port are
//! connection errors, not hangs, each with its own cause.

use std::time::Duration;

use leasedlock_async_std::{
    ConnectError, Connection, ConnectionOptions, ConnectionState, LockOptions, SetOptions,
    TlsOptions,
};
use leasedlock_scenarios::tls::TlsBroker;
use leasedlock_scenarios::Env;

#[async_std::test]
async fn tls_with_custom_ca_and_client_certificate() {
    let broker = TlsBroker::start();
    let _env = Env::on("127.0.0.1", broker.plain_port, true);
    let pki = &broker.pki;
    let options = |id: &str, tls: TlsOptions| {
        ConnectionOptions::new(
            "127.0.0.1",
            broker.tls_port,
            format!("{id}-{}", std::process::id()),
        )
        .tls(tls)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(3))
    };

    let good = TlsOptions::new()
        .ca_file(&pki.ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let conn = Connection::connect(options("as-tls-ok", good))
        .await
        .expect("TLS connects");
    assert_eq!(conn.state(), ConnectionState::Connected);
    let lock = conn.lock("as-tls-lock").unwrap();
    let token = lock
        .lock(Duration::from_secs(5), &LockOptions::new())
        .await
        .expect("lock over TLS");
    let store = conn.state_store();
    let set = store
        .set("as-tls-key", "v", &SetOptions::new().fencing_token(token))
        .await
        .expect("fenced set over TLS");
    assert!(set.applied);
    let got = store.get("as-tls-key", None).await.unwrap().expect("value");
    assert_eq!(&got.value[..], b"v");
    lock.unlock().await.expect("unlock");
    conn.close().await;

    // The broker requires a client certificate: our CA verified the server (the handshake got
    // that far), and the broker refused us with TLS's "certificate required" alert.
    let no_cert = TlsOptions::new().ca_file(&pki.ca);
    let r = Connection::connect(options("as-tls-nocert", no_cert)).await;
    let cause = connect_cause(r);
    assert!(
        cause.contains("received fatal alert: CertificateRequired"),
        "{cause}"
    );

    // A server whose certificate our CA did not sign is refused by our own verification.
    let wrong_ca = TlsOptions::new()
        .ca_file(&pki.other_ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let r = Connection::connect(options("as-tls-wrongca", wrong_ca)).await;
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
        ConnectionOptions::new(
            "127.0.0.1",
            closed_port,
            format!("as-tls-refused-{}", std::process::id()),
        )
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
