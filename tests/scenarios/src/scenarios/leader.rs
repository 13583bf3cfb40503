//! Leader election between two candidates: election, the leader seen by the other, resign with
//! the term's cancellation, takeover.

use std::time::Duration;

use bytes::Bytes;

use super::{connect, until_absent};
use crate::adapter::{Conn, LeaderApi, Runtime};
use crate::env::Env;
use crate::util::{eventually, must, unique};

const T: Duration = Duration::from_secs(5);

/// campaign / elected / leader seen / resign (term cancelled, lease released) / takeover /
/// resign on drop.
pub async fn leader_operations<R: Runtime>(rt: &R, env: &Env) {
    let a = connect(rt, env, "leader-a").await;
    let b = connect(rt, env, "leader-b").await;
    let name = Bytes::from(unique("election"));
    let la = a.leader(name.clone()).unwrap();
    let lb = b.leader(name.clone()).unwrap();
    let d = Duration::from_millis(1500);

    must(rt, T, "campaign a", la.campaign(d)).await.unwrap();
    let term = must(rt, T, "a elected", la.elected()).await.unwrap();
    assert_eq!(term.number, 1);
    assert_eq!(la.term_cancelled(), Some(false));
    must(rt, T, "campaign b", lb.campaign(d)).await.unwrap();
    let a_id = la.holder_value();
    assert!(
        eventually(rt, T, || lb.leader() == Some(a_id.clone())).await,
        "b sees a as leader"
    );
    // The term survives several renewals.
    rt.sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        la.term_cancelled(),
        Some(false),
        "still leading after renewals"
    );

    must(rt, T, "resign", la.resign()).await.unwrap();
    assert_eq!(la.term_cancelled(), Some(true), "resigning ends the term");
    let tb = must(rt, T, "b elected", lb.elected()).await.unwrap();
    assert!(tb.token > term.token);
    let b_id = lb.holder_value();
    assert!(eventually(rt, T, || lb.leader() == Some(b_id.clone())).await);

    // Dropping the leading handle resigns and releases.
    drop(lb);
    assert!(
        until_absent(rt, &a, &name, T).await,
        "a dropped leader releases its lease"
    );
    a.close().await;
    b.close().await;
}
