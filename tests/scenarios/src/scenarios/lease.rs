//! Every lease operation, between two clients.

use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_core::lease::ReleaseOutcome;

use super::{connect, until_absent};
use crate::adapter::{Conn, Failure, LeaseApi, Runtime};
use crate::env::Env;
use crate::util::{must, unique};

const T: Duration = Duration::from_secs(5);

/// acquire / refuse / token / holder / observe / release outcomes / session ids / auto-renew /
/// loss at `safe_until` / release on drop / detach.
pub async fn lease_operations<R: Runtime>(rt: &R, env: &Env) {
    let a = connect(rt, env, "lease-a").await;
    let b = connect(rt, env, "lease-b").await;
    let name = Bytes::from(unique("lease"));
    let la = a.lease(name.clone(), None).unwrap();
    let lb = b.lease(name.clone(), None).unwrap();
    let a_id = la.holder_value();
    let b_id = lb.holder_value();

    assert_eq!(la.token(), Err(Failure::NoLease));
    assert_eq!(
        must(rt, T, "acquire", la.acquire(Duration::from_secs(5), None)).await,
        Ok(true)
    );
    let t1 = la.token().expect("held");
    assert!(la.safe_for().is_some_and(|d| d <= Duration::from_secs(5)));
    assert_eq!(
        must(rt, T, "refused", lb.acquire(Duration::from_secs(5), None)).await,
        Ok(false)
    );
    assert_eq!(lb.token(), Err(Failure::NoLease));
    assert_eq!(
        must(rt, T, "holder", lb.holder()).await,
        Ok(Some(a_id.clone()))
    );

    // Manual renewal (acquire while held without auto-renew) gives a newer token.
    assert_eq!(
        must(rt, T, "renew", la.acquire(Duration::from_secs(5), None)).await,
        Ok(true)
    );
    assert!(la.token().expect("held") > t1);

    let mut changes = must(rt, T, "observe", lb.observe()).await.unwrap();
    assert_eq!(
        must(rt, T, "release", la.release()).await,
        Ok(ReleaseOutcome::Deleted)
    );
    assert_eq!(
        la.token(),
        Err(Failure::NoLease),
        "release clears the token"
    );
    assert_eq!(
        must(rt, T, "change", changes.next()).await,
        Some((false, None))
    );
    assert_eq!(
        must(rt, T, "acquire", lb.acquire(Duration::from_secs(5), None)).await,
        Ok(true)
    );
    assert_eq!(
        must(rt, T, "change", changes.next()).await,
        Some((true, Some(b_id.clone())))
    );
    assert_eq!(must(rt, T, "holder", la.holder()).await, Ok(Some(b_id)));
    assert_eq!(
        must(rt, T, "release other's", la.release()).await,
        Ok(ReleaseOutcome::HeldByOther)
    );
    assert_eq!(
        must(rt, T, "release", lb.release()).await,
        Ok(ReleaseOutcome::Deleted)
    );
    assert_eq!(
        must(rt, T, "release again", lb.release()).await,
        Ok(ReleaseOutcome::NotFound)
    );
    assert_eq!(
        must(rt, T, "change", changes.next()).await,
        Some((false, None))
    );
    drop(changes);

    // Session ids keep two leases of one connection apart.
    let s1 = a.lease(name.clone(), Some("s1".into())).unwrap();
    let s2 = a.lease(name.clone(), Some("s2".into())).unwrap();
    assert_eq!(
        must(rt, T, "s1", s1.acquire(Duration::from_secs(5), None)).await,
        Ok(true)
    );
    assert_eq!(
        must(rt, T, "s2", s2.acquire(Duration::from_secs(5), None)).await,
        Ok(false)
    );
    let holder = must(rt, T, "holder", s2.holder())
        .await
        .unwrap()
        .expect("held");
    assert_eq!(holder, Bytes::from(format!("{}:s1", a.client_id())));
    assert_eq!(
        must(rt, T, "release", s1.release()).await,
        Ok(ReleaseOutcome::Deleted)
    );

    // Auto-renew keeps the lease well past its duration, with newer tokens.
    let d = Duration::from_secs(2);
    assert_eq!(
        must(
            rt,
            T,
            "acquire renewing",
            la.acquire(d, Some(Duration::from_millis(400)))
        )
        .await,
        Ok(true)
    );
    let first = la.token().unwrap();
    rt.sleep(Duration::from_millis(2500)).await;
    let later = la.token().expect("auto-renew keeps it held");
    assert!(later > first);
    assert_eq!(
        must(rt, T, "still refused", lb.acquire(d, None)).await,
        Ok(false)
    );
    assert_eq!(
        must(rt, T, "release", la.release()).await,
        Ok(ReleaseOutcome::Deleted)
    );

    // Without renewal the loss surfaces no later than safe_until.
    assert_eq!(
        must(
            rt,
            T,
            "acquire",
            la.acquire(Duration::from_millis(800), None)
        )
        .await,
        Ok(true)
    );
    let safe_for = la.safe_for().expect("held");
    let start = Instant::now();
    let lost = must(rt, T, "lost", la.lost()).await;
    assert_eq!(lost, Failure::Lost);
    assert!(
        start.elapsed() <= safe_for + Duration::from_millis(50),
        "Lost at safe_until, not later"
    );
    assert!(la.token().is_err());

    // Dropping a held handle releases it (an idle one just goes); a detached one is left to
    // expire.
    drop(a.lease(Bytes::from(unique("idle")), None).unwrap());
    let dropped_name = Bytes::from(unique("dropped"));
    let held = a.lease(dropped_name.clone(), None).unwrap();
    assert_eq!(
        must(
            rt,
            T,
            "acquire",
            held.acquire(Duration::from_secs(30), None)
        )
        .await,
        Ok(true)
    );
    drop(held);
    assert!(
        until_absent(rt, &b, &dropped_name, T).await,
        "a dropped held lease is released"
    );
    let detached_name = Bytes::from(unique("detached"));
    let kept = a.lease(detached_name.clone(), None).unwrap();
    assert_eq!(
        must(
            rt,
            T,
            "acquire",
            kept.acquire(Duration::from_millis(700), None)
        )
        .await,
        Ok(true)
    );
    kept.detach();
    rt.sleep(Duration::from_millis(200)).await;
    assert!(
        must(rt, T, "get", b.get(detached_name.clone()))
            .await
            .unwrap()
            .is_some(),
        "detached: not released"
    );
    rt.sleep(Duration::from_millis(800)).await;
    assert!(
        must(rt, T, "get", b.get(detached_name))
            .await
            .unwrap()
            .is_none(),
        "detached: expires on the store"
    );

    a.close().await;
    b.close().await;
}
