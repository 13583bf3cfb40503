//! Every lock operation: lock, wait timeout, handover, unlock outcomes, fenced writes, edit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_core::command::ServiceError;
use leasedlock_core::edit::{EditDecision, EditOutcome};
use leasedlock_core::lease::ReleaseOutcome;
use tokio::sync::oneshot;

use super::connect;
use crate::adapter::{Conn, Failure, LockApi, Runtime, SetSpec};
use crate::env::Env;
use crate::util::{eventually, must, unique};

const T: Duration = Duration::from_secs(5);

/// lock / wait timeout / handover to a waiter / unlock outcomes / fencing with the lock's token
/// / edit (set, delete of an absent key, abort).
pub async fn lock_operations<R: Runtime>(rt: &R, env: &Env) {
    let a = connect(rt, env, "lock-a").await;
    let b = connect(rt, env, "lock-b").await;
    let idle = env.registrations();
    let name = Bytes::from(unique("lock"));
    let la = a.lock(name.clone()).unwrap();
    let lb = Arc::new(b.lock(name.clone()).unwrap());

    let ta = must(rt, T, "lock", la.lock(Duration::from_secs(5), None, None))
        .await
        .unwrap();
    assert_eq!(la.token(), Ok(ta.clone()));
    let start = Instant::now();
    let r = must(
        rt,
        T,
        "timed wait",
        lb.lock(
            Duration::from_secs(5),
            Some(Duration::from_millis(300)),
            None,
        ),
    )
    .await;
    assert_eq!(r, Err(Failure::WaitTimeout));
    assert!(start.elapsed() >= Duration::from_millis(300));

    // A fenced write with the holder's token is accepted.
    let data = Bytes::from(unique("protected"));
    let fenced = |t| SetSpec {
        fencing_token: Some(t),
        ..SetSpec::default()
    };
    assert!(
        must(
            rt,
            T,
            "fenced",
            a.set(data.clone(), Bytes::from_static(b"1"), fenced(ta.clone()))
        )
        .await
        .unwrap()
        .0
    );

    // Handover: the waiter gets the lock right after the unlock. The timed wait's STOP is
    // handled first, so the store's counts below move for the new waiter alone.
    assert!(
        eventually(rt, T, || env.registrations() == idle).await,
        "the timed wait unregistered"
    );
    let handled = env.requests();
    let (tx, rx) = oneshot::channel();
    let waiter = lb.clone();
    rt.spawn(Box::pin(async move {
        let r = waiter
            .lock(Duration::from_secs(5), Some(Duration::from_secs(10)), None)
            .await;
        let _ = tx.send((r, Instant::now()));
    }));
    // Unlock only once the waiter is waiting: its KEYNOTIFY is on the store and its first
    // attempt (refused: A holds the lock) was handled, so the lock can only reach it through
    // the DELETE notification of the unlock.
    assert!(
        eventually(rt, T, || env.registrations() == idle + 1
            && env.requests() >= handled + 2)
        .await,
        "the waiter never started waiting"
    );
    let unlocked_at = Instant::now();
    assert_eq!(
        must(rt, T, "unlock", la.unlock()).await,
        Ok(ReleaseOutcome::Deleted)
    );
    let (r, got_at) = must(rt, T, "handover", rx).await.expect("waiter answered");
    let tb = r.expect("waiter gets the lock");
    assert!(tb > ta, "tokens grow across holders");
    assert!(
        got_at.duration_since(unlocked_at) < Duration::from_secs(1),
        "handover is prompt"
    );

    // The old holder's token is now too old for the protected key once the new one wrote.
    assert!(
        must(
            rt,
            T,
            "fenced",
            b.set(data.clone(), Bytes::from_static(b"2"), fenced(tb.clone()))
        )
        .await
        .unwrap()
        .0
    );
    assert_eq!(
        must(
            rt,
            T,
            "stale",
            a.set(data.clone(), Bytes::from_static(b"3"), fenced(ta))
        )
        .await,
        Err(Failure::Service(ServiceError::FencingTokenLowerVersion))
    );
    assert_eq!(
        must(rt, T, "unlock other's", la.unlock()).await,
        Ok(ReleaseOutcome::HeldByOther)
    );
    assert_eq!(
        must(rt, T, "unlock", lb.unlock()).await,
        Ok(ReleaseOutcome::Deleted)
    );

    // Edit: three increments of a counter, a delete of an absent key, an abort.
    let counter = Bytes::from(unique("counter"));
    for _ in 0..3 {
        let out = must(
            rt,
            T,
            "edit",
            la.edit(
                counter.clone(),
                Duration::from_secs(5),
                Box::new(|current| {
                    let n: u64 = current
                        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                        .unwrap_or(0);
                    EditDecision::Set(Bytes::from((n + 1).to_string()))
                }),
            ),
        )
        .await;
        assert_eq!(out, Ok(EditOutcome::Set));
    }
    let (v, _) = must(rt, T, "get", b.get(counter.clone()))
        .await
        .unwrap()
        .expect("counter");
    assert_eq!(v, Bytes::from_static(b"3"));
    let absent = Bytes::from(unique("absent"));
    let out = must(
        rt,
        T,
        "edit delete",
        lb.edit(
            absent,
            Duration::from_secs(5),
            Box::new(|_| EditDecision::Delete),
        ),
    )
    .await;
    assert_eq!(
        out,
        Ok(EditOutcome::Deleted { existed: false }),
        "deleting an absent key succeeds"
    );
    let out = must(
        rt,
        T,
        "edit abort",
        lb.edit(
            counter.clone(),
            Duration::from_secs(5),
            Box::new(|_| EditDecision::Abort),
        ),
    )
    .await;
    assert_eq!(out, Ok(EditOutcome::Aborted));
    // Every edit unlocked.
    assert_eq!(must(rt, T, "free", b.get(name)).await, Ok(None));

    a.close().await;
    b.close().await;
}
