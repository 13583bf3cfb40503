//! The async-std adapter's state-store operations against Mosquitto + the emulator.

use std::time::Duration;

use leasedlock_async_std::{
    Connection, ConnectionOptions, DelOptions, KeyChange, Observation, ObserveError, SetOptions,
    StoreError, VdelOutcome,
};
use leasedlock_async_std_e2e::{broker, store as test_store};

/// The next change within 5 s.
async fn next(o: &mut Observation) -> Result<KeyChange, ObserveError> {
    async_std::future::timeout(Duration::from_secs(5), o.next())
        .await
        .expect("no change within 5 s")
        .expect("observation ended")
}

/// The tests of this binary share one emulator; the observation test counts the requests it
/// handles, so they take turns.
async fn one_at_a_time() -> async_std::sync::MutexGuard<'static, ()> {
    static TURN: async_std::sync::Mutex<()> = async_std::sync::Mutex::new(());
    TURN.lock().await
}

async fn connect(name: &str) -> Connection {
    let (host, port) = broker();
    let options = ConnectionOptions::new(host, port, format!("{name}-{}", std::process::id()))
        .request_timeout(Duration::from_secs(3));
    Connection::connect(options).await.expect("connect")
}

#[async_std::test]
async fn set_get_del_vdel_and_fencing() {
    let _turn = one_at_a_time().await;
    let _store = test_store();
    let conn = connect("as-ops").await;
    let store = conn.state_store();
    let key = format!("as-ops-{}", std::process::id());

    let first = store
        .set(key.clone(), "v1", &SetOptions::new())
        .await
        .unwrap();
    assert!(first.applied);
    let token = first.version.clone().expect("SET returns a version");
    let got = store
        .get(key.clone(), None)
        .await
        .unwrap()
        .expect("present");
    assert_eq!(&got.value[..], b"v1");

    // NX on an existing key is not applied.
    let nx = store
        .set(key.clone(), "v2", &SetOptions::new().if_absent())
        .await
        .unwrap();
    assert!(!nx.applied);

    // A fenced write with the current token is accepted, with an older one refused.
    let newer = store
        .set(
            key.clone(),
            "v3",
            &SetOptions::new().fencing_token(token.clone()),
        )
        .await
        .unwrap();
    assert!(newer.applied);
    let newer_token = newer.version.unwrap();
    let del_token = newer_token.clone();
    store
        .set(
            key.clone(),
            "v4",
            &SetOptions::new().fencing_token(newer_token),
        )
        .await
        .unwrap();
    let err = store
        .set(key.clone(), "v5", &SetOptions::new().fencing_token(token))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Service(_)), "{err:?}");

    assert_eq!(
        store
            .vdel(
                key.clone(),
                "nope",
                &DelOptions::new().fencing_token(del_token.clone())
            )
            .await
            .unwrap(),
        VdelOutcome::Mismatch
    );
    assert_eq!(
        store
            .vdel(
                key.clone(),
                "v4",
                &DelOptions::new().fencing_token(del_token.clone())
            )
            .await
            .unwrap(),
        VdelOutcome::Deleted
    );
    // A fenced key needs its token for VDEL too; once deleted, DEL finds nothing.
    assert!(!store
        .del(key.clone(), &DelOptions::new().fencing_token(del_token))
        .await
        .unwrap());
    assert_eq!(store.get(key, None).await.unwrap(), None);
    conn.close().await;
}

#[async_std::test]
async fn observe_delivers_changes_and_dropping_unregisters() {
    let _turn = one_at_a_time().await;
    let store_server = test_store();
    let conn = connect("as-observe").await;
    let store = conn.state_store();
    let key = format!("as-observe-{}", std::process::id());
    let before = store_server.snapshot().registrations;

    let mut obs = store.observe(key.clone()).await.unwrap();
    let mut second = store.observe(key.clone()).await.unwrap();
    store
        .set(key.clone(), "a", &SetOptions::new())
        .await
        .unwrap();
    let change = next(&mut obs).await.unwrap();
    assert_eq!(change.value.as_deref(), Some(&b"a"[..]));
    assert!(change.version.is_some() && !change.resync);
    assert_eq!(
        next(&mut second).await.unwrap().value.as_deref(),
        Some(&b"a"[..])
    );
    store.del(key.clone(), &DelOptions::new()).await.unwrap();
    assert_eq!(next(&mut obs).await.unwrap().value, None);

    // One registration for both observers; it goes when the last one is dropped.
    let s = store_server
        .wait_for(|s| s.registrations == before + 1)
        .await;
    assert_eq!(s.registrations, before + 1);
    drop(obs);
    drop(second);
    let s = store_server.wait_for(|s| s.registrations == before).await;
    assert_eq!(
        s.registrations, before,
        "KEYNOTIFY STOP after the last observer"
    );

    // A dropped observe() future leaves nothing behind either: dropped after one poll, before
    // its answer, its KEYNOTIFY still reaches the store (the request count moves by it and by
    // the STOP that undoes it), and then the registration is gone.
    let handled = store_server.snapshot().stats.requests;
    let polled = futures_lite::future::poll_once(store.observe(key.clone())).await;
    assert!(polled.is_none(), "answered on its first poll");
    let s = store_server
        .wait_for(|s| s.stats.requests >= handled + 2 && s.registrations == before)
        .await;
    assert_eq!(
        s.stats.requests - handled,
        2,
        "the dropped observe() reached the store, and its STOP followed"
    );
    assert_eq!(s.registrations, before);
    conn.close().await;
}
