//! Smoke test: the async-std adapter used from smol. The application's futures run on smol's
//! executor; the adapter's driver runs on the async-io reactor and the executor async-std
//! starts for it (both built on the same smol-rs crates), so no tokio and no async-std
//! `block_on` is involved on the application's side.

use std::time::Duration;

use leasedlock_async_std::{Connection, ConnectionOptions, LockOptions, SetOptions};
use leasedlock_async_std_e2e::store as test_store;

#[test]
fn lock_and_fenced_write_under_smol() {
    let _store = test_store();
    let port = leasedlock_async_std_e2e::port();
    smol::block_on(async {
        let options =
            ConnectionOptions::new("127.0.0.1", port, format!("as-smol-{}", std::process::id()))
                .request_timeout(Duration::from_secs(3));
        let conn = Connection::connect(options).await.expect("connect");
        let lock = conn
            .lock(format!("smol-lock-{}", std::process::id()))
            .unwrap();
        let token = lock
            .lock(Duration::from_secs(5), &LockOptions::new())
            .await
            .expect("lock");
        let key = format!("smol-key-{}", std::process::id());
        let store = conn.state_store();
        let written = store
            .set(key.clone(), "v", &SetOptions::new().fencing_token(token))
            .await
            .expect("fenced set");
        assert!(written.applied);
        // A timer of smol's own, next to the adapter's.
        smol::Timer::after(Duration::from_millis(10)).await;
        let got = store.get(key, None).await.expect("get").expect("present");
        assert_eq!(&got.value[..], b"v");
        lock.unlock().await.expect("unlock");
        conn.close().await;
    });
}
