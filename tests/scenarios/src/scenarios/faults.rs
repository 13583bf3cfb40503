//! Faults: the holder's connection dies; the broker restarts in the middle of a lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::connect;
use crate::adapter::{Conn, Failure, LeaseApi, LockApi, Runtime};
use crate::broker::PrivateBroker;
use crate::env::Env;
use crate::util::{eventually, must, unique};

/// The holder of an auto-renewed lock is killed (no release); the waiter gets the lock within
/// the lease duration + 1 s.
pub async fn failover_when_holder_dies<R: Runtime>(rt: &R, env: &Env) {
    let a = connect(rt, env, "failover-a").await;
    let b = connect(rt, env, "failover-b").await;
    let name = Bytes::from(unique("failover"));
    let duration = Duration::from_secs(2);
    let la = a.lock(name.clone()).unwrap();
    must(
        rt,
        Duration::from_secs(5),
        "lock",
        la.lock(duration, None, Some(Duration::from_millis(400))),
    )
    .await
    .unwrap();
    let lb = b.lock(name).unwrap();
    let (tx, rx) = oneshot::channel();
    rt.spawn(Box::pin(async move {
        let r = lb.lock(duration, Some(Duration::from_secs(10)), None).await;
        let _ = tx.send((r, Instant::now()));
        drop(lb);
    }));
    // Let the waiter register and be refused once; the holder keeps renewing meanwhile.
    rt.sleep(Duration::from_millis(800)).await;
    let killed = Instant::now();
    a.abort();
    let (r, at) = must(rt, Duration::from_secs(10), "failover", rx)
        .await
        .expect("waiter answered");
    r.expect("the waiter gets the lock after the holder died");
    let took = at.duration_since(killed);
    eprintln!("failover: waiter got the lock {took:?} after the holder died");
    assert!(
        took <= duration + Duration::from_secs(1),
        "failover took {took:?}"
    );
    b.close().await;
}

/// How a hold came through a broker outage.
enum Outcome {
    Held,
    Lost,
}

/// Stops the broker for `down` while `lease` is held and auto-renewed, then waits `after` past
/// the reconnect. Checks that a loss, if any, was raised no later than the `safe_until` in
/// force, and that a lease reported held still has a token.
async fn outage<R: Runtime, C: Conn>(
    rt: &R,
    conn: &C,
    lease: &Arc<C::Lease>,
    broker: &mut PrivateBroker,
    down: Duration,
    after: Duration,
) -> Outcome {
    // The latest safe_until ever seen, sampled continuously.
    let latest_safe: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (lost_tx, mut lost_rx) = oneshot::channel();
    {
        let (lease, latest, rt2) = (lease.clone(), latest_safe.clone(), rt.clone());
        rt.spawn(Box::pin(async move {
            loop {
                if let Some(left) = lease.safe_for() {
                    let until = Instant::now() + left;
                    let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
                    if l.is_none_or(|x| until > x) {
                        *l = Some(until);
                    }
                }
                if stop_rx.try_recv().is_ok() {
                    return;
                }
                rt2.sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    {
        let lease = lease.clone();
        rt.spawn(Box::pin(async move {
            let why = lease.lost().await;
            let _ = lost_tx.send((why, Instant::now()));
        }));
    }
    rt.sleep(Duration::from_millis(500)).await;
    broker.stop();
    rt.sleep(down).await;
    broker.resume();
    assert!(
        eventually(rt, Duration::from_secs(10), || conn.is_connected()).await,
        "reconnected"
    );
    rt.sleep(after).await;
    let _ = stop_tx.send(());
    match lost_rx.try_recv() {
        Ok((why, at)) => {
            assert_eq!(
                why,
                Failure::Lost,
                "the hold ended by a loss, not a release"
            );
            let safe = latest_safe
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .expect("was held");
            eprintln!(
                "broker restart: lease lost {:?} before safe_until",
                safe.saturating_duration_since(at)
            );
            assert!(
                at <= safe + Duration::from_millis(50),
                "Lost raised {:?} after safe_until",
                at.duration_since(safe)
            );
            assert!(lease.token().is_err());
            Outcome::Lost
        }
        Err(_) => {
            eprintln!("broker restart: lease still held after the reconnect");
            assert!(
                lease.token().is_ok(),
                "held without a Lost must have a token"
            );
            assert!(lease.safe_for().is_some());
            Outcome::Held
        }
    }
}

/// A held, auto-renewed lease while the broker restarts: after a short outage it either stays
/// held (renewals resume after the reconnect) or `Lost` is raised no later than the
/// `safe_until` in force; after an outage longer than the lease it is `Lost`, again no later
/// than `safe_until`, and can be acquired again once the broker is back.
pub async fn broker_restart_mid_lease<R: Runtime>(rt: &R, env: &Env, broker: &mut PrivateBroker) {
    let a = connect(rt, env, "restart").await;
    let lease = Arc::new(a.lease(Bytes::from(unique("restart")), None).unwrap());
    let duration = Duration::from_secs(2);
    let renew = Some(Duration::from_millis(400));
    let acquire =
        |lease: Arc<<R::Conn as Conn>::Lease>| async move { lease.acquire(duration, renew).await };
    assert_eq!(
        must(
            rt,
            Duration::from_secs(5),
            "acquire",
            acquire(lease.clone())
        )
        .await,
        Ok(true)
    );

    // Short outage: either outcome, each checked.
    let short = outage(
        rt,
        &a,
        &lease,
        broker,
        Duration::from_millis(500),
        Duration::from_millis(2000),
    )
    .await;
    if let Outcome::Lost = short {
        let r = must(
            rt,
            Duration::from_secs(5),
            "re-acquire",
            acquire(lease.clone()),
        )
        .await;
        assert_eq!(r, Ok(true));
    }
    // Outage longer than the lease: it must be lost, on time.
    let long = outage(
        rt,
        &a,
        &lease,
        broker,
        Duration::from_millis(2500),
        Duration::from_millis(200),
    )
    .await;
    assert!(
        matches!(long, Outcome::Lost),
        "a lease cannot survive an outage longer than itself"
    );
    // The lease can be taken again once the store is back (the emulator reconnects with its
    // own back-off, up to 2 s).
    let mut again = Err(Failure::Closed);
    for _ in 0..10 {
        again = must(
            rt,
            Duration::from_secs(5),
            "re-acquire",
            acquire(lease.clone()),
        )
        .await;
        if again.is_ok() {
            break;
        }
    }
    assert_eq!(again, Ok(true));
    let _ = must(rt, Duration::from_secs(5), "release", lease.release()).await;
    a.close().await;
}
