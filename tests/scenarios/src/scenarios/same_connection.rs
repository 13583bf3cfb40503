//! Two handles (or edits, or leader participants) of one connection on one name are two
//! holders: never both held, and the first one's release never frees the second one's hold.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::edit::EditDecision;
use leasedlock_core::lease::ReleaseOutcome;

use super::connect;
use crate::adapter::{Conn, Failure, LeaderApi, LeaseApi, LockApi, Runtime};
use crate::env::Env;
use crate::util::{eventually, must, unique};

const T: Duration = Duration::from_secs(10);

/// Runs every future to its end, concurrently.
async fn join_all<O>(futures: Vec<Pin<Box<dyn Future<Output = O> + Send + '_>>>) -> Vec<O> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<O>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, fut) in out.iter_mut().zip(futures.iter_mut()) {
            if let Some(f) = fut {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *slot = Some(v);
                    *fut = None;
                }
            }
        }
        if futures.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The holder value stored in `name` now.
async fn stored_holder<R: Runtime, C: Conn>(rt: &R, c: &C, name: &Bytes) -> Option<Bytes> {
    must(rt, T, "get", c.get(name.clone()))
        .await
        .expect("get")
        .map(|v| v.0)
}

/// Two lease handles, two lock handles, concurrent edits on one lock handle and two leader
/// participants, all on one connection.
pub async fn same_connection_holders_are_distinct<R: Runtime>(rt: &R, env: &Env) {
    let c = connect(rt, env, "same").await;
    let d = Duration::from_secs(10);

    // Two leases: the second is refused like another client, and after the hand-over the first
    // one's (late) release leaves the second's lease alone.
    let name = Bytes::from(unique("same-lease"));
    let (l1, l2) = (
        c.lease(name.clone(), None).unwrap(),
        c.lease(name.clone(), None).unwrap(),
    );
    assert_ne!(l1.holder_value(), l2.holder_value());
    assert_eq!(
        must(rt, T, "acquire 1", l1.acquire(d, None)).await,
        Ok(true)
    );
    assert_eq!(
        must(rt, T, "acquire 2", l2.acquire(d, None)).await,
        Ok(false)
    );
    assert!(l2.token().is_err(), "both handles held the lease");
    assert_eq!(
        must(rt, T, "release 1", l1.release()).await,
        Ok(ReleaseOutcome::Deleted)
    );
    assert_eq!(
        must(rt, T, "acquire 2", l2.acquire(d, None)).await,
        Ok(true)
    );
    assert_ne!(
        must(rt, T, "release 1 again", l1.release()).await,
        Ok(ReleaseOutcome::Deleted),
        "the first handle's release deleted the second's lease"
    );
    assert_eq!(stored_holder(rt, &c, &name).await, Some(l2.holder_value()));
    assert!(l2.token().is_ok());

    // Two locks: the second waits (here: times out) while the first holds.
    let name = Bytes::from(unique("same-lock"));
    let (k1, k2) = (c.lock(name.clone()).unwrap(), c.lock(name.clone()).unwrap());
    must(rt, T, "lock 1", k1.lock(d, None, None)).await.unwrap();
    assert_eq!(
        must(
            rt,
            T,
            "lock 2",
            k2.lock(d, Some(Duration::from_millis(800)), None)
        )
        .await,
        Err(Failure::WaitTimeout),
        "the second lock handle got the lock while the first held it"
    );
    assert!(!k2.is_held());
    // The second handle waits while the first unlocks (whichever runs first, it ends held).
    let wait: Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>> =
        Box::pin(async { k2.lock(d, Some(T), None).await.map(drop) });
    let unlock: Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>> =
        Box::pin(async { k1.unlock().await.map(drop) });
    let results = must(rt, T, "hand-over", join_all(vec![wait, unlock])).await;
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert!(k2.is_held());
    assert_ne!(
        must(rt, T, "unlock 1 again", k1.unlock()).await,
        Ok(ReleaseOutcome::Deleted),
        "the first handle's unlock deleted the second's lock"
    );
    assert_eq!(stored_holder(rt, &c, &name).await, Some(k2.holder_value()));
    must(rt, T, "unlock 2", k2.unlock()).await.unwrap();

    // Concurrent edits on one lock handle: each reads what the previous one wrote.
    let lock = c.lock(Bytes::from(unique("same-edit-lock"))).unwrap();
    let key = Bytes::from(unique("same-edit-counter"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    const EDITS: u32 = 4;
    let edits = (0..EDITS)
        .map(|_| {
            let seen = seen.clone();
            let decide = Box::new(move |current: Option<Bytes>| {
                let n: u32 = current
                    .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                    .unwrap_or(0);
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(n);
                EditDecision::Set(Bytes::from((n + 1).to_string()))
            });
            lock.edit(key.clone(), d, decide)
        })
        .collect();
    let results = must(rt, Duration::from_secs(60), "edits", join_all(edits)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..EDITS).collect::<Vec<_>>(),
        "two edits read the same value: both held the lock"
    );
    assert_eq!(
        stored_holder(rt, &c, &key).await,
        Some(Bytes::from(EDITS.to_string()))
    );

    // Two leader participants: one leads, the other sees it as leader.
    let name = Bytes::from(unique("same-election"));
    let (p1, p2) = (
        c.leader(name.clone()).unwrap(),
        c.leader(name.clone()).unwrap(),
    );
    let term = Duration::from_millis(1500);
    must(rt, T, "campaign 1", p1.campaign(term)).await.unwrap();
    must(rt, T, "elected 1", p1.elected()).await.unwrap();
    must(rt, T, "campaign 2", p2.campaign(term)).await.unwrap();
    let p1_id = p1.holder_value();
    assert!(eventually(rt, T, || p2.leader() == Some(p1_id.clone())).await);
    assert!(!p2.is_leader(), "two leaders on one connection");
    must(rt, T, "resign 1", p1.resign()).await.unwrap();
    must(rt, T, "elected 2", p2.elected()).await.unwrap();
    assert_eq!(stored_holder(rt, &c, &name).await, Some(p2.holder_value()));
    must(rt, T, "resign 2", p2.resign()).await.unwrap();
}
