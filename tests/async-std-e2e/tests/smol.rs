//! Smoke tests: the async-std adapter used from smol, calling no async-std API. The
//! application's futures run on smol's executor; the connection's driver runs either on smol's
//! executor too (handed over as the adapter's spawner) or on the adapter's own executor thread
//! (the default); both drive the same async-io reactor smol uses.

use std::time::Duration;

use leasedlock_async_std::{Connection, ConnectionOptions, LockOptions, SetOptions};
use leasedlock_async_std_e2e::store as test_store;

/// Connects with `connect` (the adapter's own executor thread) or, with `on_smol`, with
/// `connect_with` and smol's spawner; then lock, fenced write, read, unlock, close.
fn lock_and_fenced_write(on_smol: bool) {
    let _store = test_store();
    let (host, port) = leasedlock_async_std_e2e::broker();
    let tag = if on_smol { "spawned" } else { "default" };
    smol::block_on(async {
        let options =
            ConnectionOptions::new(host, port, format!("as-smol-{tag}-{}", std::process::id()))
                .request_timeout(Duration::from_secs(3));
        let conn = if on_smol {
            Connection::connect_with(options, |task| smol::spawn(task).detach()).await
        } else {
            Connection::connect(options).await
        }
        .expect("connect");
        let lock = conn
            .lock(format!("smol-lock-{tag}-{}", std::process::id()))
            .unwrap();
        let token = lock
            .lock(Duration::from_secs(5), &LockOptions::new())
            .await
            .expect("lock");
        let key = format!("smol-key-{tag}-{}", std::process::id());
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

#[test]
fn lock_and_fenced_write_under_smol_with_the_default_spawner() {
    lock_and_fenced_write(false);
}

#[test]
fn lock_and_fenced_write_under_smol_with_smols_spawner() {
    lock_and_fenced_write(true);
}
