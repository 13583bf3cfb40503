//! The official Rust client (`azure_iot_operations_services` 1.3) against the leasedlock
//! emulator over Mosquitto: state-store operations, observation, leases and a contended lock.

use std::cmp::Ordering;
use std::time::Duration;

use azure_iot_operations_protocol::common::hybrid_logical_clock::HybridLogicalClock;
use azure_iot_operations_services::leased_lock;
use azure_iot_operations_services::state_store::{self, Operation, SetCondition, SetOptions};
use leasedlock_interop_tests::{unique, Official};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

/// The order of fencing tokens (the store's rule): milliseconds, then counter, then node id
/// byte-wise. The official client parses tokens but gives them no order of its own.
fn hlc_cmp(a: &HybridLogicalClock, b: &HybridLogicalClock) -> Ordering {
    (a.timestamp, a.counter, a.node_id.as_bytes()).cmp(&(
        b.timestamp,
        b.counter,
        b.node_id.as_bytes(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_del_vdel() {
    let c = Official::connect("interop-ss", "unused-lease");
    let key = unique("ss-key").into_bytes();
    let r = c
        .store
        .set(key.clone(), b"v1".to_vec(), T, None, SetOptions::default())
        .await
        .expect("SET");
    assert!(r.response);
    let v1 = r.version.expect("SET carries a version");
    let g = c.store.get(key.clone(), T).await.expect("GET");
    assert_eq!(g.response, Some(b"v1".to_vec()));
    assert_eq!(g.version, Some(v1));
    let nx = SetOptions {
        set_condition: SetCondition::OnlyIfDoesNotExist,
        ..SetOptions::default()
    };
    let r = c
        .store
        .set(key.clone(), b"v2".to_vec(), T, None, nx)
        .await
        .expect("SET NX");
    assert!(!r.response, "NX on an existing key is not applied");
    assert_eq!(
        c.store
            .vdel(key.clone(), b"nope".to_vec(), None, T)
            .await
            .unwrap()
            .response,
        -1
    );
    assert_eq!(
        c.store
            .vdel(key.clone(), b"v1".to_vec(), None, T)
            .await
            .unwrap()
            .response,
        1
    );
    assert_eq!(c.store.get(key.clone(), T).await.unwrap().response, None);
    assert_eq!(c.store.del(key.clone(), None, T).await.unwrap().response, 0);
    c.store
        .set(key.clone(), Vec::new(), T, None, SetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.store.get(key.clone(), T).await.unwrap().response,
        Some(Vec::new())
    );
    assert_eq!(c.store.del(key.clone(), None, T).await.unwrap().response, 1);

    // Fencing: a key written with a token needs a token that is not lower.
    let fenced = unique("ss-fenced").into_bytes();
    let token = c
        .store
        .set(
            unique("ss-lockkey").into_bytes(),
            b"h".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await
        .unwrap()
        .version
        .unwrap();
    c.store
        .set(
            fenced.clone(),
            b"x".to_vec(),
            T,
            Some(token.clone()),
            SetOptions::default(),
        )
        .await
        .unwrap();
    let e = c
        .store
        .set(
            fenced.clone(),
            b"y".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await
        .expect_err("a token is required");
    assert!(matches!(
        e.kind(),
        state_store::ErrorKind::ServiceError(state_store::ServiceError::MissingFencingToken)
    ));
    assert_eq!(
        c.store.del(fenced, Some(token), T).await.unwrap().response,
        1
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_gets_set_delete_and_expiry_notifications() {
    let watcher = Official::connect("interop-watch", "unused-lease");
    let writer = Official::connect("interop-write", "unused-lease");
    let key = unique("obs-key").into_bytes();
    let mut obs = watcher
        .store
        .observe(key.clone(), T)
        .await
        .expect("observe")
        .response;
    writer
        .store
        .set(
            key.clone(),
            b"hello".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await
        .unwrap();
    let (n, _) = timeout(T, obs.recv_notification())
        .await
        .expect("SET notification")
        .unwrap();
    assert_eq!(n.key, key);
    assert!(matches!(n.operation, Operation::Set(ref v) if v == b"hello"));
    writer.store.del(key.clone(), None, T).await.unwrap();
    let (n, _) = timeout(T, obs.recv_notification())
        .await
        .expect("DELETE notification")
        .unwrap();
    assert!(matches!(n.operation, Operation::Del));
    // Expiry is announced without anyone asking.
    let px = SetOptions {
        expires: Some(Duration::from_millis(300)),
        ..SetOptions::default()
    };
    writer
        .store
        .set(key.clone(), b"brief".to_vec(), T, None, px)
        .await
        .unwrap();
    let (n, _) = timeout(T, obs.recv_notification()).await.unwrap().unwrap();
    assert!(matches!(n.operation, Operation::Set(_)));
    let (n, _) = timeout(Duration::from_secs(3), obs.recv_notification())
        .await
        .expect("expiry DELETE")
        .unwrap();
    assert!(matches!(n.operation, Operation::Del));
    assert!(
        watcher
            .store
            .unobserve(key.clone(), T)
            .await
            .unwrap()
            .response
    );
    assert!(!watcher.store.unobserve(key, T).await.unwrap().response);
    watcher.close().await;
    writer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_acquire_renew_release_holder() {
    let name = unique("lease");
    let a = Official::connect("interop-la", &name);
    let b = Official::connect("interop-lb", &name);
    let t1 = a
        .lease
        .acquire(Duration::from_secs(2), T, None)
        .await
        .expect("acquire");
    assert_eq!(a.lease.current_lease_fencing_token(), Some(t1.clone()));
    let e = b
        .lease
        .acquire(Duration::from_secs(2), T, None)
        .await
        .expect_err("held");
    assert!(matches!(e.kind(), leased_lock::ErrorKind::LeaseAlreadyHeld));
    assert_eq!(
        b.lease.get_holder(T).await.unwrap(),
        Some(a.id.clone().into_bytes())
    );
    // Renewal: a fresh acquire by the holder is applied and hands out a greater token; with
    // auto-renewal the lease outlives its 1 s term.
    let t2 = a
        .lease
        .acquire(Duration::from_secs(1), T, Some(Duration::from_millis(300)))
        .await
        .expect("renew");
    assert_eq!(hlc_cmp(&t2, &t1), Ordering::Greater, "renewal {t2} > {t1}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        b.lease.get_holder(T).await.unwrap(),
        Some(a.id.clone().into_bytes())
    );
    a.lease.release(T).await.expect("release");
    assert_eq!(b.lease.get_holder(T).await.unwrap(), None);
    let tb = b
        .lease
        .acquire(Duration::from_secs(2), T, None)
        .await
        .expect("free after release");
    assert_eq!(
        hlc_cmp(&tb, &t2),
        Ordering::Greater,
        "next holder {tb} > {t2}"
    );
    b.lease.release(T).await.unwrap();
    a.close().await;
    b.close().await;
}

/// Two official clients contend for one lock: the second waits for the DELETE notification of
/// the first's unlock, then acquires it with a greater fencing token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_contention_between_two_official_clients() {
    let name = unique("lock");
    let a = Official::connect("interop-ka", &name);
    let b = Official::connect("interop-kb", &name);
    let ta = a
        .lock
        .lock(Duration::from_secs(10), T, None)
        .await
        .expect("A locks");
    let b_id = b.id.clone();
    let waiter = tokio::spawn(async move {
        let tb = b.lock.lock(Duration::from_secs(10), T, None).await;
        (b, tb)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "B must wait while A holds the lock");
    a.lock.unlock(T).await.expect("A unlocks");
    let (b, tb) = timeout(Duration::from_secs(5), waiter)
        .await
        .expect("B acquires")
        .unwrap();
    let tb = tb.expect("B's token");
    assert_eq!(hlc_cmp(&tb, &ta), Ordering::Greater, "{tb} > {ta}");
    assert_eq!(
        a.lease.get_holder(T).await.unwrap(),
        Some(b_id.into_bytes())
    );
    b.lock.unlock(T).await.unwrap();
    a.close().await;
    b.close().await;
}

/// Lock hand-over after expiry: the holder vanishes without unlocking; the waiter gets the lock
/// once the lease expires, thanks to the expiry DELETE notification, and not a moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_hand_over_on_expiry() {
    const LEASE: Duration = Duration::from_millis(700);
    let name = unique("lockx");
    let a = Official::connect("interop-xa", &name);
    let b = Official::connect("interop-xb", &name);
    let ta = a.lock.lock(LEASE, T, None).await.expect("A locks");
    let tb = timeout(
        Duration::from_secs(5),
        b.lock.lock(Duration::from_secs(5), T, None),
    )
    .await
    .expect("B acquires after A's lease expires")
    .expect("a token");
    // Each token is the version the store stamped on the lock key when it applied that holder's
    // SET, read from the store's own clock (the store is the one deciding expiry). So A's grant
    // ran until `ta + LEASE` on that clock, and B's SET can only have applied at or after it.
    let a_expires = ta.timestamp + LEASE;
    assert!(
        tb.timestamp >= a_expires,
        "B got the lock at {tb}, before A's lease (granted at {ta}) expired at +{LEASE:?}"
    );
    assert_eq!(hlc_cmp(&tb, &ta), Ordering::Greater, "{tb} > {ta}");
    assert_eq!(
        a.lease.get_holder(T).await.unwrap(),
        Some(b.id.clone().into_bytes())
    );
    b.lock.unlock(T).await.unwrap();
    a.close().await;
    b.close().await;
}
