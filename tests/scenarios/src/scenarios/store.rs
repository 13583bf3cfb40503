//! Every raw state-store operation.

use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::command::{ServiceError, VdelOutcome};

use super::connect;
use crate::adapter::{Conn, Failure, KeyObsApi, Runtime, SetSpec};
use crate::env::Env;
use crate::util::{must, unique};

const T: Duration = Duration::from_secs(5);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// SET (plain, NX, NEX, PX, fenced), GET, DEL, VDEL, KEYNOTIFY with SET, DELETE and expiry
/// notifications, and the local rejection of an empty key.
pub async fn store_operations<R: Runtime>(rt: &R, env: &Env) {
    let c = connect(rt, env, "store").await;
    let k = b(&unique("key"));

    let (applied, v1) = must(rt, T, "set", c.set(k.clone(), b("v1"), SetSpec::default()))
        .await
        .unwrap();
    assert!(applied);
    let v1 = v1.expect("SET reply carries the new version");
    let (value, version) = must(rt, T, "get", c.get(k.clone()))
        .await
        .unwrap()
        .expect("present");
    assert_eq!(value, b("v1"));
    assert_eq!(
        version.as_ref(),
        Some(&v1),
        "GET returns the stored version"
    );

    let nx = SetSpec {
        if_absent: true,
        ..SetSpec::default()
    };
    let (applied, stored) = must(rt, T, "set nx", c.set(k.clone(), b("v2"), nx))
        .await
        .unwrap();
    assert!(!applied, "NX on a present key is not applied");
    assert_eq!(
        stored.as_ref(),
        Some(&v1),
        "a refused SET reports the stored version"
    );

    let nex = SetSpec {
        if_absent_or_equal: true,
        ..SetSpec::default()
    };
    let (applied, v2) = must(
        rt,
        T,
        "set nex other",
        c.set(k.clone(), b("v2"), nex.clone()),
    )
    .await
    .unwrap();
    assert!(!applied && v2.is_some());
    let (applied, v2) = must(rt, T, "set nex same", c.set(k.clone(), b("v1"), nex))
        .await
        .unwrap();
    assert!(applied, "NEX with the same value renews");
    assert!(
        v2.expect("version") > v1,
        "every applied SET gets a greater version"
    );

    assert_eq!(
        must(rt, T, "vdel", c.vdel(k.clone(), b("nope"))).await,
        Ok(VdelOutcome::Mismatch)
    );
    assert_eq!(
        must(rt, T, "vdel", c.vdel(k.clone(), b("v1"))).await,
        Ok(VdelOutcome::Deleted)
    );
    assert_eq!(
        must(rt, T, "vdel", c.vdel(k.clone(), b("v1"))).await,
        Ok(VdelOutcome::NotFound)
    );
    assert_eq!(must(rt, T, "get", c.get(k.clone())).await, Ok(None));
    assert_eq!(must(rt, T, "del", c.del(k.clone(), None)).await, Ok(false));
    must(rt, T, "set", c.set(k.clone(), b(""), SetSpec::default()))
        .await
        .unwrap();
    let (empty, version) = must(rt, T, "get", c.get(k.clone()))
        .await
        .unwrap()
        .expect("empty value is present");
    assert!(empty.is_empty() && version.is_some());
    assert_eq!(must(rt, T, "del", c.del(k.clone(), None)).await, Ok(true));

    // PX: gone after expiry, with no further request from anyone.
    let px = SetSpec {
        expiry: Some(Duration::from_millis(200)),
        ..SetSpec::default()
    };
    must(rt, T, "set px", c.set(k.clone(), b("short"), px))
        .await
        .unwrap();
    rt.sleep(Duration::from_millis(600)).await;
    assert_eq!(must(rt, T, "get expired", c.get(k.clone())).await, Ok(None));

    // Fencing: a key written with a token requires one at least as new.
    let lock = b(&unique("fence-lock"));
    let (_, t1) = must(
        rt,
        T,
        "token",
        c.set(lock.clone(), b("me"), SetSpec::default()),
    )
    .await
    .unwrap();
    let t1 = t1.expect("token");
    let (_, t2) = must(
        rt,
        T,
        "token",
        c.set(lock.clone(), b("me"), SetSpec::default()),
    )
    .await
    .unwrap();
    let t2 = t2.expect("token");
    let p = b(&unique("fenced"));
    let fenced = |t| SetSpec {
        fencing_token: Some(t),
        ..SetSpec::default()
    };
    assert!(
        must(
            rt,
            T,
            "fenced set",
            c.set(p.clone(), b("a"), fenced(t2.clone()))
        )
        .await
        .unwrap()
        .0
    );
    assert_eq!(
        must(
            rt,
            T,
            "unfenced set",
            c.set(p.clone(), b("b"), SetSpec::default())
        )
        .await,
        Err(Failure::Service(ServiceError::MissingFencingToken))
    );
    assert_eq!(
        must(
            rt,
            T,
            "stale set",
            c.set(p.clone(), b("b"), fenced(t1.clone()))
        )
        .await,
        Err(Failure::Service(ServiceError::FencingTokenLowerVersion))
    );
    assert_eq!(
        must(rt, T, "stale del", c.del(p.clone(), Some(t1))).await,
        Err(Failure::Service(ServiceError::FencingTokenLowerVersion))
    );
    assert_eq!(
        must(rt, T, "fenced del", c.del(p.clone(), Some(t2))).await,
        Ok(true)
    );

    // Empty keys are refused locally, never sent.
    assert!(matches!(
        must(rt, T, "empty key", c.get(Bytes::new())).await,
        Err(Failure::InvalidArgument)
    ));

    // Observation: SET, DEL and expiry notifications, in order.
    let w = b(&unique("watched"));
    let mut obs = must(rt, T, "observe", c.observe(w.clone())).await.unwrap();
    must(rt, T, "set", c.set(w.clone(), b("x"), SetSpec::default()))
        .await
        .unwrap();
    let e = must(rt, T, "set notification", obs.next())
        .await
        .expect("stream open");
    assert_eq!(e.value, Some(b("x")));
    must(rt, T, "del", c.del(w.clone(), None)).await.unwrap();
    assert_eq!(
        must(rt, T, "delete notification", obs.next())
            .await
            .expect("open")
            .value,
        None
    );
    let px = SetSpec {
        expiry: Some(Duration::from_millis(200)),
        ..SetSpec::default()
    };
    must(rt, T, "set px", c.set(w.clone(), b("y"), px))
        .await
        .unwrap();
    assert_eq!(
        must(rt, T, "set notification", obs.next())
            .await
            .expect("open")
            .value,
        Some(b("y"))
    );
    let expired = must(
        rt,
        Duration::from_secs(3),
        "expiry notification",
        obs.next(),
    )
    .await;
    assert_eq!(
        expired.expect("open").value,
        None,
        "expiry is notified as a deletion"
    );
    drop(obs);
    c.close().await;
}
