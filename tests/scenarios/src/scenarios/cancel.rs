//! Dropped futures and streams leave nothing behind on the server.

use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::edit::EditDecision;

use super::{connect, until_absent};
use crate::adapter::{Conn, KeyObsApi, LeaseApi, LockApi, Runtime};
use crate::env::Env;
use crate::util::{drop_when, dropped_after_one_poll, eventually, must, unique};

const T: Duration = Duration::from_secs(5);

/// A dropped `lock()` wait, `edit()` wait, key observation, lease observation, `observe()` call
/// and `acquire()` call each leave no KEYNOTIFY registration and no lease on the store. Each
/// check first sees on the store what the operation would leave behind (its registration, its
/// request, its SET), then sees it gone, so "nothing left" is not just "nothing happened yet".
pub async fn dropped_futures_leave_nothing_behind<R: Runtime>(rt: &R, env: &Env) {
    let a = connect(rt, env, "cancel-a").await;
    let b = connect(rt, env, "cancel-b").await;
    let baseline = env.registrations();
    let settled = |what: &'static str| async move {
        assert!(
            eventually(rt, Duration::from_secs(10), || env.registrations()
                == baseline)
            .await,
            "{what}: registrations {} != baseline {baseline}",
            env.registrations()
        );
    };

    let name = Bytes::from(unique("cancel-lock"));
    let la = a.lock(name.clone()).unwrap();
    must(rt, T, "lock", la.lock(Duration::from_secs(10), None, None))
        .await
        .unwrap();
    let lb = b.lock(name.clone()).unwrap();
    // A waiting lock() dropped mid-wait, once its registration is on the store.
    drop_when(
        rt,
        T,
        "lock wait",
        lb.lock(Duration::from_secs(10), None, None),
        || env.registrations() == baseline + 1,
    )
    .await;
    settled("dropped lock wait").await;
    let (holder, _) = must(rt, T, "get", b.get(name.clone()))
        .await
        .unwrap()
        .expect("still held");
    assert_eq!(holder, la.holder_value(), "the abandoned wait took nothing");
    // A waiting edit() dropped mid-wait.
    let key = Bytes::from(unique("cancel-edit"));
    let edit = lb.edit(
        key.clone(),
        Duration::from_secs(10),
        Box::new(|_| EditDecision::Set(Bytes::from_static(b"x"))),
    );
    drop_when(rt, T, "edit wait", edit, || {
        env.registrations() == baseline + 1
    })
    .await;
    settled("dropped edit wait").await;
    assert_eq!(
        must(rt, T, "get", b.get(key)).await,
        Ok(None),
        "the abandoned edit wrote nothing"
    );

    // Observations dropped after and before their registration completed.
    let k = Bytes::from(unique("cancel-obs"));
    let obs = must(rt, T, "observe", b.observe(k.clone())).await.unwrap();
    assert!(eventually(rt, T, || env.registrations() == baseline + 1).await);
    drop(obs);
    settled("dropped key observation").await;
    // Dropped before its answer: the KEYNOTIFY still reaches the store (the store's request
    // count moves by it and by the STOP that undoes it), and the registration is gone.
    let sent_before = env.requests();
    assert!(dropped_after_one_poll(b.observe(k)).await);
    assert!(
        eventually(rt, T, || env.requests() >= sent_before + 2).await,
        "the dropped observe() call reached the store and was undone: {} requests",
        env.requests() - sent_before
    );
    settled("dropped observe() call").await;
    let lease = b.lease(name.clone(), None).unwrap();
    let changes = must(rt, T, "observe lease", lease.observe()).await.unwrap();
    assert!(eventually(rt, T, || env.registrations() == baseline + 1).await);
    drop(changes);
    settled("dropped lease observation").await;

    // An acquire dropped before its answer: its SET lands (a watcher sees it), and what it
    // took is released.
    let free = Bytes::from(unique("cancel-acquire"));
    let mut watcher = must(rt, T, "observe", a.observe(free.clone()))
        .await
        .unwrap();
    assert!(eventually(rt, T, || env.registrations() == baseline + 1).await);
    let lease = b.lease(free.clone(), None).unwrap();
    let holder = lease.holder_value();
    assert!(dropped_after_one_poll(lease.acquire(Duration::from_secs(30), None)).await);
    let taken = must(rt, T, "the abandoned SET", watcher.next()).await;
    assert_eq!(
        taken.map(|e| e.value),
        Some(Some(holder)),
        "the abandoned acquire's SET reached the store"
    );
    let released = must(rt, T, "the release", watcher.next()).await;
    assert_eq!(
        released.map(|e| e.value),
        Some(None),
        "an abandoned acquire is released"
    );
    assert!(until_absent(rt, &a, &free, T).await);
    drop(watcher);
    drop(lease);

    must(rt, T, "unlock", la.unlock()).await.unwrap();
    settled("after unlock").await;
    a.close().await;
    b.close().await;
}
