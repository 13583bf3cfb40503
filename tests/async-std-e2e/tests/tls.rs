//! TLS end to end on the async-std adapter: a private Mosquitto whose TLS listener requires a
//! client certificate, the emulator on its plain listener. A lock, a fenced write and a read
//! go through TLS; a missing client certificate and an untrusted server are connection errors,
//! not hangs.

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

    // The broker requires a client certificate.
    let no_cert = TlsOptions::new().ca_file(&pki.ca);
    let r = Connection::connect(options("as-tls-nocert", no_cert)).await;
    assert!(matches!(r, Err(ConnectError::Timeout(Some(_)))), "{r:?}");

    // A server whose certificate our CA did not sign is refused.
    let wrong_ca = TlsOptions::new()
        .ca_file(&pki.other_ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    match Connection::connect(options("as-tls-wrongca", wrong_ca)).await {
        Err(ConnectError::Timeout(Some(e))) => {
            let e = e.to_lowercase();
            assert!(e.contains("tls") || e.contains("certificate"), "{e}");
        }
        other => panic!("untrusted server accepted: {other:?}"),
    }
}
